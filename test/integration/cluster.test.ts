import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { type Cluster, clusterConfigSchema, createCluster, type NodeView } from '../../src/cluster/index.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import {
  assertEtcdInstalled,
  type EtcdCluster,
  EtcdMissingError,
  startEtcdCluster,
  startTcpProxy,
} from '../harness/etcd.ts';
import { freePort } from '../harness/ports.ts';

const TTL_MS = 3000;
const P = 16;
let etcd: EtcdCluster;
let prefixes = 0;

before(async () => {
  etcd = await startEtcdCluster({ size: 3 });
});

after(async () => {
  await etcd?.stop();
});

interface OwnershipEvent {
  at: number;
  node: string;
  kind: 'acquire' | 'lose';
  partition: number;
  token?: number;
}

/** A vigil "node" in this process: its own etcd client, metrics and ownership journal. */
interface TestNode {
  id: string;
  cluster: Cluster;
  metrics: Registry;
  stop(): Promise<void>;
}

function testConfig(prefix: string, endpoints: string[], nodeId: string, overrides: Record<string, unknown> = {}) {
  return clusterConfigSchema.parse({
    enabled: true,
    node_id: nodeId,
    etcd_endpoints: endpoints,
    key_prefix: prefix,
    lease_ttl_ms: TTL_MS,
    keepalive_interval_ms: 500,
    lease_safety_margin_ms: 1000,
    etcd_timeout_ms: 500,
    suspect_after_ms: 1000,
    refresh_interval_ms: 250,
    connect_timeout_ms: 5000,
    partitions: P,
    handover_timeout_ms: 1000,
    drain_timeout_ms: 2000,
    ...overrides,
  });
}

async function startNode(
  id: string,
  prefix: string,
  journal: OwnershipEvent[],
  opts: { endpoints?: string[]; roles?: string[]; config?: Record<string, unknown>; dataDir?: string } = {},
): Promise<TestNode> {
  const metrics = new Registry();
  const cluster = createCluster(testConfig(prefix, opts.endpoints ?? etcd.endpoints, id, opts.config), {
    roles: opts.roles ?? ['detect'],
    version: '0.1.0-test',
    httpAddr: `127.0.0.1:${8000 + Number(id.replace(/\D/g, '') || 0)}`,
    metrics,
    logger: silentLogger,
    dataDir: opts.dataDir,
  });
  cluster.partitions.subscribe({
    onAcquire: (partition, token) => {
      journal.push({ at: performance.now(), node: id, kind: 'acquire', partition, token });
    },
    onLose: (partition) => {
      journal.push({ at: performance.now(), node: id, kind: 'lose', partition });
    },
  });
  await cluster.start();
  return { id, cluster, metrics, stop: () => cluster.stop(Date.now() + 3000) };
}

async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Owned partitions of each node; undefined unless all P are owned exactly once, within `maxEach`. */
function balanced(nodes: TestNode[], maxEach: number): Map<string, Map<number, number>> | undefined {
  const byNode = new Map(nodes.map((n) => [n.id, n.cluster.partitions.owned()]));
  const all = new Set<number>();
  let total = 0;
  for (const owned of byNode.values()) {
    if (owned.size > maxEach) return undefined;
    total += owned.size;
    for (const p of owned.keys()) all.add(p);
  }
  return total === P && all.size === P ? byNode : undefined;
}

const stateOf = (n: TestNode, id: string): NodeView | undefined =>
  n.cluster.membership.nodes().find((v) => v.id === id);

