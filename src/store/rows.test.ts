import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventLoopTurnsDuring } from '../../test/harness/event-loop.ts';
import type { NormalizedEvent } from '../lib/event.ts';
import { eventsToRows, eventsToRowsSliced, ROWS_SLICE_EVENTS } from './rows.ts';

function events(n: number): NormalizedEvent[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `e-${i}`,
    timestamp: 1_795_000_000_000 + i,
    ingested: 1_795_000_000_000 + i,
    tenant: 'default',
    source: 'http',
    layout: 'ecs',
    raw: `{"message":"line ${i} with \\"quotes\\"","user":{"name":"u${i % 7}"}}`,
    fields: { message: `line ${i} with "quotes"`, 'user.name': `u${i % 7}`, 'event.code': i, tags: ['a', `t${i}`] },
  }));
}

test('rows built in slices are the same bytes as in one go, and the event loop turns between slices', async () => {
  const batch = events(2 * ROWS_SLICE_EVENTS + 17);
  const { result: sliced, turns } = await eventLoopTurnsDuring(() => eventsToRowsSliced(batch));
  assert.ok(sliced.equals(eventsToRows(batch)), 'same JSONEachRow text');
  assert.equal(sliced.toString().split('\n').length, batch.length);
  // Three slices: the loop turned between them (in one go, it would not have turned at all).
  assert.ok(turns >= 2, `the event loop turned ${turns} times while the rows were built`);
});

test('a small batch is built in one go', async () => {
  const batch = events(10);
  assert.ok((await eventsToRowsSliced(batch)).equals(eventsToRows(batch)));
});
