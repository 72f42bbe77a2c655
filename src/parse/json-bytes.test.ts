import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { eventLoopTurnsDuring } from '../../test/harness/event-loop.ts';
import { BodyBytes } from '../lib/body-bytes.ts';
import { splitJsonBytes } from './json-bytes.ts';
import { splitJsonYielding } from './json-stream.ts';

/** A concatenated, pretty-printed evtx_dump file of the Sigma regression set: three events. */
const REGRESSION_FILE =
  '/work/shared/sigma/regression/rules/windows/process_creation/proc_creation_win_findstr_recon_everyone/47e4bab7-c626-47dc-967b-255608c9a920.json';

/** The body cut into chunks of `size` bytes (cuts fall inside characters and lines too). */
function chunked(bytes: Buffer, size: number): BodyBytes {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
  return new BodyBytes(chunks);
}

/** Splits `bytes` both ways, cut at each size, and asserts the same elements. */
async function assertSameSplit(
  bytes: Buffer,
  name: string,
  max = Number.POSITIVE_INFINITY,
  sizes = [1, 3, 7, 64, Math.max(1, bytes.length)],
): Promise<void> {
  const expected = await splitJsonYielding(bytes.toString('utf8'), max);
  for (const size of sizes) {
    const got = await splitJsonBytes(chunked(bytes, size), max);
    assert.deepEqual(got, expected, `${name}, chunks of ${size} bytes, at most ${max} elements`);
  }
}

describe('the same elements as the text splitter', () => {
  const cases: { name: string; body: string | Buffer }[] = [
    { name: 'NDJSON', body: '{"a":1}\n{"a":2}\n{"a":3}\n' },
    { name: 'NDJSON without the last line feed', body: '{"a":1}\n{"a":2}' },
    { name: 'CRLF, trailing spaces and tabs', body: '{"a":1}\r\n{"a":2} \t\r\n' },
    { name: 'blank lines between and around', body: '\n \n{"a":1}\n\t\n\n{"a":2}\n \r\n' },
    { name: 'multi-byte characters', body: '{"m":"é€𝄞 – ok"}\n{"n":"ü"}\n' },
    {
      name: 'invalid UTF-8 in a line',
      body: Buffer.from([...Buffer.from('{"a":"'), 0xff, 0xe2, 0x82, ...Buffer.from('"}\n{"b":1}\n')]),
    },
    { name: 'a cut sequence at the very end', body: Buffer.from([...Buffer.from('{"a":1}\n{"b":"'), 0xe2, 0x82]) },
    { name: 'a malformed line in the middle', body: '{"a":1}\n{"a":\n{"a":3}\n' },
    { name: 'a scalar line after objects', body: '{"a":1}\n1\n{"a":3}\n' },
    { name: 'a string line after an object', body: '{"a":1}\n"x" junk\n{"a":3}\n' },
    { name: 'two objects on a line', body: '{"a":1}\n{"a":2} {"a":3}\n{"a":4}\n' },
    { name: 'pretty-printed objects after NDJSON', body: '{"a":1}\n{\n  "b": 2\n}\n{\n  "c": [1,\n 2]\n}\n' },
    { name: 'an object continued on an indented line', body: '{"a":1}\n{"b":\n  2}\n{"a":3}\n' },
    { name: 'an NDJSON line followed by an indented line', body: '{"a":1}\n  "x": 1}\n{"a":3}\n' },
    { name: 'indented first line', body: '  {"a":1}\n{"a":2}\n' },
    { name: 'indented later line', body: '{"a":1}\n  {"a":2}\n{"a":3}\n' },
    { name: 'a BOM', body: '\ufeff{"a":1}\n{"a":2}\n' },
    { name: 'a JSON array', body: '[{"a":1},{"a":2}]' },
    { name: 'a malformed JSON array', body: '[{"a":1},{"a":]\n' },
    { name: 'an array after objects', body: '{"a":1}\n[{"a":2}]\n' },
    { name: 'an object ending in `}` that is not JSON', body: '{"a":1}\n{"a":1}}\n{"a":2}\n' },
    { name: 'empty', body: '' },
    { name: 'only blank lines', body: '\n  \n\r\n' },
    { name: 'only a BOM', body: '\ufeff' },
    { name: 'control characters', body: '{"a":1}\n\u000c{"a":2}\n{"a":"\u0001"}\n' },
    // Seen by a reviewer's fuzzer while the code was being changed: a BOM after a blank line, an encoded surrogate.
    {
      name: 'a BOM after a blank line',
      body: Buffer.from('200aefbbbf097b226d223a22eda080227d7b2261223a0d5b0d', 'hex'),
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const bytes = typeof c.body === 'string' ? Buffer.from(c.body) : c.body;
      await assertSameSplit(bytes, c.name);
      for (const max of [1, 2, 3]) await assertSameSplit(bytes, c.name, max);
    });
  }

  test('a concatenated, pretty-printed evtx_dump file, after NDJSON lines', async () => {
    const file = readFileSync(REGRESSION_FILE);
    await assertSameSplit(file, 'the file');
    await assertSameSplit(Buffer.concat([Buffer.from('{"a":1}\n{"a":2}\n'), file]), 'NDJSON then the file');
  });

  test('random bodies of such lines', async () => {
    const vocabulary = [
      '{"a":1}',
      '{"b":"é€𝄞","c":[1,{"d":null}]}',
      '{"e":"\\u00e9\\n"}  ',
      '',
      '  ',
      '\r',
      '{',
      '}',
      '  "x": 1',
      '  "y": {"z": 2}',
      '{"a":1} {"b":2}',
      '[1,2]',
      '1',
      '"s"',
      '{"a":',
      '\ufeff{"a":1}',
      '{"a":1}\t\r',
      ' {"i":1}',
      '{"big":"' + 'x'.repeat(200) + '"}',
      '\u0000',
      '{"a":1}}',
      'null',
    ];
    let seed = 12345;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 400; round++) {
      const count = 1 + random(12);
      const picked = Array.from({ length: count }, () => vocabulary[random(vocabulary.length)]);
      // Mostly object lines first, as NDJSON bodies are, then anything.
      if (random(2) === 0) picked.unshift('{"first":true}', '{"second":true}');
      const text = picked.join(random(4) === 0 ? '\r\n' : '\n') + (random(2) === 0 ? '\n' : '');
      const bytes = Buffer.from(text);
      const bad = random(8) === 0 ? Buffer.concat([bytes, Buffer.from([0xc3])]) : bytes;
      await assertSameSplit(
        bad,
        `round ${round}: ${JSON.stringify(text)}`,
        random(3) === 0 ? 1 + random(4) : undefined,
      );
    }
  });
});