test('registration and watch: every node sees the others Alive, a node whose session dies goes Dead, then re-registers', async () => {
  const prefix = `t${++prefixes}-${Date.now()}/`;
  const journal: OwnershipEvent[] = [];
  const proxy = await startTcpProxy(etcd.endpoints[0]);
  const a = await startNode('a1', prefix, journal);
  const b = await startNode('b1', prefix, journal);
  const c = await startNode('c1', prefix, journal, { endpoints: [proxy.url] });
  try {
    for (const n of [a, b, c]) {
      await waitFor(`${n.id} to see 3 Alive nodes`, () =>
        n.cluster.membership.nodes().filter((v) => v.state === 'Alive').length === 3 ? true : undefined,
      );
    }
    const seen = stateOf(a, 'c1')!;
    assert.deepEqual(seen.roles, ['detect']);
    assert.equal(seen.version, '0.1.0-test');
    assert.equal(seen.address, '127.0.0.1:8001');
    assert.equal(seen.maintenance, 'active');

    // Cut c1 from etcd: its lease is no longer renewed and expires in etcd after the TTL.
    const cutAt = performance.now();
    proxy.cut();
    const states: string[] = [];
    const deadAt = await waitFor(
      'a1 to see c1 Dead',
      () => {
        const s = stateOf(a, 'c1')?.state ?? 'missing';
        if (states.at(-1) !== s) states.push(s);
        return s === 'Dead' ? performance.now() : undefined;
      },
      TTL_MS + 5000,
    );
    console.log(
      `membership: c1 seen by a1 as ${states.join(' -> ')}; Dead ${Math.round(deadAt - cutAt)} ms after the cut`,
    );
    assert.ok(states.includes('Suspect'), `a1 should see c1 Suspect before Dead, saw ${states.join(' -> ')}`);
    const tomb = stateOf(a, 'c1')!;
    assert.equal(tomb.state, 'Dead');
    assert.ok(tomb.dead_since, 'a Dead node keeps a tombstone with dead_since');
    // c1 itself knows it lost touch: it stopped acting and sees everyone Suspect.
    assert.equal(c.cluster.session.isUp(), false);
    assert.ok(c.cluster.membership.nodes().every((v) => v.state !== 'Alive'));
    assert.equal(
      Number((await a.metrics.getSingleMetricAsString('vigil_cluster_members')).match(/state="dead"} (\d+)/)?.[1]),
      1,
    );

    // etcd reachable again: c1 gets a new lease and registers again.
    proxy.restore();
    await waitFor('c1 Alive again after the outage', () => stateOf(a, 'c1')?.state === 'Alive', 15000);
    assert.ok(c.cluster.session.isUp());
    const errors = await c.metrics.getSingleMetricAsString('vigil_cluster_etcd_errors_total');
    assert.match(errors, /op="keepalive"} [1-9]/);
  } finally {
    await Promise.all([a.stop(), b.stop(), c.stop()]);
    await proxy.close();
  }
});

