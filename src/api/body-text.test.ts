import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { eventLoopTurnsDuring } from '../../test/harness/event-loop.ts';
import { BodyBytes } from '../lib/body-bytes.ts';
import { readBodyText } from './body-text.ts';

/** Feeds `chunks` to readBodyText, with `contentLength` as the header; the text, or the error it gave. */
function read(
  chunks: (Buffer | string)[],
  opts: { limit?: number; contentLength?: string; fail?: Error; open?: boolean } = {},
): Promise<{ text?: string; err?: Error & { code?: string; statusCode?: number } }> {
  const stream = new PassThrough();
  return new Promise((resolve) => {
    readBodyText(stream, opts.limit ?? 1 << 20, opts.contentLength, (err, text) =>
      resolve({ text: text as string | undefined, err: err ?? undefined }),
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
          { budgetMs: 0 },
        ),
      ),
  );
  assert.equal(result, text);
  // 8 MiB in pieces of a mebibyte: a turn before each piece.
  assert.ok(turns >= 7, `the event loop turned ${turns} times while the body was decoded`);
});

test('small chunks are gathered into pieces in order, and asBytes hands the bytes over undecoded', async () => {
  const text = `${'{"a":"é"}\n'.repeat(10_000)}`;
  const bytes = Buffer.from(text);
  const cuts: Buffer[] = [];
  // A byte a chunk, then a chunk large enough to be kept as it is, then a byte a chunk again.
  for (let i = 0; i < 50_000; i++) cuts.push(bytes.subarray(i, i + 1));
  cuts.push(bytes.subarray(50_000, 90_000));
  for (let i = 90_000; i < bytes.length; i++) cuts.push(bytes.subarray(i, i + 1));
  const readAs = (asBytes: boolean) => {
    const stream = new PassThrough();
    const got = new Promise<string | BodyBytes | undefined>((resolve, reject) =>
      readBodyText(stream, 1 << 20, String(bytes.length), (err, body) => (err ? reject(err) : resolve(body)), {
        asBytes,
      }),
    );
    for (const c of cuts) stream.write(c);
    stream.end();
    return got;
  };
  const body = await readAs(true);
  assert.ok(body instanceof BodyBytes);
  const chunks = body.chunks as Buffer[];
  assert.ok(chunks.length <= 4, `${cuts.length} chunks kept as ${chunks.length}`);
  assert.ok(Buffer.concat(chunks).equals(bytes));
  assert.equal(await readAs(false), text);
});
