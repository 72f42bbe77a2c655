import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../../lib/logger.ts';
import { compileQuery, planDistributed } from '../../query/index.ts';
import { parseQuery } from '../../query/parser.ts';
import { createEventStore, type EventStore, storeConfigSchema } from '../index.ts';
import { materializeConfigSchema } from './index.ts';
import { eventsOf, fakeMap, fakeStream } from './shard-fixtures.ts';
import { createShardReplicas } from './sharded.ts';

// A store of its own: what a node knows of the shards of its rows comes from a scan of the whole table.
const S = 4;
let store: EventStore;
let dir: string;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-sharded-sole-'));
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

const waitFor = async (what: string, fn: () => boolean | Promise<boolean>) => {
  for (let i = 0; i < 400; i++) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
};

const sorted = (s: ReadonlySet<number> | undefined) => (s === undefined ? undefined : [...s].sort());

test('a part is read without the shard filter only while every stored row is of that shard', async () => {
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
    assert.equal(r.holdsOnly(1), undefined, 'the stray row of shard 2 keeps the filter on');

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
    const check = r.holdsOnly(1);
    assert.ok(check, 'every row is of shard 1');
    assert.equal(check(), true);
    assert.equal(r.holdsOnly(0), undefined, 'not a shard it holds');

    // A shard added while a part is read: the part read without the filter is not used.
    m.set(6, [1, 3]);
    assert.equal(check(), false, 'an add began');
    assert.equal(r.holdsOnly(1), undefined, 'shard 3 may be written now');
    await waitFor('the consumer of shard 3', () => f.handlers.has('store-n1-s3'));
    assert.deepEqual(sorted(r.heldShards()), [1, 3]);
  } finally {
    await r.stop(Date.now() + 1000);
  }
});

test('a shard part compiled as the sole shard of its store has no shard filter, and counts the same there', async () => {
  const opts = { from: 0, to: 2e12, limit: 100, tenants: ['t1'], now: Date.now() };
  for (const q of ['* | stats count()', 'event']) {
    const plan = planDistributed(parseQuery(q), opts);
    assert.match(plan.shard(1, S).sql, /murmurHash3_32\(id\)/, q);
    assert.doesNotMatch(plan.shard(1, S, true).sql, /murmurHash3_32/, q);
  }
  // Here every row is of shard 1 (the test above): the part without the filter counts what a single node does.
  const single = compileQuery('* | stats count()', opts);
  const [whole] = await store.query<{ count: string }>(single.sql, single.params);
  const part = planDistributed(parseQuery('* | stats count()'), opts).shard(1, S, true);
  const filtered = planDistributed(parseQuery('* | stats count()'), opts).shard(1, S);
  const states = await store.query<Record<string, string>>(
    `SELECT countMerge(CAST(base64Decode(\`$a0\`), 'AggregateFunction(count)')) AS n FROM (${part.sql.replace(/\nSETTINGS[^\n]*$/, '')})`,
    part.params,
  );
  const statesFiltered = await store.query<Record<string, string>>(
    `SELECT countMerge(CAST(base64Decode(\`$a0\`), 'AggregateFunction(count)')) AS n FROM (${filtered.sql.replace(/\nSETTINGS[^\n]*$/, '')})`,
    filtered.params,
  );
  assert.equal(Number(states[0].n), Number(whole.count));
  assert.equal(Number(statesFiltered[0].n), Number(whole.count));
  assert.equal(Number(whole.count), 10);
});