test('partitions: owned once each and balanced across 3 nodes; a cut node stops owning before a standby takes over with a higher fencing token', async () => {
  const prefix = `t${++prefixes}-${Date.now()}/`;
  const journal: OwnershipEvent[] = [];
  const proxy = await startTcpProxy(etcd.endpoints[1]);
  const a = await startNode('a2', prefix, journal);
  const b = await startNode('b2', prefix, journal);
  const c = await startNode('c2', prefix, journal, { endpoints: [proxy.url] });
  try {
    const nodes = [a, b, c];
    const before = await waitFor('16 partitions owned once, at most 6 each', () => balanced(nodes, Math.ceil(P / 3)));
    console.log(`partitions balanced: ${[...before].map(([id, o]) => `${id}=${o.size}`).join(' ')}`);
    const owners = await a.cluster.partitions.owners();
    assert.equal(owners.length, P);
    for (const o of owners)
      assert.equal(before.get(o.node)?.get(o.partition), o.fencing_token, `partition ${o.partition}`);
    // Every acquisition so far has a token higher than every earlier one of the same partition.
    const tokens = new Map<number, number>();
    for (const e of journal) {
      if (e.kind !== 'acquire') continue;
      assert.ok(e.token! > (tokens.get(e.partition) ?? 0), `token of partition ${e.partition} must grow`);
      tokens.set(e.partition, e.token!);
    }

    const cOwned = new Map(before.get('c2')!);
    assert.ok(cOwned.size > 0);
    const mark = journal.length;
    const cutAt = performance.now();
    proxy.cut();
    await waitFor('a2 and b2 to own all 16, at most 8 each', () => balanced([a, b], Math.ceil(P / 2)), TTL_MS + 10000);
    const after = journal.slice(mark);
    const lost = new Map(after.filter((e) => e.node === 'c2' && e.kind === 'lose').map((e) => [e.partition, e.at]));
    const taken = after.filter((e) => e.kind === 'acquire' && cOwned.has(e.partition));
    assert.equal(lost.size, cOwned.size, 'c2 gave up every partition it owned');
    assert.equal(new Set(taken.map((e) => e.partition)).size, cOwned.size, 'every partition of c2 was taken over');
    for (const e of taken) {
      const lostAt = lost.get(e.partition)!;
      assert.ok(lostAt < e.at, `c2 stopped owning partition ${e.partition} before ${e.node} acquired it`);
      assert.ok(
        e.token! > cOwned.get(e.partition)!,
        `partition ${e.partition}: token ${e.token} > ${cOwned.get(e.partition)}`,
      );
    }
    const stoppedMs = Math.max(...lost.values()) - cutAt;
    const firstTake = Math.min(...taken.map((e) => e.at)) - cutAt;
    const lastTake = Math.max(...taken.map((e) => e.at)) - cutAt;
    const gap = Math.min(...taken.map((e) => e.at - lost.get(e.partition)!));
    console.log(
      `takeover (lease TTL ${TTL_MS} ms): c2 stopped owning ${Math.round(stoppedMs)} ms after the cut; ` +
        `standbys acquired its ${cOwned.size} partitions ${Math.round(firstTake)}..${Math.round(lastTake)} ms after the cut; ` +
        `smallest gap between c2 letting go and a new owner: ${Math.round(gap)} ms`,
    );
    assert.ok(stoppedMs < TTL_MS, 'the cut node stops owning before its lease can expire in etcd');
    assert.ok(lastTake < TTL_MS + 2000, 'standbys take over within about one TTL of the lease expiring');
    const failovers = await a.metrics.getSingleMetricAsString('vigil_cluster_failovers_total');
    const failoversB = await b.metrics.getSingleMetricAsString('vigil_cluster_failovers_total');
    const count = (s: string) => Number(s.match(/vigil_cluster_failovers_total (\d+)/)?.[1] ?? 0);
    assert.equal(count(failovers) + count(failoversB), cOwned.size, 'each takeover counts as a failover');

    // c2 back: it rejoins and partitions spread again over three nodes.
    proxy.restore();
    const rebalanced = await waitFor(
      'partitions spread over 3 nodes again',
      () => {
        const m = balanced(nodes, Math.ceil(P / 3));
        return m && m.get('c2')!.size > 0 ? m : undefined;
      },
      20000,
    );
    console.log(`after c2 rejoined: ${[...rebalanced].map(([id, o]) => `${id}=${o.size}`).join(' ')}`);
    // Tokens still only grow, per partition, over the whole run.
    const last = new Map<number, number>();
    for (const e of journal) {
      if (e.kind !== 'acquire') continue;
      assert.ok(e.token! > (last.get(e.partition) ?? 0));
      last.set(e.partition, e.token!);
    }
  } finally {
    await Promise.all([a.stop(), b.stop(), c.stop()]);
    await proxy.close();
  }
});

