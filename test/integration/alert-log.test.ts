/**
 * The replicated alert log on a real 3-node NATS cluster and a real store: fences refuse a stale owner's
 * alerts, copies of an alert are stored once, and a status change applies through the log.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { createJetStreamBus, type JetStreamBus } from '../../src/bus/index.ts';
import { jetStreamBusConfigSchema } from '../../src/bus/jetstream/index.ts';
import { createAlertLog } from '../../src/detect/cluster/alert-log.ts';
import { createRecordStream } from '../../src/detect/cluster/records.ts';
import { type Alert, createAlertStore } from '../../src/detect/index.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import { createEventStore, type EventStore } from '../../src/store/index.ts';
import { storeConfigSchema } from '../../src/store/config.ts';
import { type NatsCluster, startNatsCluster } from '../harness/nats.ts';

let nats: NatsCluster;
let bus: JetStreamBus;
let store: EventStore;
let dir: string;

before(async () => {
  nats = await startNatsCluster();
  dir = mkdtempSync(join(tmpdir(), 'vigil-alertlog-'));
  bus = createJetStreamBus(jetStreamBusConfigSchema.parse({ servers: nats.urls, stream: 'ALOG_EVENTS' }), {
    dataDir: dir,
    metrics: new Registry(),
    logger: silentLogger,
  });
  await bus.start();
  await bus.ready();
  store = createEventStore(storeConfigSchema.parse({}), {
    dataDir: dir,
    metrics: new Registry(),
    logger: silentLogger,
  });
  await store.start();
});

after(async () => {
  await bus?.stop(Date.now() + 3000);
  await store?.stop(Date.now() + 3000);
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const alert = (id: string, token: number): Alert => ({
  id,
  timestamp: Date.now(),
  created: Date.now(),
  tenant: 'default',
  kind: 'correlation',
  rule: { id: 'r1', title: 'planted', level: 'high', tags: [] },
  host: 'h1',
  status: 'new',
  matched: { user: id },
  eventIds: [`e-${id}`],
  partition: '7',
  fencingToken: token,
});

test('a fence refuses older tokens on the replica; copies are stored once; status goes through the log', async () => {
  const metrics = new Registry();
  const local = createAlertStore(store, { metrics });
  const log = createAlertLog(local, {
    records: createRecordStream(
      bus,
      {
        name: 'ALOG_ALERTS',
        subject: 'alog.alerts',
        maxAgeMs: 3_600_000,
        duplicateWindowMs: 120_000,
        publishMaxWaitMs: 10_000,
        pullExpiresMs: 5000,
      },
      silentLogger,
    ),
    nodeId: 'n1',
    logger: silentLogger,
  });
  const told: string[] = [];
  log.onAlert((batch) => told.push(...batch.map((a) => a.id)));
  await log.start();
  try {
    await log.save([alert('a-old-owner', 5)]);
    await log.fence('7', 10);
    // The old owner, paused, writes after the takeover: refused. The new owner's copy of an alert: stored once.
    await log.save([alert('b-stale', 5), alert('c-new', 10), alert('c-new', 10)]);
    await log.save([alert('c-new', 10)]);
    const deadline = Date.now() + 15000;
    let ids: string[] = [];
    while (Date.now() < deadline) {
      ids = (await log.list({ tenants: ['default'], limit: 100 })).map((a) => a.id).sort();
      if (ids.length >= 2 && told.length >= 2) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 500));
    ids = (await log.list({ tenants: ['default'], limit: 100 })).map((a) => a.id).sort();
    assert.deepEqual(ids, ['a-old-owner', 'c-new']);
    assert.deepEqual(told.sort(), ['a-old-owner', 'c-new'], 'listeners told once per stored alert');
    const stale = (await metrics.getSingleMetric('vigil_alerts_stale_token_total')?.get())?.values[0]?.value;
    assert.equal(stale, 1);

    const changed = await log.setStatus('c-new', ['default'], 'acknowledged');
    assert.equal(changed.status, 'acknowledged');
    assert.equal((await log.get('c-new', ['default']))?.status, 'acknowledged', 'applied before the answer');
  } finally {
    await log.stop();
  }
});
