import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openTestStore } from '../../../test/harness/event-store.ts';
import { shardOf } from '../../cluster/shards/index.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import type { EventStore } from '../index.ts';
import { type Cursor, readPage, shardExtent } from './pages.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'vigil-copy-pages-'));
let store: EventStore;
const S = 4;
const N = 500;
const T0 = Date.parse('2026-12-06T08:00:00Z');

before(async () => {
  store = openTestStore(dataDir);
  await store.start();
  // Ids of many shapes (lengths 1..4 mod 4 exercise every tail of the hash), ingested over 500 s.
  const events: NormalizedEvent[] = Array.from({ length: N }, (_, i) => ({
    id: `${'x'.repeat(i % 5)}ev-${i}-${'é'.repeat(i % 3)}`,
    timestamp: T0 - i * 1000,
    ingested: T0 + i * 1000,
    tenant: i % 7 === 0 ? 't2' : 't1',
    source: 'http',
    layout: 'json',
    raw: `event ${i}`,
    fields: { n: i },
  }));
  await store.write(events);
  // The same event stored twice (as a copy overlapping the stream leaves it): both rows are read, the
  // receiver's ReplacingMergeTree collapses them.
  await store.write(events.slice(0, 10));
});
after(async () => {
  await store?.stop(Date.now() + 5000);
  rmSync(dataDir, { recursive: true, force: true });
});

/** Every row a copy of `shard` reads, page by page (`pageMax` events a page). */
async function readAll(shard: { index: number; count: number } | undefined, pageMax: number): Promise<string[]> {
  const ids: string[] = [];
  let after: Cursor | null = null;
  for (let pages = 0; pages < 10_000; pages++) {
    const page = await readPage(
      store,
      { page_max_events: pageMax, page_max_bytes: 1 << 20 },
      { from_ingested: T0, to_ingested: T0 + N * 1000, after, max_events: pageMax, ...(shard ? { shard } : {}) },
    );
    for (const line of page.rows ?? []) ids.push(String(JSON.parse(line).id));
    if (!page.next) return ids;
    after = page.next;
  }
  throw new Error('the copy never ended');
}

test("a shard copy reads exactly the shard's rows (murmurHash3_32(id) % S, as shardOf), page by page", async () => {
  const seen = new Set<string>();
  for (let k = 0; k < S; k++) {
    const ids = await readAll({ index: k, count: S }, 37);
    const distinct = new Set(ids);
    for (const id of distinct) assert.equal(shardOf(id, S), k, `${id} read for shard ${k}`);
    // Physical rows: the 10 stored twice come twice, the rest once.
    const twice = ids.length - distinct.size;
    for (const id of distinct) seen.add(id);
    assert.ok(twice <= 10, `shard ${k}: ${twice} repeated`);
    const want = Array.from({ length: N }, (_, i) => `${'x'.repeat(i % 5)}ev-${i}-${'é'.repeat(i % 3)}`).filter(
      (id) => shardOf(id, S) === k,
    );
    assert.deepEqual([...distinct].sort(), want.sort(), `shard ${k}`);
  }
  // The shards together are every event, each in one shard.
  assert.equal(seen.size, N);
  // Without a filter, every row.
  assert.equal(new Set(await readAll(undefined, 200)).size, N);
});

test("a shard's extent is the ingestion times of its rows; a shard of S = 1 is every row", async () => {
  const all = await shardExtent(store, { index: 0, count: 1 });
  assert.deepEqual(all, { fromIngested: T0, toIngested: T0 + (N - 1) * 1000 });
  for (let k = 0; k < S; k++) {
    const e = await shardExtent(store, { index: k, count: S });
    assert.ok(e.fromIngested !== null && e.toIngested !== null);
    assert.ok(e.fromIngested >= T0 && e.toIngested <= T0 + (N - 1) * 1000);
    assert.equal(shardOf('ev-0-', S) === k, e.fromIngested === T0);
  }
  // A shard without rows: none.
  const used = new Set(
    Array.from({ length: N }, (_, i) => shardOf(`${'x'.repeat(i % 5)}ev-${i}-${'é'.repeat(i % 3)}`, 1000)),
  );
  const empty = Array.from({ length: 1000 }, (_, k) => k).find((k) => !used.has(k)) ?? 0;
  assert.deepEqual(await shardExtent(store, { index: empty, count: 1000 }), { fromIngested: null, toIngested: null });
});

test('a shard filter that is not a shard is refused before any SQL (a peer sends numbers, never text)', async () => {
  const bad = [
    { index: 4, count: 4 },
    { index: -1, count: 4 },
    { index: 1.5, count: 4 },
    { index: 0, count: 0 },
    { index: '0; DROP TABLE x' as unknown as number, count: 4 },
  ];
  for (const shard of bad) {
    await assert.rejects(
      readPage(
        store,
        { page_max_events: 10, page_max_bytes: 1 << 20 },
        { from_ingested: T0, to_ingested: T0 + 1000, after: null, max_events: 10, shard },
      ),
      RangeError,
      JSON.stringify(shard),
    );
  }
});