test('kill -9 of one etcd member (the leader): ownership and registration continue without a loss', async () => {
  const prefix = `t${++prefixes}-${Date.now()}/`;
  const journal: OwnershipEvent[] = [];
  // The production default TTL (5 s): a leader election on a loaded machine can take more than the 2 s of
  // renewal slack that the 3 s test TTL leaves.
  const config = { lease_ttl_ms: 5000 };
  const nodes = [
    await startNode('a3', prefix, journal, { config }),
    await startNode('b3', prefix, journal, { config }),
    await startNode('c3', prefix, journal, { config }),
  ];
  try {
    await waitFor('balanced', () => balanced(nodes, Math.ceil(P / 3)));
    const mark = journal.length;
    const leader = await etcd.leader();
    const killedAt = Date.now();
    const killedAtPerf = performance.now();
    await etcd.kill(leader, 'SIGKILL');
    // How long etcd itself took to answer again (a leader elected, a read committed): when that outlasts a
    // lease's renewal slack no client could keep its session, and the failure says so.
    const etcdBack = etcd.waitHealthy(7000).then(
      () => `etcd healthy again ${Math.round(performance.now() - killedAtPerf)} ms after the kill`,
      (err: unknown) => `etcd not healthy within 7 s of the kill: ${err}`,
    );
    // Run on two members for longer than a lease TTL: a session that missed its renewals would be gone.
    await new Promise((r) => setTimeout(r, 7000));
    const etcdRecovery = await etcdBack;
    const lostDuring = journal.slice(mark).filter((e) => e.kind === 'lose');
    const errors = await Promise.all(
      nodes.map((n) => n.metrics.getSingleMetricAsString('vigil_cluster_etcd_errors_total')),
    );
    assert.deepEqual(
      lostDuring.map((e) => `${e.node} lost ${e.partition} at +${Math.round(e.at - killedAtPerf)} ms`),
      [],
      `no node lost a partition while one etcd member was down (${etcdRecovery}); etcd errors:\n${errors.join('\n')}`,
    );
    assert.ok(balanced(nodes, Math.ceil(P / 3)), 'all partitions still owned once');
    for (const n of nodes) {
      assert.ok(n.cluster.session.isUp(), `${n.id} keeps its session`);
      assert.equal(n.cluster.membership.nodes().filter((v) => v.state === 'Alive').length, 3, `${n.id} sees 3 Alive`);
    }
    // Writes still work: a registration update reaches the other nodes.
    await nodes[0].cluster.membership.update({ state: 'active' });
    console.log(
      `etcd leader m${leader} killed: ${Math.round((Date.now() - killedAt) / 100) / 10} s without ownership loss; ${etcdRecovery}`,
    );
    await etcd.restart(leader);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

test('maintenance: drain hands every partition over, reports drained with 0 remaining, then rejoins', async () => {
  const prefix = `t${++prefixes}-${Date.now()}/`;
  const journal: OwnershipEvent[] = [];
  const intake: boolean[] = [];
  const a = await startNode('a4', prefix, journal);
  const b = await startNode('b4', prefix, journal);
  const c = await startNode('c4', prefix, journal);
  const nodes = [a, b, c];
  try {
    const before = await waitFor('balanced', () => balanced(nodes, Math.ceil(P / 3)));
    const aOwned = before.get('a4')!;
    const mark = journal.length;
    const first = await a.cluster.maintenance.enable();
    assert.equal(first.status, 'draining');
    assert.equal(a.cluster.maintenance.accepting(), false);
    assert.equal(a.cluster.health().ok, false, 'a draining node is not ready');
    const t0 = performance.now();
    await a.cluster.maintenance.drained();
    console.log(`drain: ${aOwned.size} partitions handed over in ${Math.round(performance.now() - t0)} ms`);
    assert.deepEqual(a.cluster.maintenance.status(), { status: 'drained', partitions_remaining: 0 });
    await waitFor('b4 and c4 to own all 16', () => balanced([b, c], Math.ceil(P / 2)));
    await waitFor('others to see a4 drained', () => stateOf(b, 'a4')?.maintenance === 'drained');
    assert.equal(stateOf(b, 'a4')?.state, 'Alive', 'a drained node is still a live member');
    // Handover order: a4 let go of each partition before another node took it.
    const after = journal.slice(mark);
    for (const [p] of aOwned) {
      const lose = after.find((e) => e.node === 'a4' && e.kind === 'lose' && e.partition === p)!;
      const take = after.find((e) => e.node !== 'a4' && e.kind === 'acquire' && e.partition === p)!;
      assert.ok(lose && take && lose.at < take.at, `partition ${p} handed over in order`);
    }
    intake.push(a.cluster.maintenance.accepting());

    const back = await a.cluster.maintenance.disable();
    assert.equal(back.status, 'active');
    assert.equal(a.cluster.maintenance.accepting(), true);
    assert.equal(a.cluster.health().ok, true);
    const rejoined = await waitFor('a4 to take partitions again', () => {
      const m = balanced(nodes, Math.ceil(P / 3));
      return m && m.get('a4')!.size > 0 ? m : undefined;
    });
    console.log(`after rejoin: ${[...rejoined].map(([id, o]) => `${id}=${o.size}`).join(' ')}`);
    assert.deepEqual(intake, [false]);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

test('maintenance survives a restart: a drained node comes back drained, takes nothing, and rejoins on disable', async () => {
  const prefix = `t${++prefixes}-${Date.now()}/`;
  const journal: OwnershipEvent[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-maint-'));
  let a = await startNode('a6', prefix, journal, { dataDir });
  const b = await startNode('b6', prefix, journal);
  try {
    await waitFor('balanced', () => balanced([a, b], P / 2));
    await a.cluster.maintenance.enable();
    await a.cluster.maintenance.drained();
    await a.stop();
    const mark = journal.length;
    a = await startNode('a6', prefix, journal, { dataDir });
    assert.notEqual(a.cluster.maintenance.status().status, 'active', 'restarted in maintenance');
    await a.cluster.maintenance.drained();
    assert.equal(a.cluster.maintenance.accepting(), false);
    assert.equal(a.cluster.health().ok, false, 'not ready after the restart');
    await waitFor('b6 to see a6 drained', () => stateOf(b, 'a6')?.maintenance === 'drained');
    // Give a wrong rebalance time to happen: nothing may move while a6 stays in maintenance.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(a.cluster.partitions.owned().size, 0);
    assert.deepEqual(
      journal.slice(mark).filter((e) => e.kind === 'acquire' || e.node === 'b6'),
      [],
      'no partition moved because of the restart',
    );
    await a.cluster.maintenance.disable();
    await waitFor('a6 to take its share again', () => {
      const m = balanced([a, b], P / 2);
      return m && m.get('a6')!.size === P / 2 ? m : undefined;
    });
    await a.stop();
    a = await startNode('a6', prefix, journal, { dataDir });
    assert.equal(a.cluster.maintenance.status().status, 'active', 'disable is kept across a restart too');
  } finally {
    await Promise.all([a, b].map((n) => n.stop()));
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('start fails with a clear error when etcd cannot be reached; the harness names a missing etcd binary', async () => {
  const port = await freePort();
  const config = { ...testConfig(`t${++prefixes}/`, [`http://127.0.0.1:${port}`], 'lonely'), connect_timeout_ms: 500 };
  const cluster = createCluster(config, {
    roles: ['detect'],
    version: '0',
    httpAddr: '127.0.0.1:1',
    metrics: new Registry(),
    logger: silentLogger,
  });
  await assert.rejects(cluster.start(), (err: Error) => {
    assert.match(err.message, /cluster-etcd failed to start: no etcd lease within 500 ms from http:\/\/127\.0\.0\.1:/);
    assert.equal((err.cause as { code?: string }).code, 'etcd_unavailable');
    return true;
  });
  assert.throws(() => assertEtcdInstalled('/nonexistent/etcd'), EtcdMissingError);
  assert.throws(() => assertEtcdInstalled('/nonexistent/etcd'), /apt-get install -y etcd-server/);
});
