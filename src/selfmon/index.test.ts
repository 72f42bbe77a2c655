import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { clusterMetrics } from '../cluster/metrics.ts';
import { intakeMetrics } from '../intake/metrics.ts';
import type { NormalizedEvent } from '../lib/event.ts';
import { silentLogger } from '../lib/logger.ts';
import { gauge } from '../lib/metrics.ts';
import { createSelfmon, MAX_EVENTS_PER_CHECK, magnitude, type SelfmonDeps, selfmonConfigSchema } from './index.ts';

function setup(over: Partial<SelfmonDeps> = {}, config = {}) {
  const metrics = new Registry();
  const published: NormalizedEvent[][] = [];
  let failNext = false;
  let clock = Date.parse('2026-12-06T08:00:00Z');
  const selfmon = createSelfmon(selfmonConfigSchema.parse({ interval_ms: 60_000, ...config }), {
    publish: async (events) => {
      if (failNext) {
        failNext = false;
        throw new Error('the bus is full');
      }
      published.push(events);
    },
    tenant: 'ops',
    nodeId: 'node-7',
    dataDir: tmpdir(),
    readDisk: () => ({ ratio: 0.5, free: 1e10 }),
    metrics,
    logger: silentLogger,
    now: () => clock,
    ...over,
  });
  return {
    metrics,
    selfmon,
    published,
    failOnce: () => {
      failNext = true;
    },
    advance: (ms: number) => {
      clock += ms;
    },
  };
}

const checks = (events: NormalizedEvent[] | undefined) =>
  (events ?? []).map((e) => `${e.fields['vigil.health.check']}:${e.fields['vigil.health.consumer'] ?? ''}`).sort();

test('a health event is an event of the vigil logsource, in the health tenant, from this node', async () => {
  const t = setup({ site: 'site-a' });
  gauge(t.metrics, 'vigil_store_replica_lag_messages', 'lag').set(12);
  assert.equal(await t.selfmon.check(), 2);
  const lag = t.published[0].find((e) => e.fields['vigil.health.check'] === 'consumer_lag');
  assert.ok(lag);
  assert.deepEqual(lag.logsource, { product: 'vigil', service: 'health' });
  assert.equal(lag.tenant, 'ops');
  assert.equal(lag.source, 'selfmon');
  assert.equal(lag.fields['host.name'], 'node-7');
  assert.equal(lag.fields['vigil.health.site'], 'site-a');
  assert.equal(lag.fields['vigil.health.lag_messages'], 12);
  assert.equal(lag.fields['event.dataset'], 'vigil.health');
  assert.match(String(lag.fields.message), /12 messages behind/);
  assert.deepEqual(JSON.parse(lag.raw), lag.fields);
  assert.notEqual(lag.id, t.published[0][1].id);
});

test('gauges are sent at once when their level changes, otherwise every interval_ms', async () => {
  const t = setup();
  const lag = gauge(t.metrics, 'vigil_store_replica_lag_messages', 'lag');
  lag.set(40);
  await t.selfmon.check();
  assert.deepEqual(checks(t.published[0]), ['consumer_lag:store', 'disk:']);
  // Same order of magnitude 15 s later: nothing new.
  t.advance(15_000);
  lag.set(70);
  assert.equal(await t.selfmon.check(), 0);
  // Ten times larger: sent at the next check, alone.
  t.advance(15_000);
  lag.set(4000);
  assert.equal(await t.selfmon.check(), 1);
  assert.equal(t.published[1][0].fields['vigil.health.lag_messages'], 4000);
  // A minute after the first sample, the disk is due again (unchanged); the lag was sent 15 s ago.
  t.advance(30_000);
  assert.equal(await t.selfmon.check(), 1);
  assert.deepEqual(checks(t.published[2]), ['disk:']);
});

