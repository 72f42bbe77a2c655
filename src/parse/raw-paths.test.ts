import assert from 'node:assert/strict';
import { test } from 'node:test';
import { keysWritten } from './raw-paths.ts';

/** The count as the definition reads: every match of a quote, whitespace and a colon whose quote is not escaped. */
function reference(raw: string): number {
  let n = 0;
  for (const m of raw.matchAll(/"[ \t\n\r]*:/g)) {
    let slashes = 0;
    for (let i = m.index - 1; i >= 0 && raw.charCodeAt(i) === 0x5c; i--) slashes++;
    if (slashes % 2 === 0) n++;
  }
  return n;
}

test('keysWritten counts every unescaped quote a colon follows, whitespace between', () => {
  const table: [string, number][] = [
    ['{}', 0],
    ['{"a":1}', 1],
    ['{"a" :1,"b"\t\r\n:{"c":[1,{"d":2}]}}', 4],
    ['{"a":"x\\":y"}', 1],
    ['{"a":"x\\\\":1}', 2],
    ['{"a":": b"}', 2],
    ['{"a":"\\"":1}', 2],
    ['"":', 1],
    ['', 0],
  ];
  for (const [raw, expected] of table) assert.equal(keysWritten(raw), expected, raw);
  // Called again on another text: nothing of the last call is left in the pattern.
  assert.equal(keysWritten('{"a":1,"b":2}'), 2);
  const alphabet = ['"', ':', ' ', '\\', 'a', '{', '}', ',', '\n'];
  let seed = 7;
  for (let round = 0; round < 5000; round++) {
    let raw = '';
    const length = round % 40;
    for (let i = 0; i < length; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      raw += alphabet[seed % alphabet.length];
    }
    assert.equal(keysWritten(raw), reference(raw), JSON.stringify(raw));
  }
});
