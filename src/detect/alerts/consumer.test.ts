import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import type { AlertPosition, PositionStore } from '../../db/index.ts';
import { fileStore } from '../../../test/harness/event-store.ts';
import { silentLogger } from '../../lib/logger.ts';
import { createAlertConsumer } from './consumer.ts';
import { type Alert, createAlertStore } from './index.ts';

const engine = fileStore('vigil-alert-consumer-');

let seq = 0;
function alert(created: number, timestamp = created): Alert {
  seq++;
  return {
    id: `alert-${process.pid}-${seq}`,
    timestamp,
    created,
    tenant: 'default',
    kind: 'rule',
    rule: { id: 'r1', title: 'Rule one', level: 'high', tags: [] },
    host: 'h1',
    status: 'new',
    matched: {},
    eventIds: [],
    partition: 'local',
    fencingToken: 0,
  };
}

/** A fresh alert table per test: the outbox reads the whole table. */
async function freshOutbox() {
  await engine().exec('DROP TABLE IF EXISTS vigil.alerts SYNC');
  const outbox = createAlertStore(engine(), { metrics: new Registry(), outbox: true });
  await outbox.start();
  return outbox;
}

function memoryPositions() {
  const saved: AlertPosition[] = [];
  const positions: PositionStore = {
    load: async () => saved.at(-1),
    save: async (p) => {
      saved.push(p);
    },
  };
  return { positions, saved };
}

async function until(cond: () => boolean, what: string, ms = 10_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('two inserts in the same millisecond, the second with the clock set back: read after the first gets the second', async () => {
  const outbox = await freshOutbox();
  const t = Date.now();
  const [first] = await outbox.save([alert(t)]);
  // Same millisecond, then a clock set back by a minute (and an earlier event time).
  const [second] = await outbox.save([alert(t)]);
  const [third] = await outbox.save([alert(t - 60_000, t - 120_000)]);
  const firstBatch = await outbox.readAfter(undefined, 1);
  assert.deepEqual(
    firstBatch.map((b) => b.alert.id),
    [first.id],
  );
  const rest = await outbox.readAfter(firstBatch[0].position, 10);
  assert.deepEqual(
    rest.map((b) => b.alert.id),
    [second.id, third.id],
  );
  assert.equal(await outbox.countAfter(firstBatch[0].position), 2);
  assert.deepEqual(await outbox.readAfter(rest[1].position, 10), []);
});

test('a handle that rejects: the position is not saved and the same alerts are handed over again', async () => {
  const outbox = await freshOutbox();
  const saved = await outbox.save([alert(Date.now()), alert(Date.now())]);
  const { positions, saved: savedPositions } = memoryPositions();
  const handed: string[][] = [];
  let savesWhileFailing = -1;
  const consumer = createAlertConsumer({
    name: 'test',
    outbox,
    positions,
    handle: async (alerts) => {
      handed.push(alerts.map((a) => a.id));
      if (handed.length < 3) throw new Error('database unavailable');
      savesWhileFailing = savedPositions.length;
    },
    batchMaxAlerts: 10,
    retryInitialMs: 5,
    retryMaxMs: 20,
    pollIntervalMs: 50,
    metrics: new Registry(),
    logger: silentLogger,
  });
  await consumer.start();
  try {
    await until(() => savedPositions.length > 0, 'the position to be saved');
    const ids = saved.map((a) => a.id);
    assert.deepEqual(handed.slice(0, 3), [ids, ids, ids]);
    assert.equal(savesWhileFailing, 0, 'no position saved before handle resolved');
    assert.equal(savedPositions.at(-1)?.id, ids[1]);
  } finally {
    await consumer.stop(Date.now() + 2000);
  }
});

test('a batch shorter than the batch max reads the log to its end: the backlog is not counted again', async () => {
  const outbox = await freshOutbox();
  await outbox.save([alert(Date.now())]);
  let counts = 0;
  const counting = {
    ...outbox,
    readAfter: outbox.readAfter.bind(outbox),
    head: outbox.head.bind(outbox),
    onAlert: outbox.onAlert.bind(outbox),
    countAfter: async (p: AlertPosition | undefined) => {
      counts++;
      return outbox.countAfter(p);
    },
  };
  const { positions, saved } = memoryPositions();
  const registry = new Registry();
  const consumer = createAlertConsumer({
    name: 'test',
    outbox: counting,
    positions,
    handle: async () => undefined,
    batchMaxAlerts: 10,
    retryInitialMs: 5,
    retryMaxMs: 20,
    pollIntervalMs: 50,
    metrics: registry,
    logger: silentLogger,
  });
  await consumer.start();
  try {
    await until(() => saved.length > 0, 'the position to be saved');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(counts, 0);
    const metric = await registry.getSingleMetric('vigil_alerts_consumer_backlog_alerts')?.get();
    assert.equal(metric?.values.find((v) => v.labels.consumer === 'test')?.value, 0);
  } finally {
    await consumer.stop(Date.now() + 2000);
  }
});

test('an alert stored while the consumer reads an empty log is handed over without waiting for the poll', async () => {
  const outbox = await freshOutbox();
  const handed: string[] = [];
  let stored: Alert | undefined;
  // The alert is stored after the empty read's query ran, before the consumer goes to sleep.
  const racing = {
    ...outbox,
    readAfter: async (p: AlertPosition | undefined, limit: number) => {
      const r = await outbox.readAfter(p, limit);
      if (r.length === 0 && !stored) [stored] = await outbox.save([alert(Date.now())]);
      return r;
    },
    head: outbox.head.bind(outbox),
    onAlert: outbox.onAlert.bind(outbox),
    countAfter: outbox.countAfter.bind(outbox),
  };
  const { positions } = memoryPositions();
  const consumer = createAlertConsumer({
    name: 'test',
    outbox: racing,
    positions,
    handle: async (alerts) => {
      handed.push(...alerts.map((a) => a.id));
    },
    batchMaxAlerts: 10,
    retryInitialMs: 5,
    retryMaxMs: 20,
    pollIntervalMs: 60_000,
    metrics: new Registry(),
    logger: silentLogger,
  });
  await outbox.save([alert(Date.now())]);
  await consumer.start();
  try {
    await until(() => handed.length === 2, 'both alerts', 5000);
    assert.equal(handed[1], stored?.id);
  } finally {
    await consumer.stop(Date.now() + 2000);
  }
});
