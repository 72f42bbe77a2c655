import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileStore } from '../../test/harness/event-store.ts';
import type { NormalizedEvent } from '../lib/event.ts';
import { eventIdSum } from './create.ts';
import { countFrozen, freezeEngine, releaseFrozen } from './frozen.ts';

// chdb binds one data directory per process: this file has its own.
const testStore = fileStore('vigil-count-frozen-');

/** An event of `timestamp` (each test uses a day of its own, and empties the table first). */
function event(id: string, timestamp: number): NormalizedEvent {
  return {
    id,
    timestamp,
    ingested: Date.now(),
    tenant: 'default',
    source: 'http',
    layout: 'json',
    raw: `{"id":"${id}"}`,
    fields: { id },
  };
}

async function rows(sql: string): Promise<number> {
  const [{ n }] = await testStore().query<{ n: string }>(`SELECT toString(count()) AS n FROM ${sql}`, {});
  return Number(n);
}

test('the count is of the frozen parts: rows written after the freeze, a duplicate of a frozen event among them, are not in it', async () => {
  await testStore().exec('TRUNCATE TABLE vigil.events');
  const day = Date.UTC(2026, 0, 10);
  const frozenEvents = [event('a-1', day + 1000), event('a-2', day + 2000), event('a-3', day + 3000)];
  await testStore().write(frozenEvents.slice(0, 2));
  await testStore().write(frozenEvents.slice(2));
  const frozen = await freezeEngine(testStore(), '20261206T120000000Z-0a01');
  try {
    // After the cut: a resend of a-1 (same id, time and text: FINAL keeps one of the two rows, the later
    // one) in a new part beside a new event. Read after FINAL, the frozen a-1 would lose to it.
    await testStore().write([event('a-1', day + 1000), event('a-4', day + 4000)]);
    assert.equal(await rows('vigil.events FINAL'), 4);
    const { engine, copied } = await countFrozen(testStore(), frozen, '20261206T120000000Z-0a01');
    assert.deepEqual(copied, {}, 'every frozen part was still active: read from the live table');
    assert.equal(engine.events.count, 3);
    assert.equal(engine.events.id_sum, await eventIdSum(frozenEvents));
    assert.equal(engine.events.first_ts, new Date(day + 1000).toISOString());
    assert.equal(engine.events.last_ts, new Date(day + 3000).toISOString());
    // Rows stored in the frozen parts (count.txt), what count() of the restored table gives.
    assert.equal(engine.tables.events, 3);
    assert.equal(
      engine.tables.events,
      frozen.tables.find((t) => t.name === 'events')?.parts.reduce((n, p) => n + p.rows, 0),
    );
  } finally {
    await releaseFrozen(frozen);
  }
});

test('a day whose frozen parts were merged away before the count is read from a copy of them; the other days from the live table', async () => {
  await testStore().exec('TRUNCATE TABLE vigil.events');
  await testStore().exec('SYSTEM STOP MERGES vigil.events');
  const day = Date.UTC(2026, 0, 20);
  const other = event('c-1', Date.UTC(2026, 0, 25) + 1000);
  const frozenEvents = [event('b-1', day + 1000), event('b-2', day + 2000), other];
  let frozen: Awaited<ReturnType<typeof freezeEngine>> | undefined;
  let merged: string[] = [];
  try {
    // Two parts of one day (a merge replaces both), one part of another day (left alone).
    await testStore().write([frozenEvents[0]]);
    await testStore().write([frozenEvents[1], event('b-1', day + 1000)]);
    await testStore().write([other]);
    frozen = await freezeEngine(testStore(), '20261206T120000000Z-0b01');
    const parts = frozen.tables.find((t) => t.name === 'events')?.parts ?? [];
    assert.equal(parts.length, 3);
    merged = parts.filter((p) => p.name.startsWith('20260120_')).map((p) => p.name);
    assert.equal(merged.length, 2);
    // Rows stored: four (b-1 is in both parts of its day); as searches see them: three.
    assert.equal(
      parts.reduce((n, p) => n + p.rows, 0),
      4,
    );
  } finally {
    await testStore().exec('SYSTEM START MERGES vigil.events');
  }
  try {
    await testStore().write([event('b-3', day + 3000)]);
    await testStore().exec("OPTIMIZE TABLE vigil.events PARTITION ID '20260120' FINAL");
    const live = await testStore().query<{ name: string }>(
      "SELECT name FROM system.parts WHERE database = 'vigil' AND table = 'events' AND active ORDER BY name",
      {},
    );
    assert.equal(live.length, 2, 'the frozen parts of the first day were merged into one');
    const { engine, copied } = await countFrozen(testStore(), frozen, '20261206T120000000Z-0b01');
    assert.deepEqual(copied, { events: merged }, 'only the merged day is read from a copy');
    assert.equal(engine.events.count, 3);
    assert.equal(engine.events.id_sum, await eventIdSum(frozenEvents));
    assert.equal(engine.events.first_ts, new Date(day + 1000).toISOString());
    assert.equal(engine.events.last_ts, new Date(Date.UTC(2026, 0, 25) + 1000).toISOString());
    assert.equal(engine.tables.events, 4);
    const [{ dropped }] = await testStore().query<{ dropped: string }>(
      "SELECT toString(count()) AS dropped FROM system.databases WHERE startsWith(name, 'vigil_backup_check_')",
      {},
    );
    assert.equal(Number(dropped), 0, 'the copy is dropped');
  } finally {
    await releaseFrozen(frozen);
  }
});

test('an empty table counts zero without a read', async () => {
  await testStore().exec('TRUNCATE TABLE vigil.events');
  const frozen = await freezeEngine(testStore(), '20261206T120000000Z-0c01');
  try {
    const { engine, copied } = await countFrozen(testStore(), frozen, '20261206T120000000Z-0c01');
    assert.deepEqual(copied, {});
    assert.deepEqual(engine.events, { count: 0, first_ts: null, last_ts: null, id_sum: '0' });
    assert.equal(engine.tables.events, 0);
  } finally {
    await releaseFrozen(frozen);
  }
});