test('counters are sent when they grow, with what was added; a failed publish sends the count again', async () => {
  const t = setup();
  const cluster = clusterMetrics(t.metrics);
  const intake = intakeMetrics(t.metrics);
  await t.selfmon.check();
  assert.deepEqual(checks(t.published[0]), ['disk:'], 'no loss, no failover, no refusal: nothing to say');
  cluster.leaseLosses.inc(2);
  intake.rejected.inc({ source: 'http', reason: 'reserved_logsource' }, 5);
  t.failOnce();
  await assert.rejects(t.selfmon.check(), /the bus is full/);
  cluster.leaseLosses.inc();
  t.advance(15_000);
  await t.selfmon.check();
  const sent = t.published[1];
  const loss = sent.find((e) => e.fields['vigil.health.check'] === 'lease_loss');
  assert.equal(loss?.fields['vigil.health.count'], 3);
  assert.equal(loss?.fields['vigil.health.total'], 3);
  const refused = sent.find((e) => e.fields['vigil.health.check'] === 'intake_rejected');
  assert.equal(refused?.fields['vigil.health.intake.reason'], 'reserved_logsource');
  assert.equal(refused?.fields['vigil.health.count'], 5);
  // Once sent, the counts start again from there.
  cluster.leaseLosses.inc();
  t.advance(15_000);
  await t.selfmon.check();
  const again = t.published[2].find((e) => e.fields['vigil.health.check'] === 'lease_loss');
  assert.equal(again?.fields['vigil.health.count'], 1);
  assert.ok(!t.published[2].some((e) => e.fields['vigil.health.check'] === 'intake_rejected'));
  assert.equal(
    (await t.metrics.getSingleMetric('vigil_selfmon_failures_total')?.get())?.values[0]?.value,
    1,
    'the failed publish is counted',
  );
});

test('one check sends at most MAX_EVENTS_PER_CHECK events, however many labels the registry grew', async () => {
  const t = setup();
  const intake = intakeMetrics(t.metrics);
  for (let i = 0; i < 3 * MAX_EVENTS_PER_CHECK; i++) intake.rejected.inc({ source: `src-${i}`, reason: 'oversize' });
  assert.equal(await t.selfmon.check(), MAX_EVENTS_PER_CHECK);
  // The rest follow at the next checks.
  assert.equal(await t.selfmon.check(), MAX_EVENTS_PER_CHECK);
});

test('a signal that cannot be read is left out, reported, and the others are sent', async () => {
  const t = setup({
    peerLags: async () => {
      throw new Error('not connected to NATS');
    },
    spool: () => ({ events: 3, batches: 1, bytes: 900, oldestAt: Date.parse('2026-12-06T07:59:00Z') }),
  });
  assert.equal(await t.selfmon.check(), 2);
  assert.match(t.selfmon.health().detail ?? '', /site lag: not connected to NATS/);
  assert.equal(t.selfmon.health().ok, true, 'self-monitoring never makes the node unready');
  const spool = t.published[0].find((e) => e.fields['vigil.health.check'] === 'spool');
  assert.equal(spool?.fields['vigil.health.spool.oldest_age_seconds'], 60);
});

test('started, it sends at once and then every check_interval_ms; stopped, it sends no more', async () => {
  const t = setup({ now: Date.now }, { check_interval_ms: 1000 });
  gauge(t.metrics, 'vigil_store_replica_lag_messages', 'lag').set(1);
  await t.selfmon.start();
  const deadline = Date.now() + 10_000;
  while (t.published.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(t.published.length, 1);
  gauge(t.metrics, 'vigil_store_replica_lag_messages', 'lag').set(100);
  while (t.published.length === 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(t.published[1]?.[0]?.fields['vigil.health.lag_messages'], 100);
  await t.selfmon.stop(Date.now() + 5000);
  const count = t.published.length;
  gauge(t.metrics, 'vigil_store_replica_lag_messages', 'lag').set(100_000);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(t.published.length, count);
});

test('magnitude is the order of a count', () => {
  assert.deepEqual([0, 1, 9, 10, 999, 1000, 12345].map(magnitude), ['0', '1', '1', '10', '100', '1000', '10000']);
});
