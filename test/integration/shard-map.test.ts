import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { type Cluster, clusterConfigSchema, createCluster, type ShardMap } from '../../src/cluster/index.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import { type EtcdCluster, startEtcdCluster, startTcpProxy, type TcpProxy } from '../harness/etcd.ts';

/**
 * The shard map over a real etcd, with in-process "store nodes" that report lag 0 for the shards the map
 * gives them a moment after they get them (as a materializer that caught up would): S = 8, R = 2.
 */
const S = 8;
const R = 2;
const GRACE_MS = 2000;
let etcd: EtcdCluster;
let prefixes = 0;

before(async () => {
  etcd = await startEtcdCluster({ size: 1 });
});
after(async () => {
  await etcd?.stop();
});

interface FakeStore {
  id: string;
  cluster: Cluster;
  proxy: TcpProxy;
  stop(): Promise<void>;
}

async function startStore(
  id: string,
  prefix: string,
  catchUpMs = 300,
  /** Reports lag 0 from revision 0 for every shard it is given, as a report left from before would. */
  stale?: { on: boolean },
  shards = S,
): Promise<FakeStore> {
  const proxy = await startTcpProxy(etcd.endpoints[0]);
  const cluster = createCluster(
    clusterConfigSchema.parse({
      enabled: true,
      node_id: id,
      etcd_endpoints: [proxy.url],
      key_prefix: prefix,
      lease_ttl_ms: 2000,
      keepalive_interval_ms: 250,
      lease_safety_margin_ms: 500,
      etcd_timeout_ms: 500,
      suspect_after_ms: 1000,
      refresh_interval_ms: 200,
      // A fresh etcd on a loaded 2-core machine may take seconds to grant the first lease.
      connect_timeout_ms: 20000,
      partitions: 4,
    }),
    {
      roles: ['store'],
      version: 'test',
      httpAddr: '127.0.0.1:1',
      metrics: new Registry(),
      logger: silentLogger,
      sharding: { shards, replicas: R, grace_ms: GRACE_MS, serve_lag_messages: 0, max_catching_up: 2 },
    },
  );
  try {
    await cluster.start();
  } catch (err) {
    await proxy.close();
    throw err;
  }
  if (!cluster.shards) return { id, cluster, proxy, stop: async () => cluster.stop(Date.now() + 3000) };
  const map = cluster.shards;
  // A replica catches up `catchUpMs` after the map gives it the shard: until then it reports a lag.
  const since = new Map<number, number>();
  const fromRevision = new Map<number, number>();
  const timer = setInterval(() => {
    const lags = new Map<number, number>();
    const current = map.current();
    for (const a of current.assignment) {
      if (!a.replicas.some((r) => r.node === id)) {
        since.delete(a.shard);
        fromRevision.delete(a.shard);
        continue;
      }
      if (!since.has(a.shard)) {
        since.set(a.shard, Date.now());
        fromRevision.set(a.shard, current.revision);
      }
      lags.set(a.shard, Date.now() - since.get(a.shard)! >= catchUpMs ? 0 : 1000);
    }
    if (stale?.on)
      map.report(new Map([...lags.keys()].map((k) => [k, 0])), new Map([...lags.keys()].map((k) => [k, 0])));
    else map.report(lags, fromRevision);
  }, 100);
  return {
    id,
    cluster,
    proxy,
    async stop() {
      clearInterval(timer);
      await cluster.stop(Date.now() + 3000);
      await proxy.close();
    },
  };
}

