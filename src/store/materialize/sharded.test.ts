import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../../lib/logger.ts';
import { CopyNoPeerError, type CopyRange, type RangeCopy, type ShardSource } from '../copy/index.ts';
import { createEventStore, type EventStore, storeConfigSchema } from '../index.ts';
import { materializeConfigSchema } from './index.ts';
import { eventsOf, fakeMap, fakeStream } from './shard-fixtures.ts';
import { createShardReplicas } from './sharded.ts';

const S = 4;
let store: EventStore;
let dir: string;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-sharded-'));
  store = createEventStore(storeConfigSchema.parse({ fsync: false }), {
    dataDir: dir,
    metrics: new Registry(),
    logger: silentLogger,
  });
  await store.start();
});
after(async () => {
  await store.stop(Date.now() + 1000);
  rmSync(dir, { recursive: true, force: true });
});

async function countByShard(tenant: string): Promise<Map<number, number>> {
  const rows = await store.query<{ s: number; n: string }>(
    `SELECT murmurHash3_32(id) % ${S} AS s, count() AS n FROM vigil.events FINAL WHERE tenant = {t:String} GROUP BY s`,
    { t: tenant },
  );
  return new Map(rows.map((r) => [Number(r.s), Number(r.n)]));
}

const waitFor = async (what: string, fn: () => boolean | Promise<boolean>) => {
  for (let i = 0; i < 200; i++) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
};

test('one filtered consumer per shard of the map; a shard taken away loses its consumer, rows and position', async () => {
  const tenant = 'sharded-move';
  const f = fakeStream();
  const m = fakeMap(S);
  const config = materializeConfigSchema.parse({ lag_poll_interval_ms: 100, consumer: 'store-n1' });
  const r = createShardReplicas(config, {
    map: m.service,
    stream: f.stream,
    store,
    nodeId: 'n1',
    metrics: new Registry(),
    logger: silentLogger,
  });
  await r.start();
  m.set(5, [1, 3]);
  await waitFor('two consumers', () => f.handlers.has('store-n1-s1') && f.handlers.has('store-n1-s3'));
  assert.deepEqual(f.subscribed.map((x) => [x.name, x.opts?.filterSubject]).sort(), [
    ['store-n1-s1', 'E.s1.>'],
    ['store-n1-s3', 'E.s3.>'],
  ]);
  await f.handlers.get('store-n1-s1')!({
    events: eventsOf(tenant, 1, 20, S),
    firstSeq: 1,
    lastSeq: 4,
    seqs: [1, 2, 3, 4],
    messages: 4,
    pending: 0,
  });
  await f.handlers.get('store-n1-s3')!({
    events: eventsOf(tenant, 3, 30, S),
    firstSeq: 5,
    lastSeq: 9,
    seqs: [5, 6, 7, 8, 9],
    messages: 5,
    pending: 0,
  });
  assert.deepEqual(
    await countByShard(tenant),
    new Map([
      [1, 20],
      [3, 30],
    ]),
  );
  // The lag of each shard goes to the map with the revision its consumer started from.
  await waitFor('a report', () => m.reports.some((x) => x.since.get(1) === 5 && x.since.get(3) === 5));

  m.set(7, [3]);
  await waitFor('shard 1 dropped', async () => !f.handlers.has('store-n1-s1') && f.deleted.includes('store-n1-s1'));
  await waitFor('its rows deleted', async () => !(await countByShard(tenant)).has(1));
  assert.deepEqual(await countByShard(tenant), new Map([[3, 30]]), 'the shard kept is untouched');
  const pos = await store.query<{ consumer: string }>(
    `SELECT DISTINCT consumer FROM vigil.positions WHERE startsWith(consumer, 'store-n1-s')`,
    {},
  );
  assert.deepEqual(
    pos.map((p) => p.consumer),
    ['store-n1-s3'],
  );
  assert.equal(r.shardLags().has(1), false);
  await r.stop(Date.now() + 1000);
});

