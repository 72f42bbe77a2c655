import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { fileStore } from '../../../test/harness/event-store.ts';
import { type Alert, createAlertStore, EPOCH_FENCE, epochSincePartition } from './index.ts';

const engine = fileStore('vigil-epoch-fence-');

const alert = (id: string, epoch: number, created: number): Alert => ({
  id,
  timestamp: created,
  created,
  tenant: 'default',
  kind: 'rule',
  rule: { id: 'r1', title: 'Rule one', level: 'high', tags: [] },
  host: 'h1',
  status: 'new',
  matched: {},
  eventIds: [],
  partition: 'a/local',
  fencingToken: 0,
  epoch,
});

async function freshStore(metrics = new Registry()) {
  await engine().exec('DROP TABLE IF EXISTS vigil.alerts SYNC');
  await engine().exec('DROP TABLE IF EXISTS vigil.alert_fences SYNC');
  const alerts = createAlertStore(engine(), { metrics });
  await alerts.start();
  return alerts;
}

const counted = async (metrics: Registry, name: string) =>
  (await metrics.getSingleMetric(name)?.get())?.values[0]?.value ?? 0;

test('an older epoch alert raised before the newer epoch began is kept (copied late); one raised after is refused', async () => {
  const metrics = new Registry();
  const alerts = await freshStore(metrics);
  const began = Date.now() - 60_000;
  await alerts.fence(epochSincePartition(2), began);
  await alerts.fence(EPOCH_FENCE, 2);
  const saved = await alerts.save([
    alert('lost-site-before', 1, began - 5000),
    alert('stale-after', 1, began),
    alert('stale-later', 1, began + 10_000),
    alert('new-epoch', 2, began + 10_000),
  ]);
  assert.deepEqual(saved.map((a) => a.id).sort(), ['lost-site-before', 'new-epoch']);
  assert.equal(await counted(metrics, 'vigil_alerts_late_epoch_total'), 1);
  assert.equal(await counted(metrics, 'vigil_alerts_stale_epoch_total'), 2);

  // A restarted replica reads the start of each epoch back from its table and judges the same.
  const again = createAlertStore(engine(), { metrics: new Registry() });
  await again.start();
  const later = await again.save([alert('lost-site-before-2', 1, began - 1), alert('stale-after-2', 1, began + 1)]);
  assert.deepEqual(
    later.map((a) => a.id),
    ['lost-site-before-2'],
  );
});

test('the earliest start among the newer epochs bounds an alert; an epoch fenced without its start refuses all older ones', async () => {
  const alerts = await freshStore();
  const t2 = Date.now() - 60_000;
  await alerts.fence(epochSincePartition(2), t2);
  await alerts.fence(EPOCH_FENCE, 2);
  await alerts.fence(epochSincePartition(3), t2 + 30_000);
  await alerts.fence(EPOCH_FENCE, 3);
  // Epoch 1 ended when 2 began, whatever 3 says; epoch 2 ended when 3 began.
  const saved = await alerts.save([
    alert('e1-before-2', 1, t2 - 1),
    alert('e1-between', 1, t2 + 1000),
    alert('e2-before-3', 2, t2 + 1000),
    alert('e2-after-3', 2, t2 + 30_000),
  ]);
  assert.deepEqual(saved.map((a) => a.id).sort(), ['e1-before-2', 'e2-before-3']);

  // Fenced by a node that does not record the start (an older version): every older alert is refused.
  const old = await freshStore();
  await old.fence(EPOCH_FENCE, 2);
  assert.deepEqual(await old.save([alert('e1-long-ago', 1, Date.now() - 3_600_000)]), []);
});
