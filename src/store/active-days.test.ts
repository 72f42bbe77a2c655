import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NormalizedEvent } from '../lib/event.ts';
import { ActiveDays } from './active-days.ts';

const at = (...ts: number[]) => ts.map((t) => ({ timestamp: t }) as NormalizedEvent);
const DAY = 86_400_000;
const D = Date.UTC(2026, 11, 7);

test("a chunk's days are active when each got an INSERT within the window, and only then", () => {
  const days = new ActiveDays(1000);
  const chunk = days.daysOf(at(D + 5, D + 10, D + DAY + 1), 0, 3);
  assert.deepEqual(chunk, [D / DAY, D / DAY + 1]);
  assert.equal(days.allActive(chunk, 0), false, 'never written');
  days.written([D / DAY], 100);
  assert.equal(days.allActive(chunk, 200), false, 'one of its days never written');
  days.written(chunk, 300);
  assert.equal(days.allActive(chunk, 1300), true);
  assert.equal(days.allActive(chunk, 1301), false, 'past the window');
  assert.equal(days.allActive([], 300), false, 'an empty chunk');
});

test('a chunk of more days than a live stream writes, or of a time that is no day, is never active', () => {
  const days = new ActiveDays(1000);
  const five = at(D, D + DAY, D + 2 * DAY, D + 3 * DAY, D + 4 * DAY);
  assert.equal(days.daysOf(five, 0, 5), undefined);
  assert.equal(days.daysOf(five, 1, 5)?.length, 4, "only the chunk's own events count");
  assert.equal(days.daysOf(at(D, Number.NaN), 0, 2), undefined);
  days.written(undefined, 0);
  assert.equal(days.allActive(undefined, 0), false);
});

test('at most 256 days are remembered, the least lately written forgotten first', () => {
  const days = new ActiveDays(1e9);
  for (let d = 0; d < 300; d++) days.written([d], d);
  days.written([10], 1000); // written again: the latest
  assert.equal(days.allActive([10], 1000), true);
  assert.equal(days.allActive([299], 1000), true);
  assert.equal(days.allActive([44], 1000), false, 'forgotten');
  assert.equal(days.allActive([46], 1000), true);
});

test('days are those the rows are stored in: a time past the last the engine keeps is stored at its receipt', () => {
  const days = new ActiveDays(1000);
  const late = { timestamp: Date.UTC(2200, 0, 1), ingested: D + 5 } as NormalizedEvent;
  assert.deepEqual(days.daysOf([late], 0, 1), [D / DAY]);
  assert.equal(days.daysOf(at(-1), 0, 1), undefined, 'before 1970');
  days.written([D / DAY], 0);
  assert.equal(days.allActive([D / DAY], 10), true);
  days.forget();
  assert.equal(days.allActive([D / DAY], 10), false, 'forgotten after rows were deleted');
});
