import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../../lib/logger.ts';
import { createEventStore, storeConfigSchema } from '../../store/index.ts';
import { createIdempotencyKeys } from './idempotency.ts';

const root = mkdtempSync(join(tmpdir(), 'vigil-keys-'));
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
const open = (opts: { dir?: string; maxKeys?: number; metrics?: Registry } = {}) => {
  const dir = opts.dir ?? join(root, `keys-${n++}`);
  const metrics = opts.metrics ?? new Registry();
  return {
    dir,
    metrics,
    keys: createIdempotencyKeys({ dir, maxKeys: opts.maxKeys ?? 1000, metrics, logger: silentLogger }),
  };
};

const HOUR = 3600_000;

test('a key keeps its first receipt time, across a restart', async () => {
  const { dir, keys } = open();
  await keys.start();
  const t0 = Date.now();
  assert.equal(await keys.firstReceipt('default', 'req-1', t0), t0);
  assert.equal(await keys.firstReceipt('default', 'req-1', t0 + 500), t0, 'a retry gets the first time');
  assert.equal(await keys.firstReceipt('acme', 'req-1', t0 + 600), t0 + 600, 'keys are per tenant');
  await keys.stop();

  const again = createIdempotencyKeys({ dir, maxKeys: 1000, metrics: new Registry(), logger: silentLogger });
  await again.start();
  assert.equal(await again.firstReceipt('default', 'req-1', t0 + 9000), t0, 'read back from the log');
  assert.equal(await again.firstReceipt('acme', 'req-1', t0 + 9000), t0 + 600);
  await again.stop();
});

test('concurrent requests with one key get one time, and both wait until it is on disk', async () => {
  const { keys, dir } = open();
  await keys.start();
  const now = Date.now();
  const [a, b] = await Promise.all([keys.firstReceipt('t', 'k', now), keys.firstReceipt('t', 'k', now + 5)]);
  assert.equal(a, now);
  assert.equal(b, now);
  await keys.stop();
  const files = readdirSync(dir);
  assert.equal(files.length, 1);
});

test('a torn last line (a crash mid-write) is skipped; keys older than 24 hours are forgotten with their files', async () => {
  const { dir } = open();
  const now = Date.now();
  mkdirSync(dir, { recursive: true });
  const oldSpan = Math.floor((now - 26 * HOUR) / HOUR);
  writeFileSync(join(dir, `keys-${oldSpan}.ndjson`), `${JSON.stringify(['t', 'old', now - 26 * HOUR])}\n`);
  const span = Math.floor(now / HOUR);
  writeFileSync(join(dir, `keys-${span}.ndjson`), `${JSON.stringify(['t', 'kept', now - 1000])}\n`);
  appendFileSync(join(dir, `keys-${span}.ndjson`), '["t","torn",17');
  const keys = createIdempotencyKeys({ dir, maxKeys: 1000, metrics: new Registry(), logger: silentLogger });
  await keys.start();
  assert.equal(await keys.firstReceipt('t', 'kept', now), now - 1000);
  assert.equal(await keys.firstReceipt('t', 'old', now), now, 'expired: a new request');
  assert.equal(await keys.firstReceipt('t', 'torn', now), now, 'never answered: a new request');
  assert.equal(await keys.firstReceipt('t', 'after-crash', now + 1), now + 1);
  await keys.stop();
  assert.ok(!readdirSync(dir).includes(`keys-${oldSpan}.ndjson`), 'the expired file is deleted');
  // A key appended after the torn line is read back (not glued to the cut line).
  const again = createIdempotencyKeys({ dir, maxKeys: 1000, metrics: new Registry(), logger: silentLogger });
  await again.start();
  assert.equal(await again.firstReceipt('t', 'after-crash', now + 5000), now + 1);
  assert.equal(await again.firstReceipt('t', 'torn', now + 5000), now);
  await again.stop();
});

test('past the configured most keys the oldest are forgotten, and counted', async () => {
  const { keys, metrics } = open({ maxKeys: 1000 });
  await keys.start();
  const now = Date.now();
  for (let i = 0; i < 1005; i++) await keys.firstReceipt('t', `k${i}`, now + i);
  assert.equal(await keys.firstReceipt('t', 'k1004', now + 9999), now + 1004);
  assert.equal(await keys.firstReceipt('t', 'k0', now + 9999), now + 9999, 'evicted: a new request');
  const evicted = (await metrics.getSingleMetric('vigil_ingest_idempotency_keys_evicted_total')?.get())?.values[0]
    ?.value;
  assert.equal(evicted, 6);
  await keys.stop();
});

test("keys of an older version's table in the event store are taken over, and the table dropped", async () => {
  const store = createEventStore(storeConfigSchema.parse({ fsync: false }), {
    dataDir: join(root, 'store'),
    metrics: new Registry(),
    logger: silentLogger,
  });
  await store.start();
  try {
    await store.exec(`CREATE TABLE vigil.ingest_keys (
      tenant LowCardinality(String), key String, received_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree ORDER BY (tenant, key)`);
    const then = Date.now() - HOUR;
    await store.insertRows(
      'ingest_keys',
      Buffer.from(
        [
          { tenant: 'default', key: 'legacy', received_at: then },
          { tenant: 'default', key: 'ancient', received_at: then - 30 * HOUR },
        ]
          .map((r) => JSON.stringify(r))
          .join('\n'),
      ),
    );
    const dir = join(root, 'legacy-keys');
    const keys = createIdempotencyKeys({ dir, maxKeys: 1000, metrics: new Registry(), logger: silentLogger, store });
    await keys.start();
    assert.equal(await keys.firstReceipt('default', 'legacy', Date.now()), then, 'the first receipt of the table');
    const now = Date.now();
    assert.equal(await keys.firstReceipt('default', 'ancient', now), now);
    await keys.stop();
    const left = await store.query<{ n: number }>(
      "SELECT count() AS n FROM system.tables WHERE database = 'vigil' AND name = 'ingest_keys'",
      {},
    );
    assert.equal(Number(left[0].n), 0, 'the table is gone');
    const reopened = createIdempotencyKeys({ dir, maxKeys: 1000, metrics: new Registry(), logger: silentLogger });
    await reopened.start();
    assert.equal(await reopened.firstReceipt('default', 'legacy', Date.now()), then, 'now in the log');
    await reopened.stop();
  } finally {
    await store.stop(Date.now() + 10000);
  }
});
