import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../lib/logger.ts';
import { createEventStore, storeConfigSchema } from './index.ts';

// chdb binds one data directory per process: this file has its own.
const dataDir = mkdtempSync(join(tmpdir(), 'vigil-store-pool-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

test('engine calls waiting their turn, inserts and searches, do not hold up file writes (libuv pool threads stay free)', async () => {
  const store = createEventStore(storeConfigSchema.parse({ fsync: false }), {
    dataDir,
    metrics: new Registry(),
    logger: silentLogger,
  });
  await store.start();
  try {
    // Inserts that take a second each (chdb serializes parameterized queries itself, not inserts). The engine
    // runs one at a time: in chdb, each waiting insert would hold one of libuv's 4 threads.
    await store.exec('CREATE TABLE vigil.slow (x UInt8, s UInt8 DEFAULT sleepEachRow(1)) ENGINE = Memory');
    const inserts = Array.from({ length: 6 }, () => store.insertRows('slow', Buffer.from('{"x":1}')));
    // And searches, on their own session: a slow one running and more waiting their turn.
    const slowSearch = 'SELECT sum(sleepEachRow(0.05)) AS s FROM numbers(20) SETTINGS max_block_size = 1';
    const searches = Array.from({ length: 4 }, () => store.search('analyst', (scope) => scope.query(slowSearch, {})));
    await new Promise((r) => setTimeout(r, 100));
    const started = performance.now();
    const fh = await open(join(dataDir, 'pool-probe'), 'a');
    await fh.write('x');
    await fh.datasync();
    await fh.close();
    const ms = performance.now() - started;
    await Promise.all([...inserts, ...searches]);
    assert.ok(ms < 500, `a file write and fdatasync took ${Math.round(ms)} ms behind the queued inserts`);
  } finally {
    await store.stop(Date.now() + 5000);
  }
});
