import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import type { NormalizedEvent } from '../lib/event.ts';
import { silentLogger } from '../lib/logger.ts';
import { createEventStore, storeConfigSchema } from './index.ts';

// chdb binds one data directory per process: this file has its own.
const dataDir = mkdtempSync(join(tmpdir(), 'vigil-store-parts-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

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

async function activeParts(metrics: Registry): Promise<number | undefined> {
  const m = /^vigil_store_active_parts (\d+)$/m.exec(await metrics.metrics());
  return m ? Number(m[1]) : undefined;
}

test('vigil_store_active_parts reads the active parts of the events table at each scrape', async () => {
  const metrics = new Registry();
  const store = createEventStore(storeConfigSchema.parse({ fsync: false }), {
    dataDir,
    metrics,
    logger: silentLogger,
  });
  await store.start();
  try {
    assert.equal(await activeParts(metrics), 0);
    // Two days, two writes: at least one part per partition (merges may join the parts of one day).
    const day = 86_400_000;
    await store.write([event('a', Date.now() - 60_000)]);
    await store.write([event('b', Date.now() - day - 60_000)]);
    const n = await activeParts(metrics);
    assert.ok(n !== undefined && n >= 2, `active parts ${n}`);
    const [{ parts }] = await store.query<{ parts: string }>(
      "SELECT count() AS parts FROM system.parts WHERE database = 'vigil' AND table = 'events' AND active",
      {},
    );
    assert.equal(n, Number(parts));
  } finally {
    await store.stop(Date.now() + 5000);
  }
  // A stopped store keeps the last value instead of failing the scrape.
  assert.ok((await activeParts(metrics)) !== undefined);
});
