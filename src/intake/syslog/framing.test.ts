import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Frame, FrameDecoder, type Framing, trimEol } from './framing.ts';

function show(frame: Frame): string {
  if (frame.kind === 'line') return frame.line.toString('latin1');
  if (frame.kind === 'oversize') return `<oversize ${frame.framing} ${frame.bytes}>`;
  return `<truncated ${frame.bytes}>`;
}

/** Feeds the chunks one by one, draining after each, then ends the stream. */
function decode(chunks: (string | Buffer)[], maxLineBytes = 64, framing: Framing = 'auto'): string[] {
  const decoder = new FrameDecoder(maxLineBytes, framing);
  const out: string[] = [];
  for (const chunk of chunks) {
    decoder.push(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
    for (let f = decoder.next(); f !== undefined; f = decoder.next()) out.push(show(f));
  }
  const last = decoder.finish();
  if (last) out.push(show(last));
  return out;
}

const cases: { name: string; chunks: string[]; max?: number; want: string[] }[] = [
  { name: 'LF-delimited lines', chunks: ['<13>a\n<13>b\n'], want: ['<13>a', '<13>b'] },
  { name: 'CRLF-delimited lines lose their CR', chunks: ['<13>a\r\n<13>b\r\n'], want: ['<13>a', '<13>b'] },
  { name: 'NUL as a delimiter', chunks: ['<13>a\0<13>b\0'], want: ['<13>a', '<13>b'] },
  { name: 'empty frames are skipped', chunks: ['\n\n\r\n<13>a\n\0\n'], want: ['<13>a'] },
  { name: 'octet counting', chunks: ['5 <13>a6 <13>bc'], want: ['<13>a', '<13>bc'] },
  {
    name: 'an octet-counted message may hold LF',
    chunks: ['9 <13>a\nb\nc'],
    want: ['<13>a\nb\nc'],
  },
  {
    name: 'octet counting and LF framing mixed in one stream',
    chunks: ['5 <13>a<13>b\n6 <13>cd\n<13>e\r\n'],
    want: ['<13>a', '<13>b', '<13>cd', '<13>e'],
  },
  {
    name: 'a frame split across many writes',
    chunks: ['1', '5', ' <13>hel', 'lo w', 'orld', '<13>next', ' line', '\r', '\n'],
    want: ['<13>hello world', '<13>next line'],
  },
  {
    name: 'a line that starts with digits but no space is LF-framed',
    chunks: ['2024-01-01 host msg\n', '12\n', '123'],
    want: ['2024-01-01 host msg', '12', '123'],
  },
  {
    name: 'a length prefix of ten digits is not a length',
    chunks: ['1234567890 x\n'],
    want: ['1234567890 x'],
  },
  {
    name: 'an unterminated last line is kept at the end of the stream',
    chunks: ['<13>a\n<13>tail'],
    want: ['<13>a', '<13>tail'],
  },
  {
    name: 'a partial octet-counted frame at the end of the stream is reported truncated',
    chunks: ['5 <13>a10 <13>'],
    want: ['<13>a', '<truncated 7>'],
  },
  {
    name: 'an oversize LF line arriving whole is rejected and the next line kept',
    chunks: [`${'x'.repeat(20)}\n<13>ok\n`],
    max: 10,
    want: ['<oversize non-transparent 20>', '<13>ok'],
  },
  {
    name: 'an oversize LF line arriving in pieces is rejected once, resyncing at the next delimiter',
    chunks: ['x'.repeat(8), 'x'.repeat(8), 'x'.repeat(8), 'x\n<13>ok\n'],
    max: 10,
    want: ['<oversize non-transparent 16>', '<13>ok'],
  },
  {
    name: 'a line of exactly max bytes with CRLF is accepted',
    chunks: ['0123456789', '\r', '\n'],
    max: 10,
    want: ['0123456789'],
  },
  {
    name: 'an oversize octet-counted frame is skipped by its length, even with delimiters inside',
    chunks: ['20 <13>x\nxxxx\nxx', 'xxxxxxx', '5 <13>a'],
    max: 10,
    want: ['<oversize octet-counting 20>', '<13>a'],
  },
  {
    name: 'bytes that are not text are still a line',
    chunks: ['\xff\xfe\x01\x02garbage\x7f\n'],
    want: ['\xff\xfe\x01\x02garbage\x7f'],
  },
];

for (const c of cases) {
  test(`framing: ${c.name}`, () => {
    assert.deepEqual(decode(c.chunks, c.max), c.want);
  });
}

test('framing: any split of a mixed stream yields the same frames', () => {
  const stream = '5 <13>a<13>b\r\n6 <13>cd\0<13>e\n10 <13>f\ng\r\nh\n';
  const want = decode([stream]);
  assert.deepEqual(want, ['<13>a', '<13>b', '<13>cd', '<13>e', '<13>f\ng\r\nh']);
  assert.deepEqual(decode(stream.split('')), want);
  for (let cut = 1; cut < stream.length; cut++) {
    assert.deepEqual(decode([stream.slice(0, cut), stream.slice(cut)]), want, `cut at ${cut}`);
  }
});

test('framing: holds frames until pulled, so a paused reader loses nothing', () => {
  const decoder = new FrameDecoder(64);
  decoder.push(Buffer.from('<13>a\n<13>b\n<13>c'));
  assert.equal(show(decoder.next()!), '<13>a');
  decoder.push(Buffer.from('\n'));
  assert.equal(show(decoder.next()!), '<13>b');
  assert.equal(show(decoder.next()!), '<13>c');
  assert.equal(decoder.next(), undefined);
  assert.equal(decoder.buffered, 0);
});

test('framing: a long frame sent one byte at a time costs linear time', () => {
  const line = `<13>${'x'.repeat(512 * 1024)}`;
  const bytes = Buffer.from(`${line}\n${line.length} ${line}`);
  const decoder = new FrameDecoder(1024 * 1024, 'octet-counting');
  const out: number[] = [];
  const started = performance.now();
  for (let i = 0; i < bytes.length; i++) {
    decoder.push(bytes.subarray(i, i + 1));
    for (let f = decoder.next(); f !== undefined; f = decoder.next()) {
      assert.equal(f.kind === 'line' && f.line.toString(), line);
      out.push(f.kind === 'line' ? f.line.length : -1);
    }
  }
  assert.deepEqual(out, [line.length, line.length]);
  assert.ok(performance.now() - started < 5000, `took ${performance.now() - started} ms`);
});

test('trimEol drops trailing CR, LF and NUL only', () => {
  assert.equal(trimEol(Buffer.from(' a \r\n\0')).toString(), ' a ');
  assert.equal(trimEol(Buffer.from('\r\n')).length, 0);
});

test('framing (issue 17, defect 4): digit-led lines on a newline connection stay whole', () => {
  const lines = Array.from({ length: 100 }, (_, i) => `${200 + i} OK line ${i} of a web log`);
  const stream = `<13>Dec  6 02:13:39 web1 app: first\n${lines.join('\n')}\n`;
  const want = ['<13>Dec  6 02:13:39 web1 app: first', ...lines];
  assert.deepEqual(decode([stream]), want);
  assert.deepEqual(decode(stream.split('')), want, 'byte by byte');
  // A connection whose very first line starts with digits and a space is newline-framed too.
  assert.deepEqual(decode([`${lines.join('\n')}\n`]), lines);
});

test('framing: the first frame decides for the connection and it is kept', () => {
  const tests: { chunks: string[]; framing?: Framing; want: string[] }[] = [
    // Octet counting decided by `<count> <`: a later message may contain LFs.
    { chunks: ['9 <13>a\nb c', '5 <13>d'], want: ['<13>a\nb c', '<13>d'] },
    // The count arrives split from its PRI: nothing is decided until the `<` (or its absence) is seen.
    { chunks: ['1', '1', ' ', '<13>hello\nx', '5 <13>y'], want: ['<13>hello\nx', '<13>y'] },
    { chunks: ['12 ', 'monkeys\n'], want: ['12 monkeys'] },
    // A count without a PRI is read as a line unless the listener says octet-counting.
    { chunks: ['5 hello'], want: ['5 hello'] },
    { chunks: ['5 hello'], framing: 'octet-counting', want: ['hello'] },
    { chunks: ['5 <13>a'], framing: 'non-transparent', want: ['5 <13>a'] },
    { chunks: ['5 <13>a'], framing: 'octet-counting', want: ['<13>a'] },
    // Cut off in the count of the very first frame: kept as a line, nothing is invented.
    { chunks: ['42'], want: ['42'] },
    { chunks: ['8 <13>a'], want: ['<truncated 7>'] },
  ];
  for (const t of tests) assert.deepEqual(decode(t.chunks, 64, t.framing), t.want, JSON.stringify(t));
});