async function waitFor<T>(what: string, fn: () => T | undefined | false, ms = 40000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The map when it places every shard on R serving replicas, on `nodes` only, each holding floor..ceil. */
function settled(map: ShardMap, nodes: string[]): ShardMap | undefined {
  if (map.assignment.length !== S) return undefined;
  const load = new Map(nodes.map((n) => [n, 0]));
  for (const a of map.assignment) {
    if (a.replicas.length !== R || a.replicas.some((r) => r.state !== 'serving' || !load.has(r.node))) return undefined;
    for (const r of a.replicas) load.set(r.node, load.get(r.node)! + 1);
  }
  const lo = Math.floor((S * R) / nodes.length);
  const hi = Math.ceil((S * R) / nodes.length);
  return [...load.values()].every((c) => c >= lo && c <= hi) ? map : undefined;
}

/** Fails when any map seen by `watcher` has a shard with fewer than R complete (serving/draining) replicas. */
function watchSafety(
  watcher: Cluster,
  minServing: number,
): { violations: string[]; states: Set<string>; stop(): void } {
  const violations: string[] = [];
  const states = new Set<string>();
  const off = watcher.shards!.onChange((map) => {
    const moving = map.assignment.flatMap((a) => a.replicas).filter((r) => r.state === 'catching_up').length;
    if (moving > 2) violations.push(`rev ${map.revision}: ${moving} replicas catching up at once (limit 2)`);
    for (const a of map.assignment) {
      for (const r of a.replicas) states.add(r.state);
      const n = a.replicas.filter((r) => r.state !== 'catching_up').length;
      if (n < minServing) violations.push(`rev ${map.revision} shard ${a.shard}: ${n} complete replicas`);
    }
  });
  return { violations, states, stop: off };
}

test('4 store nodes, S=8 R=2: one coordinator writes a balanced map (4 shards each), all serving', async () => {
  const prefix = `sm${++prefixes}-${Date.now()}/`;
  const nodes = await Promise.all(['vigil-1', 'vigil-2', 'vigil-3', 'vigil-4'].map((id) => startStore(id, prefix)));
  try {
    const ids = nodes.map((n) => n.id);
    const map = await waitFor('a settled map', () => settled(nodes[0].cluster.shards!.current(), ids));
    for (const id of ids) {
      assert.equal(map.assignment.filter((a) => a.replicas.some((r) => r.node === id)).length, 4, id);
    }
    assert.equal(map.shards, S);
    assert.equal(map.replicas, R);
    assert.equal(nodes.filter((n) => n.cluster.shards!.isCoordinator()).length, 1, 'exactly one coordinator');
    // Every node sees the same map.
    await waitFor('every node to see the same revision', () =>
      nodes.every((n) => n.cluster.shards!.current().revision === map.revision) ? true : undefined,
    );
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

test('a fifth node joins: it receives 3 or 4 shards, old replicas drain only after the new ones serve', async () => {
  const prefix = `sm${++prefixes}-${Date.now()}/`;
  const nodes = await Promise.all(['a', 'b', 'c', 'd'].map((id) => startStore(id, prefix, 600)));
  try {
    const before = await waitFor('a settled map', () =>
      settled(nodes[0].cluster.shards!.current(), ['a', 'b', 'c', 'd']),
    );
    const safety = watchSafety(nodes[0].cluster, R);
    nodes.push(await startStore('e', prefix, 600));
    const after = await waitFor('the map settled on 5 nodes', () =>
      settled(nodes[0].cluster.shards!.current(), ['a', 'b', 'c', 'd', 'e']),
    );
    safety.stop();
    assert.deepEqual(safety.violations, []);
    // The move went through both intermediate states.
    assert.ok(safety.states.has('catching_up') && safety.states.has('draining'), [...safety.states].join());
    const onE = after.assignment.filter((a) => a.replicas.some((r) => r.node === 'e')).length;
    assert.ok(onE === 3 || onE === 4, `e holds ${onE}`);
    // Only the replicas that went to e moved.
    let moved = 0;
    for (const a of after.assignment) {
      for (const r of a.replicas) if (!before.assignment[a.shard].replicas.some((x) => x.node === r.node)) moved++;
    }
    assert.equal(moved, onE);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

test('a node cut from etcd: nothing moves within the grace period; after it, its shards get new replicas', async () => {
  const prefix = `sm${++prefixes}-${Date.now()}/`;
  const nodes = await Promise.all(['a', 'b', 'c', 'd'].map((id) => startStore(id, prefix)));
  const [a, , , d] = nodes;
  try {
    const before = await waitFor('a settled map', () => settled(a.cluster.shards!.current(), ['a', 'b', 'c', 'd']));
    const placement = (m: ShardMap) => JSON.stringify(m.assignment.map((x) => x.replicas.map((r) => r.node).sort()));
    // When each node first saw the map place a replica elsewhere (as its watch delivers it): never timed
    // by the test's own polling, which a loaded machine delays.
    let firstMove = Number.POSITIVE_INFINITY;
    const offs = nodes.slice(0, 3).map((n) =>
      n.cluster.shards!.onChange((m) => {
        if (placement(m) !== placement(before)) firstMove = Math.min(firstMove, Date.now());
      }),
    );
    d.proxy.cut();
    // d's lease expires after its TTL (2 s); its shards stay on it for the grace period, counted from
    // when the coordinator saw it dead (each node sees that from its own watch: the earliest of them).
    await waitFor('a, b and c to see d Dead', () =>
      nodes.slice(0, 3).every((n) => n.cluster.membership.nodes().find((x) => x.id === 'd')?.state === 'Dead'),
    );
    const deadSince = Math.min(
      ...nodes.slice(0, 3).map((n) => Date.parse(n.cluster.membership.nodes().find((x) => x.id === 'd')!.dead_since!)),
    );
    const after = await waitFor('the map settled on a, b, c', () =>
      settled(a.cluster.shards!.current(), ['a', 'b', 'c']),
    );
    for (const off of offs) off();
    assert.ok(Number.isFinite(firstMove), 'the map changed');
    assert.ok(
      firstMove - deadSince >= GRACE_MS,
      `nothing moves within the grace period: first move ${firstMove - deadSince} ms after d was seen dead`,
    );
    for (const x of after.assignment) {
      const kept = before.assignment[x.shard].replicas.map((r) => r.node).filter((n) => n !== 'd');
      for (const n of kept)
        assert.ok(
          x.replicas.some((r) => r.node === n),
          `shard ${x.shard} kept ${n}`,
        );
    }
  } finally {
    d.proxy.restore();
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

test('the coordinator stops: another store node takes the role and keeps the map', async () => {
  const prefix = `sm${++prefixes}-${Date.now()}/`;
  const nodes = await Promise.all(['a', 'b', 'c'].map((id) => startStore(id, prefix)));
  try {
    await waitFor('a settled map', () => settled(nodes[0].cluster.shards!.current(), ['a', 'b', 'c']));
    const coord = nodes.find((n) => n.cluster.shards!.isCoordinator());
    assert.ok(coord);
    const rest = nodes.filter((n) => n !== coord);
    await coord.stop();
    nodes.splice(nodes.indexOf(coord), 1);
    await waitFor('another coordinator', () => rest.some((n) => n.cluster.shards!.isCoordinator()));
    await waitFor('the map settled on the other two', () =>
      settled(
        rest[0].cluster.shards!.current(),
        rest.map((n) => n.id),
      ),
    );
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

test('maintenance drain: the node reports drained only once its shards moved, never below R serving copies', async () => {
  const prefix = `sm${++prefixes}-${Date.now()}/`;
  const nodes = await Promise.all(['a', 'b', 'c', 'd'].map((id) => startStore(id, prefix, 600)));
  const [a, , , d] = nodes;
  try {
    await waitFor('a settled map', () => settled(a.cluster.shards!.current(), ['a', 'b', 'c', 'd']));
    const safety = watchSafety(a.cluster, R);
    const first = await d.cluster.maintenance.enable();
    assert.equal(first.status, 'draining');
    assert.equal(first.shards_remaining, 4);
    await d.cluster.maintenance.drained();
    // Drained: the map (as d sees it) places nothing on d, and it was so before d said drained.
    assert.equal(d.cluster.maintenance.status().shards_remaining, 0);
    assert.ok(d.cluster.shards!.current().assignment.every((x) => !x.replicas.some((r) => r.node === 'd')));
    await waitFor('the map settled on a, b, c', () => settled(a.cluster.shards!.current(), ['a', 'b', 'c']));
    safety.stop();
    assert.deepEqual(safety.violations, []);
    assert.ok(safety.states.has('draining'), 'd kept its replicas while their successors caught up');
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

test('a lag report older than the replica (from an earlier stint on the shard) never makes it serve', async () => {
  const prefix = `sm${++prefixes}-${Date.now()}/`;
  const nodes = await Promise.all(['a', 'b', 'c'].map((id) => startStore(id, prefix)));
  const stale = { on: true };
  try {
    await waitFor('a settled map', () => settled(nodes[0].cluster.shards!.current(), ['a', 'b', 'c']));
    nodes.push(await startStore('d', prefix, 300, stale));
    await waitFor('d to be given shards', () =>
      nodes[0].cluster.shards!.current().assignment.some((a) => a.replicas.some((r) => r.node === 'd')),
    );
    await new Promise((r) => setTimeout(r, 1500));
    const onD = nodes[0].cluster.shards!.current().assignment.flatMap((a) => a.replicas.filter((r) => r.node === 'd'));
    assert.ok(onD.length > 0 && onD.every((r) => r.state === 'catching_up'), JSON.stringify(onD));
    assert.ok(onD.every((r) => (r.added_after_revision ?? 0) > 0));
    stale.on = false;
    await waitFor('the map settled on 4 nodes', () =>
      settled(nodes[0].cluster.shards!.current(), ['a', 'b', 'c', 'd']),
    );
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

test('a node whose store.shards differs from the map in etcd refuses to start (shards_mismatch)', async () => {
  const prefix = `sm${++prefixes}-${Date.now()}/`;
  const nodes = await Promise.all(['a', 'b'].map((id) => startStore(id, prefix)));
  try {
    await waitFor('a map', () => nodes[0].cluster.shards!.current().revision > 0);
    for (const shards of [4, 1]) {
      await assert.rejects(startStore('c', prefix, 300, undefined, shards), (err: Error) => {
        assert.match(err.message, /has 8 shards and this node's store\.shards is/);
        assert.equal((err.cause as { code?: string }).code, 'shards_mismatch');
        return true;
      });
    }
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});
