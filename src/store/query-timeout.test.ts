import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../lib/logger.ts';
import { createEventStore, storeConfigSchema } from './index.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'vigil-store-timeout-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

test('a plain read (no search) is stopped by the engine at store.query_timeout_ms with 503 query_timeout', async () => {
  const store = createEventStore(storeConfigSchema.parse({ fsync: false, query_timeout_ms: 300 }), {
    dataDir,
    metrics: new Registry(),
    logger: silentLogger,
  });
  await store.start();
  try {
    // 200 rows at 50 ms each: 10 s unless the engine stops it.
    const sleeper = 'SELECT sum(sleepEachRow(0.05)) AS slept FROM numbers(200) SETTINGS max_block_size = 1';
    const started = performance.now();
    await assert.rejects(store.query(sleeper, {}), (err: Error & { code?: string; status?: number }) => {
      assert.equal(err.code, 'query_timeout');
      assert.equal(err.status, 503);
      assert.doesNotMatch(err.message, /SELECT|sleepEachRow/);
      return true;
    });
    const took = performance.now() - started;
    assert.ok(took < 3000, `the plain read was stopped after ${Math.round(took)} ms`);
    assert.deepEqual(await store.query('SELECT 1 AS one', {}), [{ one: 1 }]);
  } finally {
    await store.stop(Date.now() + 1000);
  }
});
