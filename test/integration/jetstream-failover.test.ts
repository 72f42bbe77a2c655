import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import {
  createJetStreamBus,
  type JetStreamBus,
  type JetStreamBusConfigInput,
  jetStreamBusConfigSchema,
} from '../../src/bus/jetstream/index.ts';
import type { NormalizedEvent } from '../../src/lib/event.ts';
import { createLogger, silentLogger } from '../../src/lib/logger.ts';
import { createEventStore, type EventStore, storeConfigSchema } from '../../src/store/index.ts';
import { createMaterializer, type Materializer, materializeConfigSchema } from '../../src/store/materialize/index.ts';
import { type NatsCluster, startNatsCluster } from '../harness/nats.ts';

// One chdb session per process: this file opens one store and keeps it for all its tests.
let cluster: NatsCluster;
let store: EventStore;
const dirs: string[] = [];
const buses: JetStreamBus[] = [];
const logger = process.env.DEBUG_VIGIL_TESTS ? createLogger(process.env.DEBUG_VIGIL_TESTS) : silentLogger;

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vigil-jsfail-'));
  dirs.push(d);
  return d;
}

before(async () => {
  cluster = await startNatsCluster();
  store = createEventStore(storeConfigSchema.parse({}), { dataDir: tempDir(), metrics: new Registry(), logger });
  await store.start();
});

