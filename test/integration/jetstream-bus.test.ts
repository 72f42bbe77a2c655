import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Registry } from 'prom-client';
import {
  createJetStreamBus,
  encodeBatches,
  type JetStreamBus,
  type JetStreamBusConfigInput,
  jetStreamBusConfigSchema,
  type StreamBatch,
} from '../../src/bus/jetstream/index.ts';
import type { NormalizedEvent } from '../../src/lib/event.ts';
import { createLogger, silentLogger } from '../../src/lib/logger.ts';
import { type NatsCluster, startNatsCluster } from '../harness/nats.ts';

let cluster: NatsCluster;
const dirs: string[] = [];
const buses: JetStreamBus[] = [];

before(async () => {
  cluster = await startNatsCluster();
});

after(async () => {
  for (const b of buses) await b.stop(Date.now() + 2000).catch(() => undefined);
  await cluster?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function ev(run: string, i: number, tenant = 'default'): NormalizedEvent {
  return {
    id: `${run}-${i}`,
    timestamp: Date.now(),
    ingested: Date.now(),
    tenant,
    source: 'http',
    layout: 'json',
    raw: `{"message":"event ${i} of ${run}"}`,
    fields: { message: `event ${i} of ${run}`, 'test.seq': i },
  };
}

async function startBus(
  over: JetStreamBusConfigInput = {},
  opts: { dataDir?: string; wait?: boolean } = {},
): Promise<{ bus: JetStreamBus; metrics: Registry; dataDir: string }> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'vigil-jsbus-'));
  dirs.push(dataDir);
  const metrics = new Registry();
  const config = jetStreamBusConfigSchema.parse({ servers: cluster.urls, ...over });
  const logger = process.env.DEBUG_VIGIL_TESTS ? createLogger('debug') : silentLogger;
  const bus = createJetStreamBus(config, { dataDir, metrics, logger });
  buses.push(bus);
  await bus.start();
  if (opts.wait !== false) await bus.ready();
  return { bus, metrics, dataDir };
}

/** Collects what a consumer receives, and resolves when `until` says so. */
function collector(bus: JetStreamBus, name: string) {
  const batches: StreamBatch[] = [];
  const sub = bus.subscribeStream(name, async (b) => {
    batches.push(b);
  });
  return {
    sub,
    batches,
    ids: () => batches.flatMap((b) => b.events.map((e) => e.id)),
    async until(check: () => boolean, timeoutMs = 30000) {
      const deadline = Date.now() + timeoutMs;
      while (!check()) {
        if (Date.now() > deadline) throw new Error(`timed out; received ${batches.length} batches`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

test('publish resolves after the PubAck; a durable consumer gets every event once, in stream order', async () => {
  const { bus } = await startBus();
  const run = `pub${Date.now()}`;
  const c = collector(bus, 'order-check');
  const t0 = Date.now();
  let events = 0;
  for (let b = 0; b < 50; b++) {
    await bus.publish(Array.from({ length: 100 }, (_, i) => ev(run, b * 100 + i)));
    events += 100;
  }
  const publishMs = Date.now() - t0;
  assert.equal(bus.pending(), 0);
  assert.equal(bus.stats().mode, 'direct');
  const ours = () => c.ids().filter((id) => id.startsWith(run));
  await c.until(() => ours().length >= events);
  assert.deepEqual(
    ours(),
    Array.from({ length: events }, (_, i) => `${run}-${i}`),
  );
  const seqs = c.batches.map((b) => b.firstSeq);
  assert.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
  );
  console.log(`sequential publish of 100-event batches, R3: ${Math.round((events / publishMs) * 1000)} events/s`);
  await c.sub.stop();

  // Concurrent publishers: throughput of the direct path.
  const run2 = `conc${Date.now()}`;
  const t1 = Date.now();
  let n = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let b = 0; b < 25; b++) {
        const first = n;
        n += 500;
        await bus.publish(Array.from({ length: 500 }, (_, i) => ev(run2, first + i)));
      }
    }),
  );
  console.log(
    `8 concurrent publishers of 500-event batches, R3: ${Math.round((n / (Date.now() - t1)) * 1000)} events/s`,
  );
});

