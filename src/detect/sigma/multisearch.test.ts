import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MultiSearch } from './multisearch.ts';

/** A small deterministic generator, so failures reproduce. */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff;
    return x / 0x7fffffff;
  };
}

describe('MultiSearch: sampled multi-needle search', () => {
  it('finds every needle at every position, like includes', () => {
    const rnd = random(7);
    const alphabet = 'abcAB:\\|.- ';
    const pick = (n: number): string =>
      Array.from({ length: n }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join('');
    for (let round = 0; round < 300; round++) {
      const needles = Array.from({ length: 1 + Math.floor(rnd() * 6) }, () => pick(3 + Math.floor(rnd() * 8)));
      const text = pick(Math.floor(rnd() * 60));
      const plain = new MultiSearch(needles.map((t) => ({ text: t, value: t })));
      const found = new Set<string>();
      plain.forEach(text, (v) => found.add(v));
      for (const n of needles)
        assert.equal(found.has(n), text.includes(n), `${JSON.stringify(n)} in ${JSON.stringify(text)}`);
      assert.equal(
        plain.some(text),
        needles.some((n) => text.includes(n)),
      );
      const lower = needles.map((n) => n.toLowerCase());
      const folded = new MultiSearch(
        lower.map((t) => ({ text: t, value: t })),
        true,
      );
      assert.equal(
        folded.some(text),
        lower.some((n) => text.toLowerCase().includes(n)),
        `folded ${JSON.stringify(lower)} in ${JSON.stringify(text)}`,
      );
    }
  });

  it('samples every (shortest needle - 2) positions', () => {
    assert.equal(
      new MultiSearch([
        { text: 'sekurlsa::', value: 1 },
        { text: 'lsadump::', value: 2 },
      ]).step,
      7,
    );
    assert.equal(new MultiSearch([{ text: 'abc', value: 1 }]).step, 1);
  });

  it('refuses needles shorter than three characters', () => {
    assert.throws(() => new MultiSearch([{ text: 'ab', value: 1 }]));
  });
});
