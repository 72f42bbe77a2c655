import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { eventLoopTurnsDuring } from '../../test/harness/event-loop.ts';
import { readBodyText } from './body-text.ts';

/** Feeds `chunks` to readBodyText, with `contentLength` as the header; the text, or the error it gave. */
function read(
  chunks: (Buffer | string)[],
  opts: { limit?: number; contentLength?: string; fail?: Error; open?: boolean; pieces?: boolean } = {},
): Promise<{ text?: string; pieces?: readonly string[]; err?: Error & { code?: string; statusCode?: number } }> {
  const stream = new PassThrough();
  return new Promise((resolve) => {
    readBodyText(
      stream,
      opts.limit ?? 1 << 20,
      opts.contentLength,
      (err, body) =>
        resolve(
          typeof body === 'object'
            ? { text: body.pieces.join(''), pieces: body.pieces, err: err ?? undefined }
            : { text: body, err: err ?? undefined },
        ),
      { pieces: opts.pieces },
    );
    for (const c of chunks) stream.write(c);
    if (opts.fail) stream.destroy(opts.fail);
    // Left open: a client still sending.
    else if (!opts.open) stream.end();
  });
}

test('text cut inside multi-byte characters decodes as the whole body would', async () => {
  const text = `{"m":"é€𝄞 – ok"}\n${'x'.repeat(1000)}ü\n`;
  const bytes = Buffer.from(text);
  for (const size of [1, 2, 3, 5, 64]) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
    const got = await read(chunks, { contentLength: String(bytes.length) });
    assert.equal(got.err, undefined);
    assert.equal(got.text, text, `chunks of ${size} bytes`);
  }
  // Longer than one decoded piece (a mebibyte), cut at odd places: pieces end inside characters too.
  const long = `${'aé€𝄞'.repeat(300_000)}\n`;
  const longBytes = Buffer.from(long);
  const cut: Buffer[] = [];
  for (let i = 0; i < longBytes.length; i += 65_537) cut.push(longBytes.subarray(i, i + 65_537));
  assert.equal((await read(cut, { limit: 1 << 23, contentLength: String(longBytes.length) })).text, long);
  // Invalid UTF-8 becomes U+FFFD as Buffer#toString makes it, a cut sequence at the end included.
  const bad = Buffer.from([0x61, 0xff, 0x62, 0xe2, 0x82]);
  assert.equal((await read([bad.subarray(0, 2), bad.subarray(2)])).text, bad.toString('utf8'));
  assert.equal((await read([])).text, '');
});

test('a body past the limit is refused as Fastify refuses it, as soon as the limit is passed', async () => {
  const table: {
    name: string;
    chunks: string[];
    limit: number;
    contentLength?: string;
    code: string;
    open?: boolean;
  }[] = [
    {
      name: 'a declared length past the limit',
      chunks: ['ab'],
      limit: 10,
      contentLength: '11',
      code: 'FST_ERR_CTP_BODY_TOO_LARGE',
    },
    {
      name: 'more bytes than the limit, undeclared',
      chunks: ['12345', '67890', 'x', 'rest'],
      limit: 10,
      code: 'FST_ERR_CTP_BODY_TOO_LARGE',
      open: true,
    },
    {
      name: 'fewer bytes than declared',
      chunks: ['abc'],
      limit: 10,
      contentLength: '4',
      code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH',
    },
  ];
  for (const c of table) {
    const got = await read(c.chunks, { limit: c.limit, contentLength: c.contentLength, open: c.open });
    assert.equal(got.err?.code, c.code, c.name);
    assert.equal(got.err?.statusCode, c.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 413 : 400, c.name);
  }
  assert.equal((await read(['1234567890'], { limit: 10, contentLength: '10' })).text, '1234567890');
});

test('a stream that fails answers 400 with its error', async () => {
  const got = await read(['ab'], { fail: new Error('aborted') });
  assert.equal(got.err?.message, 'aborted');
  assert.equal(got.err?.statusCode, 400);
});

test('a large body is decoded a mebibyte at a time with turns of the event loop between, not in one call', async () => {
  const text = `${'é'.repeat(4 << 20)}\n`;
  const bytes = Buffer.from(text);
  const stream = new PassThrough();
  for (let i = 0; i < bytes.length; i += 65_536) stream.write(bytes.subarray(i, i + 65_536));
  stream.end();
  const { result, turns } = await eventLoopTurnsDuring(
    () =>
      new Promise<string | undefined>((resolve, reject) =>
        readBodyText(
          stream,
          1 << 24,
          String(bytes.length),
          (err, body) => (err ? reject(err) : resolve(body as string)),
          {
            budgetMs: 0,
          },
        ),
      ),
  );
  assert.equal(result, text);
  // 8 MiB in pieces of a mebibyte: a turn before each piece.
  assert.ok(turns >= 7, `the event loop turned ${turns} times while the body was decoded`);
});