test("the body's chunks are let go as they are read, whichever way it is split", async () => {
  const ndjson = new BodyBytes([Buffer.from('{"a":1}\n{"a"'), Buffer.from(':2}\n')]);
  assert.equal((await splitJsonBytes(ndjson)).length, 2);
  assert.ok(ndjson.chunks.every((c) => c === undefined));
  const pretty = new BodyBytes([Buffer.from('{"a":1}\n{\n'), Buffer.from('"b":2\n}\n')]);
  assert.deepEqual(
    (await splitJsonBytes(pretty)).map((e) => ('value' in e ? e.value : e.error)),
    [{ a: 1 }, { b: 2 }],
  );
  assert.ok(pretty.chunks.every((c) => c === undefined));
});

test('bodies past a group of lines (a mebibyte) split as the text splitter splits them', async () => {
  const line = (i: number) => `{"i":${i},"m":"${i % 7 === 0 ? 'é€' : 'x'}${'y'.repeat(300)}"}`;
  const lines = Array.from({ length: 9_000 }, (_, i) => line(i));
  const ndjson = Buffer.from(`${lines.join('\n')}\n`);
  await assertSameSplit(ndjson, 'NDJSON of 2.8 MB', Number.POSITIVE_INFINITY, [65_536, 1 << 20, 3_000_000]);
  // A pretty-printed object, a malformed line and blank lines far past the first group.
  const mixed = Buffer.from(
    `${lines.slice(0, 4_000).join('\n')}\n\n\n{\n "p": 1\n}\n{"bad":\n${lines.slice(4_000).join('\n')}`,
  );
  await assertSameSplit(mixed, 'mixed, 2.8 MB', Number.POSITIVE_INFINITY, [65_536, 1 << 20]);
  const blank = Buffer.from(`${'\n'.repeat(1_500_000)}[{"a":1}]`);
  await assertSameSplit(blank, 'an array after 1.5 MB of blank lines', Number.POSITIVE_INFINITY, [65_536]);
  const blankThenObjects = Buffer.from(`${'\n'.repeat(1_500_000)}{"a":1}\n  {"b":2}\n`);
  await assertSameSplit(blankThenObjects, 'objects after 1.5 MB of blank lines', Number.POSITIVE_INFINITY, [65_536]);
});

test('a large body is split taking turns of the event loop, blank lines too', async () => {
  const lines = Buffer.from(`${'{"a":1}\n'.repeat(20_000)}${'\n'.repeat(200_000)}`);
  const { result, turns } = await eventLoopTurnsDuring(() => splitJsonBytes(chunked(lines, 65_536), Infinity, 0));
  assert.equal(result.length, 20_000);
  assert.ok(turns > 1000, `${turns} turns`);
});
