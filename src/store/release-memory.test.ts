import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import type { NormalizedEvent } from '../lib/event.ts';
import { silentLogger } from '../lib/logger.ts';
import { createEventStore, RELEASE_MEMORY_INTERVAL_MS, storeConfigSchema } from './index.ts';

// chdb binds one data directory per process.
const dataDir = mkdtempSync(join(tmpdir(), 'vigil-release-'));
after(() => rmSync(dataDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }));

test("the engine's freed memory is released after writes at most once per interval, later writes' by a timer at its end", async () => {
  const metrics = new Registry();
  const store = createEventStore(storeConfigSchema.parse({ fsync: false }), { dataDir, metrics, logger: silentLogger });
  const releases = async () =>
    (await metrics.getSingleMetric('vigil_store_memory_releases_total')?.get())?.values[0]?.value ?? 0;
  await store.start();
  try {
    const now = Date.now();
    const event = (i: number): NormalizedEvent => ({
      id: `release-${i}`,
      timestamp: now,
      ingested: now,
      tenant: 'default',
      source: 'http',
      layout: 'json',
      raw: `{"n":${i}}`,
      fields: { n: i },
    });
    const t0 = Date.now();
    for (let i = 0; i < 4; i++) await store.write([event(i)]);
    const writesMs = Date.now() - t0;
    assert.ok(writesMs < RELEASE_MEMORY_INTERVAL_MS, `four one-event writes took ${writesMs} ms`);
    assert.equal(await releases(), 1, 'one release for four writes within the interval');
    const deadline = t0 + RELEASE_MEMORY_INTERVAL_MS + 10_000;
    while ((await releases()) < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await releases(), 2, 'the writes after the first are released at the end of the interval');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await releases(), 2, 'and nothing more without writes');
  } finally {
    // The engine, which lives as long as the process, would go on merging the last parts into the folder.
    await store.exec('SYSTEM STOP MERGES vigil.events');
    await store.stop(Date.now() + 10_000);
  }
});
