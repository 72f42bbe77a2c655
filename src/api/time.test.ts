import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InputError } from '../lib/errors.ts';
import { parseTimeParam } from './time.ts';

const NOW = Date.UTC(2026, 11, 1);

// Found by test/integration/api.fuzz.test.ts: `GET /api/v1/alerts?to=9007199254740993` answered 500
// store_query_failed (the engine's driver refuses numbers past 2^53). A time is a time JavaScript can hold.
describe('time parameters', () => {
  for (const [value, expected] of [
    ['now', NOW],
    ['now-15m', NOW - 15 * 60_000],
    ['1700000000000', 1_700_000_000_000],
    ['2026-11-22T10:00:00Z', Date.UTC(2026, 10, 22, 10)],
    ['8640000000000000', 8.64e15],
  ] as const) {
    test(`${value} is ${expected}`, () => {
      assert.equal(parseTimeParam(value, 'from', NOW), expected);
    });
  }

  for (const value of [
    '9007199254740993',
    '9999999999999999',
    'now-99999999999d',
    'now+99999999999w',
    '8640000000000001',
    // Number('9'.repeat(400)) is Infinity, which an `isFinite && > max` check let through to a 500.
    `now+${'9'.repeat(400)}d`,
  ]) {
    test(`${value.slice(0, 40)} is out of range: 400 bad_time naming the parameter`, () => {
      assert.throws(
        () => parseTimeParam(value, 'to', NOW),
        (err: unknown) =>
          err instanceof InputError &&
          err.code === 'bad_time' &&
          /^to: .* is out of range/.test(err.message) &&
          err.details?.parameter === 'to',
      );
    });
  }
});