/** Checks the cut rule of JsonPieces: every piece but the last ends with a line feed, the next starts with `{`. */
function assertCuts(pieces: readonly string[], name: string): void {
  for (let i = 0; i + 1 < pieces.length; i++) {
    assert.ok(pieces[i].endsWith('\n') && pieces[i + 1].startsWith('{'), `${name}: cut ${i} is before a { line`);
  }
}

/** `bytes` in chunks of `size` bytes, as a socket might deliver them. */
function chunked(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

test('in pieces: cut before lines that start with {, multi-byte characters decoded whole, the same text', async () => {
  // Lines of about 2.7 KB with characters of 2, 3 and 4 bytes, some cut by any chunk size.
  const line = (i: number) => `{"n":${i},"m":"${'é€𝄞'.repeat(300)}","x":"${'a'.repeat(i % 97)}"}\n`;
  const ndjson = Array.from({ length: 1500 }, (_, i) => line(i)).join('');
  const bytes = Buffer.from(ndjson);
  for (const size of [65_536, 65_537, 1_000_003]) {
    const got = await read(chunked(bytes, size), { limit: 1 << 24, contentLength: String(bytes.length), pieces: true });
    assert.equal(got.err, undefined);
    assert.equal(got.text, ndjson, `chunks of ${size} bytes`);
    // About 4 MB: pieces of about a mebibyte (the last cut before a mebibyte was reached), none of it all.
    const pieces = got.pieces ?? [];
    assert.ok(pieces.length >= 3, `${pieces.length} pieces from chunks of ${size} bytes`);
    assert.ok(pieces.slice(0, -1).every((p) => Buffer.byteLength(p) >= 1 << 19));
    assertCuts(got.pieces ?? [], `chunks of ${size} bytes`);
  }
  // Tiny chunks, a line across many of them; a body smaller than a piece is one piece.
  const small = Buffer.from(`${line(1)}${line(2)}`);
  for (const size of [1, 2, 3]) {
    const got = await read(chunked(small, size), { pieces: true });
    assert.deepEqual(got.pieces, [small.toString()], `chunks of ${size} bytes`);
  }
  assert.deepEqual((await read([], { pieces: true })).pieces, ['']);
});

test('in pieces: a body without lines starting with { past a mebibyte is decoded in turns and handed over whole', async () => {
  const table = {
    'one array on one line': `[${Array.from({ length: 40_000 }, (_, i) => `{"n":${i},"m":"é€𝄞"}`).join(',')}]`,
    'indented objects': `[\n${Array.from({ length: 40_000 }, (_, i) => `  {"n":${i},"m":"é€𝄞"}`).join(',\n')}\n]\n`,
    // A line that starts with { only after 2 MiB without any: cut there, the first piece joined from its parts.
    'scalars, then objects': `${'"é€𝄞 scalar"\n'.repeat(120_000)}${'{"a":"é"}\n'.repeat(200_000)}`,
  };
  for (const [name, text] of Object.entries(table)) {
    const bytes = Buffer.from(text);
    const got = await read(chunked(bytes, 65_537), { limit: 1 << 24, pieces: true });
    assert.equal(got.text, text, name);
    assertCuts(got.pieces ?? [], name);
    if (!text.includes('\n{')) assert.equal(got.pieces?.length, 1, name);
  }
});

test('in pieces: the same refusals as whole text', async () => {
  const cases = [
    { chunks: ['ab'], limit: 10, contentLength: '11', code: 'FST_ERR_CTP_BODY_TOO_LARGE' },
    { chunks: ['{"a":1}\n', '{"b":2}\n'], limit: 10, code: 'FST_ERR_CTP_BODY_TOO_LARGE', open: true },
    { chunks: ['{"a":1}\n'], limit: 100, contentLength: '9', code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' },
  ];
  for (const c of cases) {
    const got = await read(c.chunks, { ...c, pieces: true });
    assert.equal(got.err?.code, c.code);
    assert.equal(got.pieces, undefined);
  }
  const failed = await read(['{"a":'], { fail: new Error('aborted'), pieces: true });
  assert.equal(failed.err?.statusCode, 400);
});
