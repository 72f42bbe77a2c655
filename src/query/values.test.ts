import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fullTextTokens, likePattern, parseNumber, parseTime } from './values.ts';

const NOW = Date.UTC(2024, 0, 15, 12, 0, 0);

describe('parseTime reads the times a query may name', () => {
  const cases: [string, string, { ms: number; durationMs: number } | undefined][] = [
    ['now', 'now', { ms: NOW, durationMs: 1 }],
    ['now minus minutes', 'now-15m', { ms: NOW - 15 * 60_000, durationMs: 1 }],
    ['now plus hours', 'now+2h', { ms: NOW + 2 * 3_600_000, durationMs: 1 }],
    ['now minus weeks', 'now-1w', { ms: NOW - 604_800_000, durationMs: 1 }],
    ['a date alone lasts a day', '2024-01-02', { ms: Date.UTC(2024, 0, 2), durationMs: 86_400_000 }],
    ['a date-time without offset is UTC', '2024-01-02T03:04:05', { ms: Date.UTC(2024, 0, 2, 3, 4, 5), durationMs: 1 }],
    ['a space instead of T, no seconds', '2024-01-02 03:04', { ms: Date.UTC(2024, 0, 2, 3, 4), durationMs: 1 }],
    [
      'fractions are cut to ms',
      '2024-01-02T03:04:05.123456Z',
      { ms: Date.UTC(2024, 0, 2, 3, 4, 5, 123), durationMs: 1 },
    ],
    ['an offset with colon', '2024-01-02T03:04:05+02:00', { ms: Date.UTC(2024, 0, 2, 1, 4, 5), durationMs: 1 }],
    ['an offset without colon', '2024-01-02T03:04:05-0130', { ms: Date.UTC(2024, 0, 2, 4, 34, 5), durationMs: 1 }],
    ['epoch milliseconds', '1700000000000', { ms: 1_700_000_000_000, durationMs: 1 }],
    ['an impossible date', '2024-02-30', undefined],
    ['an impossible date-time', '2023-02-29T00:00:00Z', undefined],
    ['words', 'yesterday', undefined],
    ['an unknown unit', 'now-5y', undefined],
  ];
  for (const [name, text, expected] of cases) {
    test(`${name}: ${text}`, () => assert.deepEqual(parseTime(text, NOW), expected));
  }
});

describe('parseNumber accepts only plain numbers', () => {
  const cases: [string, number | undefined][] = [
    ['42', 42],
    ['-1.5', -1.5],
    ['.5', 0.5],
    ['1e3', 1000],
    ['0x10', undefined],
    ['1,000', undefined],
    ['', undefined],
    ['Infinity', undefined],
    ['1e999', undefined],
  ];
  for (const [text, expected] of cases) test(`'${text}'`, () => assert.equal(parseNumber(text), expected));
});

describe('likePattern and fullTextTokens', () => {
  test('LIKE metacharacters are escaped, wildcards translated', () => {
    const value = {
      text: '50%_a\\*?',
      quoted: false,
      parts: [{ text: '50%_a\\' }, { wildcard: '*' as const }, { wildcard: '?' as const }],
    };
    assert.equal(likePattern(value), '50\\%\\_a\\\\%_');
    assert.equal(likePattern({ text: 'x', quoted: true }, true), '%x%');
  });

  test('tokens split like ClickHouse, lowered; non-ASCII tokens skipped', () => {
    assert.deepEqual(fullTextTokens('Failed 10.1.2.3 Überprüfung x_y'), ['failed', '10', '1', '2', '3', 'x', 'y']);
  });

  test('at most MAX_INDEX_TOKENS tokens, longest first', () => {
    assert.deepEqual(fullTextTokens('a bb ccc dddd e f g h i j'), ['dddd', 'ccc', 'bb', 'a', 'e', 'f', 'g', 'h']);
  });

  test('bounded tokens leave out the edges a wildcard may extend', () => {
    assert.deepEqual(fullTextTokens('user=bob action=', true), ['action', 'bob']);
    assert.deepEqual(fullTextTokens('abc', true), []);
  });
});