after(async () => {
  for (const b of buses) await b.stop(Date.now() + 2000).catch(() => undefined);
  await store?.stop(Date.now() + 1000);
  await cluster?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function startBus(metrics: Registry, over: JetStreamBusConfigInput = {}): Promise<JetStreamBus> {
  const config = jetStreamBusConfigSchema.parse({ servers: cluster.urls, ...over });
  const bus = createJetStreamBus(config, { dataDir: tempDir(), metrics, logger });
  buses.push(bus);
  await bus.start();
  await bus.ready();
  return bus;
}

function ev(tenant: string, run: string, i: number): NormalizedEvent {
  const now = Date.now();
  return {
    id: `${run}-${i}`,
    timestamp: now,
    ingested: now,
    tenant,
    source: 'syslog-tcp',
    layout: 'syslog',
    raw: `<34>Oct 11 22:14:15 web-${i % 7} sshd[${i}]: Failed password for invalid user u${i % 13} from 10.1.${i % 250}.${i % 200} port ${20000 + (i % 40000)} ssh2`,
    fields: {
      'host.name': `web-${i % 7}`,
      message: `Failed password ${i}`,
      'source.ip': `10.1.${i % 250}.${i % 200}`,
      'test.seq': i,
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function counterValue(metrics: Registry, name: string): Promise<number> {
  const m = await metrics.getSingleMetric(name)?.get();
  return (m?.values ?? []).reduce((n, v) => n + v.value, 0);
}

test('kill -9 a follower, then the stream leader, under 5,000 events/s: every acknowledged event is stored exactly once', async () => {
  const run = `fo${Date.now()}`;
  const tenant = `t${run}`;
  const pubMetrics = new Registry();
  const storeMetrics = new Registry();
  const publisher = await startBus(pubMetrics);
  // A message pulled by the store node just before it went down comes again after ack_wait.
  const storeBus = await startBus(storeMetrics, { consumer: { ack_wait_ms: 10000 } });
  const matConfig = materializeConfigSchema.parse({ lag_poll_interval_ms: 250 });
  let materializer: Materializer = createMaterializer(matConfig, {
    stream: storeBus,
    store,
    nodeId: 'node-a',
    metrics: storeMetrics,
    logger,
  });
  await materializer.start();

  // Offered load: a 500-event batch every 100 ms, whatever the previous ones are doing.
  const acked: number[] = [];
  const latencies: { at: number; ms: number }[] = [];
  let next = 0;
  let rejected = 0;
  let loadOn = true;
  const t0 = Date.now();
  const inflightPublishes = new Set<Promise<void>>();
  const load = (async () => {
    let tick = 0;
    while (loadOn) {
      const first = next;
      next += 500;
      const start = Date.now();
      const p = publisher
        .publish(Array.from({ length: 500 }, (_, k) => ev(tenant, run, first + k)))
        .then(
          () => {
            for (let k = first; k < first + 500; k++) acked.push(k);
            latencies.push({ at: start - t0, ms: Date.now() - start });
          },
          () => {
            rejected++;
          },
        )
        .finally(() => {
          inflightPublishes.delete(p);
        });
      inflightPublishes.add(p);
      tick++;
      await sleep(Math.max(0, t0 + tick * 100 - Date.now()));
    }
  })();

  const events: string[] = [];
  const mark = (what: string) => events.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${what}`);
  await sleep(4000);
  const leader = await cluster.streamLeader('VIGIL_EVENTS');
  const follower = cluster.nodes.find((n) => n !== leader)!;
  mark(`kill -9 follower ${follower.name} (pid ${follower.pid()})`);
  await follower.kill('SIGKILL');
  await sleep(3000);
  mark(`restart ${follower.name}`);
  await follower.restart();
  await sleep(1000);
  const leader2 = await cluster.streamLeader('VIGIL_EVENTS');
  mark(`kill -9 leader ${leader2.name} (pid ${leader2.pid()})`);
  await leader2.kill('SIGKILL');
  await sleep(1000);
  // The store node goes down too and will have to catch up from the stream.
  mark('stop the store replica');
  await materializer.stop(Date.now() + 5000);
  await sleep(3000);
  mark(`restart ${leader2.name}`);
  await leader2.restart();
  const newLeader = await cluster.streamLeader('VIGIL_EVENTS');
  mark(`stream leader is ${newLeader.name}`);
  await waitFor('20 s of load', 30000, () => Date.now() - t0 >= 20000);
  loadOn = false;
  await load;
  await Promise.all([...inflightPublishes]);
  mark('load stopped');
  const offered = next;
  const longest = latencies.reduce((m, l) => (l.ms > m.ms ? l : m), { at: 0, ms: 0 });
  const spooled = await counterValue(pubMetrics, 'vigil_bus_spooled_batches_total');
  const retries = await counterValue(pubMetrics, 'vigil_bus_publish_retries_total');
  await waitFor('the publisher spool to drain', 60000, () => publisher.stats().spool.batches === 0);
  mark('publisher spool drained');

  // Catch-up of the store replica that was down.
  const backlog = await storeBus.streamPosition();
  const before = await counterValue(storeMetrics, 'vigil_store_materialized_events_total');
  const tc = Date.now();
  materializer = createMaterializer(matConfig, {
    stream: storeBus,
    store,
    nodeId: 'node-a',
    metrics: storeMetrics,
    logger,
  });
  await materializer.start();
  await waitFor('the replica to catch up', 90000, () => {
    const lag = materializer.lag();
    return lag.updatedAt > tc && lag.ackFloor >= backlog.lastSeq && lag.lagMessages === 0;
  });
  const catchUpMs = Date.now() - tc;
  const caughtUp = (await counterValue(storeMetrics, 'vigil_store_materialized_events_total')) - before;
  mark('replica caught up');

  const rows = await store.query<{ id: string }>(`SELECT id FROM vigil.events FINAL WHERE tenant = {tenant:String}`, {
    tenant,
  });
  const [raw] = await store.query<{ c: string }>(
    `SELECT count() AS c FROM vigil.events WHERE tenant = {tenant:String}`,
    {
      tenant,
    },
  );
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
  const lost = acked.filter((k) => !counts.has(`${run}-${k}`));
  const duplicated = [...counts.values()].filter((c) => c > 1).length;

  console.log(events.join('\n'));
  console.log(
    [
      `offered ${offered} events in ${(offered / 500) | 0} batches over 20 s; acknowledged ${acked.length}, rejected batches ${rejected}`,
      `longest publish stall ${longest.ms} ms (batch started at ${(longest.at / 1000).toFixed(1)} s); publishes over 1 s: ${latencies.filter((l) => l.ms > 1000).length}`,
      `spool absorbed it: ${spooled > 0 ? `yes, ${spooled} messages spooled` : 'no (retries were enough)'}; publish retries ${retries}`,
      `catch-up of the store replica: ${caughtUp} events in ${catchUpMs} ms = ${Math.round((caughtUp / catchUpMs) * 1000)} events/s`,
      `stored: ${rows.length} rows with FINAL (${raw.c} physical rows before merges), lost ${lost.length}, duplicated ${duplicated}`,
    ].join('\n'),
  );
  assert.equal(rejected, 0, 'no publish was refused');
  assert.equal(lost.length, 0, `acknowledged events missing: ${lost.slice(0, 10).join(', ')}`);
  assert.equal(duplicated, 0, 'no event is stored twice');
  assert.equal(rows.length, acked.length, 'exactly the acknowledged events');
  assert.ok(acked.length >= 90000, `the load ran (${acked.length} events acknowledged)`);
  await materializer.stop(Date.now() + 5000);
});
