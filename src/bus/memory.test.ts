import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import type { NormalizedEvent } from '../lib/event.ts';
import { silentLogger } from '../lib/logger.ts';
import { busConfigSchema } from './config.ts';
import { createMemoryBus } from './memory.ts';

const events = (tag: string, n = 1) => Array.from({ length: n }, (_, i) => ({ id: `${tag}${i}` }) as NormalizedEvent);
const tags = (batch: readonly NormalizedEvent[]) => batch.map((e) => e.id).join(',');

/** A promise with its resolve, to hold a consumer until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

/** Lets every pending callback and promise run (the bus loop's steps are promise turns). */
const settle = () => new Promise<void>((r) => setTimeout(r, 20));

function createBus(detectionOverlap = true) {
  const metrics = new Registry();
  const config = busConfigSchema.parse({ batch_max_events: 1, detection_overlap: detectionOverlap });
  const bus = createMemoryBus(config, {
    metrics,
    logger: silentLogger,
  });
  return { bus, metrics };
}

/** A durable consumer standing for the store: the tags of the batches it committed, in order. */
function recordingStore(bus: ReturnType<typeof createBus>['bus']): string[] {
  const committed: string[] = [];
  bus.subscribe(
    'store',
    async (batch) => {
      committed.push(tags(batch));
    },
    { durable: true },
  );
  return committed;
}

test('the store commits the next batch while detection evaluates one, at most one batch ahead, in order', async () => {
  const { bus, metrics } = createBus();
  const committed = recordingStore(bus);
  const evaluated: string[] = [];
  const holds = new Map<string, ReturnType<typeof gate>>();
  bus.subscribe('detect', async (batch) => {
    const hold = gate();
    holds.set(tags(batch), hold);
    await hold.promise;
    evaluated.push(tags(batch));
  });
  await bus.start();
  await bus.publish(events('a'));
  await settle();
  assert.ok(holds.has('a0'), 'detection has batch a');
  // Acknowledged (committed) while detection still holds a: the writer does not wait for it.
  await bus.publish(events('b'));
  assert.deepEqual(committed, ['a0', 'b0']);
  // c waits: the writer hands b over only once a is evaluated, and takes c only then.
  let cDone = false;
  const c = bus.publish(events('c')).then(() => {
    cDone = true;
  });
  await settle();
  assert.deepEqual(committed, ['a0', 'b0'], 'one batch ahead of detection at most');
  assert.equal(cDone, false);
  holds.get('a0')?.open();
  await settle();
  await c;
  const waited = await metrics.getSingleMetric('vigil_bus_consumer_wait_seconds_total')?.get();
  const detectWait = waited?.values.find((v) => v.labels.consumer === 'detect')?.value ?? 0;
  assert.ok(detectWait >= 0.015, `the writer's wait for detection is counted (${detectWait} s)`);
  assert.deepEqual(committed, ['a0', 'b0', 'c0']);
  assert.deepEqual(evaluated, ['a0']);
  holds.get('b0')?.open();
  await settle();
  holds.get('c0')?.open();
  await settle();
  assert.deepEqual(evaluated, ['a0', 'b0', 'c0'], 'in commit order');
  await bus.stop(Date.now() + 5000);
});

test('a failed evaluation is counted and holds no later batch; stopping lets detection finish what was committed', async () => {
  const { bus, metrics } = createBus();
  const evaluated: string[] = [];
  const slow = gate();
  bus.subscribe('store', async () => {}, { durable: true });
  bus.subscribe('detect', async (batch) => {
    if (tags(batch) === 'a0') throw new Error('rule engine failed');
    if (tags(batch) === 'b0') await slow.promise;
    evaluated.push(tags(batch));
  });
  await bus.start();
  await bus.publish(events('a'));
  await bus.publish(events('b'));
  await settle();
  const failures = await metrics.getSingleMetric('vigil_bus_consumer_failures_total')?.get();
  assert.equal(failures?.values.find((v) => v.labels.consumer === 'detect')?.value, 1);
  let stopped = false;
  const stop = bus.stop(Date.now() + 5000).then(() => {
    stopped = true;
  });
  await settle();
  assert.equal(stopped, false, 'the stop waits for the batch detection holds');
  slow.open();
  await stop;
  assert.deepEqual(evaluated, ['b0']);
});

test('a batch the store fails is refused to its publishers and never reaches detection', async () => {
  const { bus } = createBus();
  const evaluated: string[] = [];
  bus.subscribe(
    'store',
    async (batch) => {
      if (tags(batch) === 'b0') throw new Error('disk full');
    },
    { durable: true },
  );
  bus.subscribe('detect', async (batch) => {
    evaluated.push(tags(batch));
  });
  await bus.start();
  await bus.publish(events('a'));
  await assert.rejects(bus.publish(events('b')), { code: 'store_unavailable' });
  await bus.publish(events('c'));
  await settle();
  assert.deepEqual(evaluated, ['a0', 'c0']);
  await bus.stop(Date.now() + 5000);
});

test('without bus.detection_overlap, the next batch is committed only once detection has evaluated the one before', async () => {
  const { bus } = createBus(false);
  const committed = recordingStore(bus);
  const hold = gate();
  bus.subscribe('detect', async (batch) => {
    if (tags(batch) === 'a0') await hold.promise;
  });
  await bus.start();
  await bus.publish(events('a'));
  let bDone = false;
  const b = bus.publish(events('b')).then(() => {
    bDone = true;
  });
  await settle();
  assert.deepEqual(committed, ['a0']);
  assert.equal(bDone, false);
  hold.open();
  await b;
  assert.deepEqual(committed, ['a0', 'b0']);
  await bus.stop(Date.now() + 5000);
});