test('at start, rows of shards the map no longer gives this node (it was gone past the grace period) are deleted', async () => {
  const tenant = 'sharded-leftover';
  const config = materializeConfigSchema.parse({ lag_poll_interval_ms: 100, consumer: 'store-n9' });
  const f = fakeStream();
  const m = fakeMap(S);
  const deps = { stream: f.stream, store, nodeId: 'n1', metrics: new Registry(), logger: silentLogger };
  const first = createShardReplicas(config, { ...deps, map: m.service });
  await first.start();
  m.set(3, [0, 2]);
  await waitFor('two consumers', () => f.handlers.has('store-n9-s0') && f.handlers.has('store-n9-s2'));
  await f.handlers.get('store-n9-s0')!({
    events: eventsOf(tenant, 0, 10, S),
    firstSeq: 1,
    lastSeq: 2,
    seqs: [1, 2],
    messages: 2,
    pending: 0,
  });
  await f.handlers.get('store-n9-s2')!({
    events: eventsOf(tenant, 2, 10, S),
    firstSeq: 3,
    lastSeq: 4,
    seqs: [3, 4],
    messages: 2,
    pending: 0,
  });
  // The node dies (no drop) and comes back to a map that gave shard 0 away.
  await first.stop(Date.now() + 1000);
  const m2 = fakeMap(S);
  const second = createShardReplicas(config, { ...deps, map: m2.service });
  await second.start();
  m2.set(9, [2]);
  await waitFor('shard 0 rows deleted', async () => !(await countByShard(tenant)).has(0));
  assert.deepEqual(await countByShard(tenant), new Map([[2, 10]]));
  assert.ok(f.deleted.includes('store-n9-s0'));
  await second.stop(Date.now() + 1000);
});

test('a search part is answered only from a shard this node serves, and not from one whose drop began meanwhile', async () => {
  const f = fakeStream();
  const m = fakeMap(S);
  const config = materializeConfigSchema.parse({ lag_poll_interval_ms: 100, consumer: 'store-n3' });
  const r = createShardReplicas(config, {
    map: m.service,
    stream: f.stream,
    store,
    nodeId: 'n1',
    metrics: new Registry(),
    logger: silentLogger,
  });
  await r.start();
  m.setStates(4, { 0: 'catching_up', 1: 'serving', 2: 'draining' });
  await waitFor('three consumers', () => ['s0', 's1', 's2'].every((s) => f.handlers.has(`store-n3-${s}`)));
  const cases: [string, number, boolean][] = [
    ['catching up: not complete', 0, false],
    ['serving', 1, true],
    ['draining: still complete', 2, true],
    ['not held', 3, false],
  ];
  for (const [what, shard, served] of cases) assert.equal(r.serves(shard) !== undefined, served, what);

  // A part being read from shard 1 when the map (newer here than on the asking node) takes it away.
  const reading = r.serves(1)!;
  const other = r.serves(2)!;
  m.setStates(6, { 0: 'catching_up', 2: 'draining' });
  assert.equal(reading(), false, 'the drop began: the part read must not be used');
  assert.equal(r.serves(1), undefined, 'no new part from a shard being dropped');
  assert.equal(other(), true, 'another shard is untouched');
  await waitFor('shard 1 dropped', () => !f.handlers.has('store-n3-s1') && f.deleted.includes('store-n3-s1'));
  assert.equal(r.serves(1), undefined);
  // Given back later: served again once complete, and a check taken before the drop stays false.
  m.setStates(8, { 0: 'catching_up', 1: 'serving', 2: 'draining' });
  await waitFor('shard 1 again', () => f.handlers.has('store-n3-s1') && r.serves(1) !== undefined);
  assert.equal(reading(), false);
  await r.stop(Date.now() + 1000);
});

