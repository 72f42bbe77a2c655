import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Session } from 'chdb';
import type { NormalizedEvent } from '../../src/lib/event.ts';
import { compileQuery } from '../../src/query/index.ts';
import type { EventRow, EventStore } from '../../src/store/index.ts';
import { eventsToRows } from '../../src/store/rows.ts';
import { eventsTableDdl, SCHEMA_VERSION } from '../../src/store/schema.ts';
import { openTestStore, withEngineSession } from '../harness/event-store.ts';

// The store's content key seen through the query language (a search by id or by words): it lives here, not
// beside the store, because the query language is built on the store (query/ imports store/).
// chdb binds one data directory per process: this file has its own.
const dataDir = mkdtempSync(join(tmpdir(), 'vigil-store-key-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

const NOW = Date.now();

const openStore = () => openTestStore(dataDir);
const withSession = (fn: (s: Session) => Promise<void>) => withEngineSession(dataDir, fn);

/** The events table as schema 2 made it: sorted on (tenant, ts, id), no content_hash. */
function v2Ddl(): string {
  return eventsTableDdl(30)
    .replace('  content_hash String,\n', '')
    .replace(/PRIMARY KEY .*\nORDER BY .*\n/, 'ORDER BY (tenant, ts, id)\n')
    .replace(/COMMENT '.*'$/, "COMMENT 'vigil events schema 2'");
}

function event(id: string, raw: string, ingested: number): NormalizedEvent {
  return {
    id,
    timestamp: NOW - 5_000,
    ingested,
    tenant: 'default',
    source: 'http',
    layout: 'json',
    raw,
    fields: { message: raw },
  };
}

async function search(store: EventStore, query: string): Promise<string[]> {
  const compiled = compileQuery(query, { tenants: ['default'], limit: 100, from: NOW - 60_000 });
  if (compiled.kind !== 'events') throw new Error(`${query} should select events`);
  const rows = await store.query<EventRow>(compiled.sql, compiled.params);
  return rows.map((r) => r.raw).sort();
}

test('a schema 2 table is keyed by content at start; a replayed event.id with other content is a new row, never a replacement', async () => {
  await withSession(async (s) => {
    await s.queryAsync('CREATE DATABASE IF NOT EXISTS vigil');
    await s.queryAsync(v2Ddl());
    await s.insert({
      table: 'vigil.events',
      values: eventsToRows([event('old-1', 'stored before the migration', NOW)]),
      format: 'JSONEachRow',
    });
  });
  const store = openStore();
  await store.start();
  try {
    const [layout] = await store.query<{ comment: string; key: string }>(
      "SELECT comment, sorting_key AS key FROM system.tables WHERE database = 'vigil' AND name = 'events'",
      {},
    );
    assert.deepEqual(layout, { comment: `vigil events schema ${SCHEMA_VERSION}`, key: 'tenant, ts, id, content_hash' });
    assert.deepEqual(await search(store, 'event.id:old-1'), ['stored before the migration']);

    // The attacker's replay: the same event.id and @timestamp, other text, in a batch of its own.
    await store.write([event('chosen-id', 'alpha original evidence', NOW)], { dedupToken: 'batch-1' });
    await store.write([event('chosen-id', 'bravo forged replacement', NOW + 1)], { dedupToken: 'batch-2' });
    await store.exec('OPTIMIZE TABLE vigil.events FINAL');
    const both = ['alpha original evidence', 'bravo forged replacement'];
    assert.deepEqual(await search(store, 'event.id:chosen-id'), both, 'by id: both versions');
    assert.deepEqual(await search(store, 'alpha'), ['alpha original evidence'], 'the first words still find it');
    assert.deepEqual(await search(store, 'bravo'), ['bravo forged replacement']);

    // A collector's resend after a failover: the same text, received again later by another node.
    await store.write([event('resent-id', 'charlie resent after failover', NOW + 2)], { dedupToken: 'node-a' });
    await store.write([event('resent-id', 'charlie resent after failover', NOW + 9)], { dedupToken: 'node-b' });
    await store.exec('OPTIMIZE TABLE vigil.events FINAL');
    assert.deepEqual(await search(store, 'event.id:resent-id'), ['charlie resent after failover']);
    const [stored] = await store.query<{ n: string }>(
      "SELECT count() AS n FROM vigil.events WHERE id = 'resent-id'",
      {},
    );
    assert.equal(Number(stored.n), 1, 'stored once');
  } finally {
    await store.stop(Date.now() + 1000);
  }
});