test('a retried publish of the same events is stored once (same Nats-Msg-Id inside the duplicate window)', async () => {
  const { bus } = await startBus();
  const run = `dup${Date.now()}`;
  const events = Array.from({ length: 20 }, (_, i) => ev(run, i, 'dup-tenant'));
  const nc = await connect({ servers: cluster.urls });
  const jsm = await jetstreamManager(nc);
  const subject = 'vigil.events.dup-tenant';
  const count = async () =>
    (await jsm.streams.info('VIGIL_EVENTS', { subjects_filter: subject })).state.subjects?.[subject] ?? 0;
  const before = await count();
  await bus.publish(events);
  await bus.publish(events);
  await bus.publish(events.map((e) => ({ ...e, ingested: e.ingested + 5 })));
  assert.equal((await count()) - before, 1, 'three publishes of the same ids are one message');

  // The same id through the raw client is reported as a duplicate by the server.
  const [batch] = encodeBatches(events, { subjectPrefix: 'vigil.events', maxBytes: 1 << 20, compress: true });
  const js = (await import('@nats-io/jetstream')).jetstream(nc);
  const ack = await js.publish(batch.subject, batch.body, { msgID: batch.id });
  assert.equal(ack.duplicate, true);
  await nc.close();
});

test('subscribe: a durable consumer resumes where it was acknowledged; an ephemeral one sees only new events', async () => {
  const { bus } = await startBus();
  const run = `sub${Date.now()}`;
  const seen = { durable: [] as string[], live: [] as string[] };
  const tenant = `t${run}`;
  const mine = (events: NormalizedEvent[]) => events.filter((e) => e.tenant === tenant).map((e) => e.id);
  await bus.publish([ev(run, 0, tenant)]);
  bus.subscribe('resume-check', async (events) => {
    seen.durable.push(...mine(events));
  });
  const waitUntil = async (check: () => boolean) => {
    const deadline = Date.now() + 20000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out: ${JSON.stringify(seen)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await waitUntil(() => seen.durable.includes(`${run}-0`));
  bus.subscribe(
    'live',
    async (events) => {
      seen.live.push(...mine(events));
    },
    { durable: false },
  );
  await new Promise((r) => setTimeout(r, 1000));
  await bus.publish([ev(run, 1, tenant)]);
  await waitUntil(() => seen.live.includes(`${run}-1`) && seen.durable.includes(`${run}-1`));
  assert.deepEqual(seen.live, [`${run}-1`], 'the ephemeral consumer starts at new messages');
  await bus.stop(Date.now() + 2000);

  // Published while no process consumes; the durable consumer gets it on the next start, and only it.
  const { bus: other } = await startBus();
  await other.publish([ev(run, 2, tenant)]);
  const again: string[] = [];
  other.subscribe('resume-check', async (events) => {
    again.push(...mine(events));
  });
  await waitUntil(() => again.includes(`${run}-2`));
  assert.deepEqual(again, [`${run}-2`]);
});

test('NATS fully down, and the publisher restarted meanwhile: the spool acknowledges, then forwards in order', async () => {
  const fast = { publish_max_wait_ms: 1000, publish_timeout_ms: 500 };
  const first = await startBus(fast);
  const { bus: consumerBus } = await startBus();
  const c = collector(consumerBus, 'outage-check');
  const run = `down${Date.now()}`;
  const tenant = `t${run}`;
  const subject = `vigil.events.${tenant}`;
  await first.bus.publish([ev(run, 0, tenant)]);
  await c.until(() => c.ids().includes(`${run}-0`));

  await Promise.all(cluster.nodes.map((n) => n.kill('SIGKILL')));
  const t0 = Date.now();
  let next = 1;
  const stalls: number[] = [];
  const publishSome = async (bus: JetStreamBus, batches: number) => {
    for (let b = 0; b < batches; b++) {
      const s = Date.now();
      await bus.publish(Array.from({ length: 50 }, () => ev(run, next++, tenant)));
      stalls.push(Date.now() - s);
    }
  };
  await publishSome(first.bus, 20);
  assert.equal(first.bus.stats().mode, 'spool');
  assert.equal(first.bus.stats().spool.batches, 20, 'every batch waits in the spool');
  const spoolGauge = (await first.metrics.getSingleMetric('vigil_spool_batches')?.get())?.values[0]?.value;
  assert.equal(spoolGauge, 20);

  // The ingest node restarts while NATS is still down: its spool is replayed and keeps its order.
  await first.bus.stop(Date.now() + 2000);
  const second = await startBus(fast, { dataDir: first.dataDir, wait: false });
  assert.equal(second.bus.stats().spool.batches, 20, 'the spool is reopened with its batches');
  assert.equal(second.bus.stats().mode, 'spool');
  await publishSome(second.bus, 20);
  assert.equal(second.bus.stats().spool.batches, 40);
  assert.ok(
    Math.max(...stalls) <= 2500,
    `a publish waited at most publish_max_wait_ms before the spool took it (${Math.max(...stalls)} ms)`,
  );
  console.log(
    `NATS down: 40 batches acknowledged from the spool in ${Date.now() - t0} ms (first waited ${stalls[0]} ms, then ${Math.max(...stalls.slice(1))} ms at most)`,
  );

  for (const n of cluster.nodes) await n.restart({ wait: false });
  const t1 = Date.now();
  await cluster.waitHealthy();
  const healthyMs = Date.now() - t1;
  while (second.bus.stats().spool.batches > 0) await new Promise((r) => setTimeout(r, 50));
  const forwardedMs = Date.now() - t1;
  // The consumer is at-least-once: the ack of event 0 may have died with the servers, so it may come twice.
  const ours = () => [...new Set(c.ids().filter((id) => id.startsWith(run)))];
  await c.until(() => ours().length >= next, 60000);
  assert.deepEqual(
    ours(),
    Array.from({ length: next }, (_, i) => `${run}-${i}`),
    'forwarded in order, nothing lost',
  );
  const nc = await connect({ servers: cluster.urls });
  const info = await (await jetstreamManager(nc)).streams.info('VIGIL_EVENTS', { subjects_filter: subject });
  await nc.close();
  assert.equal(info.state.subjects?.[subject], 41, 'each batch is in the stream once');
  const deadline = Date.now() + 10000;
  while (second.bus.stats().mode !== 'direct' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(second.bus.stats().mode, 'direct', 'publishing goes direct again once the spool is drained');
  console.log(
    `NATS back: cluster healthy after ${healthyMs} ms, spool forwarded after ${forwardedMs} ms, consumed after ${Date.now() - t1} ms`,
  );
  await second.bus.publish([ev(run, next, tenant)]);
  await c.until(() => c.ids().includes(`${run}-${next}`));
});

test('a consumer with lingerMs gets messages that arrive within the linger in one batch', async () => {
  const { bus } = await startBus();
  const run = `linger${Date.now()}`;
  const tenant = `t${run}`;
  const batches = { lingering: [] as number[], direct: [] as number[] };
  const count = (into: number[]) => async (b: StreamBatch) => {
    const mine = b.events.filter((e) => e.tenant === tenant).length;
    if (mine > 0) into.push(mine);
  };
  bus.subscribeStream(`lingering-${run}`, count(batches.lingering), { durable: false, lingerMs: 1500 });
  bus.subscribeStream(`direct-${run}`, count(batches.direct), { durable: false });
  await new Promise((r) => setTimeout(r, 1000));
  // Ten messages 50 ms apart: one batch after the linger, against about one batch each without it.
  for (let i = 0; i < 10; i++) {
    await bus.publish([ev(run, i, tenant)]);
    await new Promise((r) => setTimeout(r, 50));
  }
  const deadline = Date.now() + 20000;
  const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  while (total(batches.lingering) < 10 || total(batches.direct) < 10) {
    if (Date.now() > deadline) throw new Error(`timed out: ${JSON.stringify(batches)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(batches.lingering.length <= 2, `lingering batches: ${JSON.stringify(batches.lingering)}`);
  assert.ok(batches.direct.length >= 5, `direct batches: ${JSON.stringify(batches.direct)}`);
});

test('messages waiting out a linger longer than ack_wait are kept, not delivered again', async () => {
  // ack_wait 1 s, linger 2.5 s: without working() on the buffered messages the server would send them again
  // after 1 s, and the batch would hold them twice.
  const { bus, metrics } = await startBus({ consumer: { ack_wait_ms: 1000 } });
  const run = `keep${Date.now()}`;
  const tenant = `t${run}`;
  const seen: string[] = [];
  let batches = 0;
  bus.subscribeStream(
    `keep-${run}`,
    async (b) => {
      const mine = b.events.filter((e) => e.tenant === tenant);
      if (mine.length > 0) batches++;
      seen.push(...mine.map((e) => e.id));
    },
    { durable: false, lingerMs: 2500 },
  );
  await new Promise((r) => setTimeout(r, 1000));
  for (let i = 0; i < 3; i++) {
    await bus.publish([ev(run, i, tenant)]);
    await new Promise((r) => setTimeout(r, 100));
  }
  const deadline = Date.now() + 20000;
  while (seen.length < 3) {
    if (Date.now() > deadline) throw new Error(`timed out: ${JSON.stringify(seen)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // Past two more ack_waits: a message the server thought lost would have come again by then.
  await new Promise((r) => setTimeout(r, 2500));
  assert.deepEqual(
    seen,
    [0, 1, 2].map((i) => `${run}-${i}`),
    'each message handed over once',
  );
  assert.equal(batches, 1, 'in one batch after the linger');
  const redelivered = (await metrics.getSingleMetric('vigil_bus_consumer_redelivered_total')?.get())?.values ?? [];
  assert.equal(
    redelivered.filter((v) => String(v.labels.consumer).includes(run)).reduce((n, v) => n + v.value, 0),
    0,
    'nothing delivered again',
  );
});

test('a handler slower than ack_wait keeps its batch and the messages waiting behind it: none is delivered again', async () => {
  // ack_wait 1 s; the first batch's handler takes 2.5 s while two more messages wait in the buffer behind it.
  // Kept by the handler's timer and by the buffer's: without either, the server sends a message again after
  // 1 s and it is handled twice (both mutations fail this test; the keep at the hand-over only narrows a gap).
  const { bus, metrics } = await startBus({ consumer: { ack_wait_ms: 1000 } });
  const run = `slow${Date.now()}`;
  const tenant = `t${run}`;
  const seen: string[] = [];
  const batches: number[] = [];
  bus.subscribeStream(
    `slow-${run}`,
    async (b) => {
      const mine = b.events.filter((e) => e.tenant === tenant);
      if (mine.length === 0) return;
      batches.push(mine.length);
      seen.push(...mine.map((e) => e.id));
      await new Promise((r) => setTimeout(r, 2500));
    },
    { durable: false },
  );
  await new Promise((r) => setTimeout(r, 1000));
  await bus.publish([ev(run, 0, tenant)]);
  await new Promise((r) => setTimeout(r, 300));
  await bus.publish([ev(run, 1, tenant)]);
  await bus.publish([ev(run, 2, tenant)]);
  const deadline = Date.now() + 30000;
  while (seen.length < 3) {
    if (Date.now() > deadline) throw new Error(`timed out: ${JSON.stringify(seen)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // Past the second batch's handler and two more ack_waits: a message the server thought lost would be back.
  await new Promise((r) => setTimeout(r, 4500));
  assert.deepEqual(
    seen,
    [0, 1, 2].map((i) => `${run}-${i}`),
    'each message handed over once',
  );
  assert.deepEqual(batches, [1, 2], 'the two that waited behind the slow handler came in one batch after it');
  const redelivered = (await metrics.getSingleMetric('vigil_bus_consumer_redelivered_total')?.get())?.values ?? [];
  assert.equal(
    redelivered.filter((v) => String(v.labels.consumer).includes(run)).reduce((n, v) => n + v.value, 0),
    0,
    'nothing delivered again',
  );
});
