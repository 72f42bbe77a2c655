import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Session } from 'chdb';
import type { NormalizedEvent } from '../lib/event.ts';
import { type EventRow, INSERT_CHUNK_EVENTS, insertChunks, rowToEvent } from './index.ts';
import { contentHash } from './schema.ts';
import { openTestStore, withEngineSession } from '../../test/harness/event-store.ts';

// chdb binds one data directory per process: every test here works on this one, in order.
const dataDir = mkdtempSync(join(tmpdir(), 'vigil-store-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

/** The events table as schema 1 made it (JSON `fields`, no comment). */
const V1_DDL = `CREATE TABLE vigil.events (
  ts DateTime64(3, 'UTC'), ingested DateTime64(3, 'UTC'), id String, tenant LowCardinality(String),
  source LowCardinality(String), layout LowCardinality(String), host LowCardinality(String), message String,
  raw String CODEC(ZSTD(1)), parse_error String, fields JSON(max_dynamic_paths = 1024),
  INDEX idx_raw_tokens lower(raw) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1
) ENGINE = ReplacingMergeTree PARTITION BY toDate(ts) ORDER BY (tenant, ts, id)
SETTINGS non_replicated_deduplication_window = 10000`;

const NOW = Date.now();

const openStore = () => openTestStore(dataDir);
const withSession = (fn: (s: Session) => Promise<void>) => withEngineSession(dataDir, fn);

test('a data directory made by schema 1 (JSON fields) is migrated at start, every field kept', async () => {
  await withSession(async (s) => {
    await s.queryAsync('CREATE DATABASE IF NOT EXISTS vigil');
    await s.queryAsync(V1_DDL);
    const row = (id: string, fields: Record<string, string>) =>
      JSON.stringify({
        // Recent: retention (TTL) counts from `ingested`.
        ts: NOW - 60_000,
        ingested: NOW,
        id,
        tenant: 'default',
        source: 'http',
        layout: 'windows',
        host: 'dc01',
        message: 'm',
        raw: `{"EventID":4688,"id":"${id}"}`,
        parse_error: '',
        fields,
      });
    await s.insert({
      table: 'vigil.events',
      values: Buffer.from(
        [
          row('a', { EventID: '4688', 'process.name': 'cmd.exe', 'event.category': '["process"]', 'a._.b': 'x' }),
          row('b', {}),
        ].join('\n'),
      ),
      format: 'JSONEachRow',
    });
  });
  const store = openStore();
  await store.start();
  try {
    const rows = await store.query<EventRow>('SELECT * FROM vigil.events FINAL ORDER BY id', {});
    assert.deepEqual(
      rows.map((r) => r.id),
      ['a', 'b'],
    );
    const a = rowToEvent(rows[0]);
    assert.equal(a.EventID, '4688');
    assert.equal(a['process.name'], 'cmd.exe');
    assert.deepEqual(a['event.category'], ['process']);
    assert.equal(a['a._.b'], 'x');
    // The promoted columns are computed for migrated rows too.
    const [promoted] = await store.query<{ e: string | null; p: string | null }>(
      "SELECT f_EventID AS e, f_process_name AS p FROM vigil.events FINAL WHERE id = 'a'",
      {},
    );
    assert.deepEqual(promoted, { e: '4688', p: 'cmd.exe' });
    const [missing] = await store.query<{ e: string | null }>(
      "SELECT f_EventID AS e FROM vigil.events FINAL WHERE id = 'b'",
      {},
    );
    assert.equal(missing.e, null);
    // The engine computes the content hash of a migrated row as the writers do.
    const [hashed] = await store.query<{ h: string; raw: string }>(
      "SELECT content_hash AS h, raw FROM vigil.events FINAL WHERE id = 'a'",
      {},
    );
    assert.equal(hashed.h, contentHash(hashed.raw));
  } finally {
    await store.stop(Date.now() + 1000);
  }
  // Started again, the migrated table is used as it is.
  const again = openStore();
  await again.start();
  await again.stop(Date.now() + 1000);
});

test('an events table of a layout this Vigil does not know stops the start with a clear error', async () => {
  await withSession(async (s) => {
    await s.queryAsync(`ALTER TABLE vigil.events MODIFY COMMENT 'vigil events schema 99'`);
  });
  const store = openStore();
  await assert.rejects(store.start(), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'store_schema');
    assert.match(err.message, /layout 99, newer than this Vigil's/);
    return true;
  });
  await store.stop(Date.now() + 1000);
});

test('a batch is cut into INSERTs by raw size, the same way every time', () => {
  const ev = (raw: number) => ({ raw: 'x'.repeat(raw) }) as unknown as NormalizedEvent;
  const big = Array.from({ length: 10 }, () => ev(1024 * 1024));
  assert.deepEqual(insertChunks(big), [
    [0, 6],
    [6, 10],
  ]);
  const small = Array.from({ length: 8 * INSERT_CHUNK_EVENTS + 5 }, () => ev(200));
  assert.deepEqual(insertChunks(small), [
    [0, 8 * INSERT_CHUNK_EVENTS],
    [8 * INSERT_CHUNK_EVENTS, 8 * INSERT_CHUNK_EVENTS + 5],
  ]);
  assert.deepEqual(insertChunks([]), []);
});

test('a data directory whose path the engine would read as a glob is refused at start, before the engine opens', async () => {
  const odd = mkdtempSync(join(tmpdir(), 'vigil-store-{glob}-'));
  try {
    const store = openTestStore(odd);
    await assert.rejects(store.start(), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'store_path');
      assert.match(err.message, /data_dir/);
      return true;
    });
    assert.equal(store.health().ok, false);
  } finally {
    rmSync(odd, { recursive: true, force: true });
  }
});