test('a shard whose history is being copied reports no lag (stays catching_up); a complete serving one serves copies', async () => {
  // A stream that has dropped messages 1-9: each new replica of a shard lacks them until a peer copy fills them.
  const f = fakeStream();
  const consumers = new Map<
    string,
    { ackFloor: number; delivered: number; numPending: number; numAckPending: number }
  >();
  f.stream.streamPosition = async () => ({ stream: 'E', created: 'c2', firstSeq: 10, lastSeq: 40, messages: 31 });
  const subscribe = f.stream.subscribeStream;
  f.stream.subscribeStream = (name, h, opts) => {
    consumers.set(name, { ackFloor: 9, delivered: 9, numPending: 0, numAckPending: 0 });
    return subscribe(name, h, opts);
  };
  f.stream.consumerPosition = async (name) => consumers.get(name);
  let peerUp = false;
  let source: ShardSource | undefined;
  const asked: CopyRange[] = [];
  const copy: RangeCopy = {
    name: 'range-copy',
    start: async () => undefined,
    stop: async () => undefined,
    health: () => ({ ok: true }),
    async copy(range) {
      asked.push(range);
      if (!peerUp) throw new CopyNoPeerError('them');
      return { peer: 'n2', fromIngested: 1, toIngested: 2, events: 5, pages: 1, resumedPages: 0 };
    },
    serveShards(s) {
      source = s;
    },
  };
  const m = fakeMap(S);
  const r = createShardReplicas(materializeConfigSchema.parse({ lag_poll_interval_ms: 100, consumer: 'store-h1' }), {
    map: m.service,
    stream: f.stream,
    store,
    nodeId: 'n1',
    metrics: new Registry(),
    logger: silentLogger,
    copy,
    copyRetryMs: 100,
  });
  await r.start();
  try {
    m.set(4, [2]);
    await waitFor('the copy to be asked', () => asked.length > 0);
    assert.deepEqual(asked[0], { stream: 'E@c2', fromSeq: 1, toSeq: 9, shard: { index: 2, count: S } });
    // Measured, yet not reported: the history is missing.
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(r.shardLags().has(2), false);
    assert.ok(m.reports.every((x) => !x.lags.has(2)));
    assert.match(r.health().detail ?? '', /missing shard 2's stream messages 1-9 \(no peer replica holds it\)/);
    // Nor served to a peer, though the map says serving (the fake map's state): it lacks that history.
    assert.ok(source);
    assert.equal(source({ index: 2, count: S }, 'E@c2', 9), false);

    peerUp = true;
    await waitFor('the lag to be reported', () => r.shardLags().get(2) === 0);
    await waitFor('the lag to reach the map', () => m.reports.some((x) => x.lags.get(2) === 0));
    // Complete now: it serves its shard up to what its consumer acknowledged, of this stream and S only.
    assert.equal(source({ index: 2, count: S }, 'E@c2', 9), true);
    assert.equal(source({ index: 2, count: S }, 'E@c1', 9), false, 'another stream');
    assert.equal(source({ index: 2, count: S + 1 }, 'E@c2', 9), false, 'another S');
    assert.equal(source({ index: 1, count: S }, 'E@c2', 9), false, 'a shard it does not keep');
    // Past its ack floor with messages pending: not yet.
    consumers.set('store-h1-s2', { ackFloor: 9, delivered: 12, numPending: 3, numAckPending: 2 });
    await waitFor('the lag to be measured', () => r.shardLags().get(2) === 5);
    assert.equal(source({ index: 2, count: S }, 'E@c2', 30), false);
    assert.equal(source({ index: 2, count: S }, 'E@c2', 9), true);
    // Nothing pending: every message of the shard in the stream is written, whatever the ack floor says.
    consumers.set('store-h1-s2', { ackFloor: 12, delivered: 12, numPending: 0, numAckPending: 0 });
    await waitFor('caught up', () => r.shardLags().get(2) === 0);
    assert.equal(source({ index: 2, count: S }, 'E@c2', 30), true);
  } finally {
    await r.stop(Date.now() + 1000);
  }
});
