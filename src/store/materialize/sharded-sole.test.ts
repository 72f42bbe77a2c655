import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../../lib/logger.ts';
import { fileStore } from '../../../test/harness/event-store.ts';
import { materializeConfigSchema } from './index.ts';
import { eventsOf, fakeMap, fakeStream } from './shard-fixtures.ts';
import { createShardReplicas } from './sharded.ts';

// A store of its own: what a node knows of the shards of its rows comes from a scan of the whole table.
const S = 4;
const getStore = fileStore('vigil-sharded-sole-');

const waitFor = async (what: string, fn: () => boolean | Promise<boolean>) => {
  for (let i = 0; i < 400; i++) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
};

const sorted = (s: ReadonlySet<number> | undefined) => (s === undefined ? undefined : [...s].sort());

test('a part is read without the shard filter only while every stored row is of that shard', async () => {
  const store = getStore();
  // A row of shard 2 with no position row (a node that crashed between its first write of a shard and the
  // position, and lost the shard meanwhile): the leftovers' purge cannot know it, the scan finds it.
  await store.write(eventsOf('t1', 2, 1, S, 'stray'));
  const f = fakeStream();
  const m = fakeMap(S);
  const r = createShardReplicas(materializeConfigSchema.parse({ lag_poll_interval_ms: 100, consumer: 'store-n1' }), {
    map: m.service,
    stream: f.stream,
    store,
    nodeId: 'n1',
    metrics: new Registry(),
    logger: silentLogger,
  });
  assert.equal(r.heldShards(), undefined, 'unknown before the scan');
  await r.start();
  try {
    m.set(3, [1]);
    await waitFor('the consumer of shard 1', () => f.handlers.has('store-n1-s1'));
    await f.handlers.get('store-n1-s1')!({
      events: eventsOf('t1', 1, 10, S, 'sole'),
      firstSeq: 1,
      lastSeq: 1,
      seqs: [1],
      messages: 1,
      pending: 0,
    });
    await waitFor('the scan', () => r.heldShards() !== undefined);
    assert.deepEqual(sorted(r.heldShards()), [1, 2]);
    assert.equal(r.holdsOnly(1, S), undefined, 'the stray row of shard 2 keeps the filter on');

    // Shard 2 given to this node, then taken away: its rows (the stray one too) are deleted with it.
    m.set(4, [1, 2]);
    await waitFor('the consumer of shard 2', () => f.handlers.has('store-n1-s2'));
    m.set(5, [1]);
    await waitFor('shard 2 dropped', () => !f.handlers.has('store-n1-s2'));
    await waitFor('only shard 1 left', () => sorted(r.heldShards())?.join() === '1');
    const [{ n }] = await store.query<{ n: string }>(
      `SELECT count() AS n FROM vigil.events WHERE murmurHash3_32(id) % ${S} != 1`,
      {},
    );
    assert.equal(Number(n), 0);
    const check = r.holdsOnly(1, S);
    assert.ok(check, 'every row is of shard 1');
    assert.equal(check(), true);
    assert.equal(r.holdsOnly(0, S), undefined, 'not a shard it holds');
    assert.equal(r.holdsOnly(1, S + 1), undefined, 'a part cut for another shard count');

    // A shard added while a part is read: the part read without the filter is not used.
    m.set(6, [1, 3]);
    assert.equal(check(), false, 'an add began');
    assert.equal(r.holdsOnly(1, S), undefined, 'shard 3 may be written now');
    await waitFor('the consumer of shard 3', () => f.handlers.has('store-n1-s3'));
    assert.deepEqual(sorted(r.heldShards()), [1, 3]);
  } finally {
    await r.stop(Date.now() + 1000);
  }
});

test('a drop that fails keeps the shard filter on, and is tried again until the rows are gone', async () => {
  const store = getStore();
  // Independent of the tests above: its own rows of shards 0 and 3, deleted with the shards.
  const f = fakeStream();
  const m = fakeMap(S);
  let natsDown = true;
  const deleteConsumer = f.stream.deleteConsumer;
  f.stream.deleteConsumer = async (name) => {
    if (natsDown) throw new Error('not connected to NATS');
    return deleteConsumer(name);
  };
  const r = createShardReplicas(materializeConfigSchema.parse({ lag_poll_interval_ms: 100, consumer: 'store-n1' }), {
    map: m.service,
    stream: f.stream,
    store,
    nodeId: 'n1',
    metrics: new Registry(),
    logger: silentLogger,
  });
  await r.start();
  try {
    m.set(7, [1, 0, 3]);
    // Sequences of their own: the engine drops an insert whose dedup token (stream sequences) it has seen.
    for (const [shard, seq] of [
      [0, 101],
      [3, 102],
    ]) {
      await waitFor(`the consumer of shard ${shard}`, () => f.handlers.has(`store-n1-s${shard}`));
      await f.handlers.get(`store-n1-s${shard}`)!({
        events: eventsOf('t1', shard, 5, S, 'failed-drop'),
        firstSeq: seq,
        lastSeq: seq,
        seqs: [seq],
        messages: 1,
        pending: 0,
      });
    }
    await waitFor('the scan', () => r.heldShards() !== undefined);
    // Shards 0 and 3 taken away while NATS is down: their consumers cannot be deleted, nor their rows.
    m.set(8, [1]);
    await waitFor('shards 0 and 3 stopped', () => !f.handlers.has('store-n1-s0') && !f.handlers.has('store-n1-s3'));
    await new Promise((res) => setTimeout(res, 300));
    const others = async () => {
      const [{ n }] = await store.query<{ n: string }>(
        `SELECT count() AS n FROM vigil.events WHERE murmurHash3_32(id) % ${S} != 1`,
        {},
      );
      return Number(n);
    };
    assert.equal(await others(), 10, 'their rows are still there');
    assert.equal(r.holdsOnly(1, S), undefined, 'rows of shards 0 and 3 remain: the filter stays on');
    natsDown = false;
    await waitFor('the drops tried again', async () => (await others()) === 0);
    await waitFor('only shard 1 left', () => sorted(r.heldShards())?.join() === '1');
    assert.ok(r.holdsOnly(1, S), 'every row is of shard 1 again');
  } finally {
    await r.stop(Date.now() + 1000);
  }
});
