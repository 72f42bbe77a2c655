import type { ReplicaState, ShardAssignment, ShardReplica } from './types.ts';

/**
 * Where each shard's replicas should be: `target[s]` is the set of nodes that hold shard s once the cluster
 * is settled. Pure: the coordinator computes it from the map in etcd and the eligible store nodes.
 *
 * Guarantees (checked by assignment.test.ts with fast-check):
 * - each shard has min(R, N) distinct nodes, all eligible;
 * - each node holds floor or ceil of S x min(R, N) / N shards (plain rendezvous hashing is off by several
 *   shards at S = 8..64: not balanced enough);
 * - few moves: a placement already held on an eligible node is kept unless its node is over its quota; the
 *   nodes holding the most today get the ceil quotas; a node that joins receives exactly its quota and
 *   nothing else moves.
 */
export function planTarget(
  current: readonly (readonly string[])[],
  eligible: readonly string[],
  shards: number,
  replicas: number,
): string[][] {
  const nodes = [...new Set(eligible)].sort();
  const N = nodes.length;
  if (N === 0) return Array.from({ length: shards }, () => []);
  const R = Math.min(Math.max(1, replicas), N);
  const ok = new Set(nodes);
  const held: Set<string>[] = Array.from({ length: shards }, (_, s) => {
    const mine = (current[s] ?? []).filter((n) => ok.has(n));
    return new Set(mine);
  });
  const load = new Map<string, number>(nodes.map((n) => [n, 0]));
  for (const set of held) for (const n of set) load.set(n, (load.get(n) ?? 0) + 1);

  // Quotas: the nodes holding the most today get the ceil ones, so fewer placements move.
  const total = shards * R;
  const base = Math.floor(total / N);
  const extra = total - base * N;
  const byLoad = [...nodes].sort((a, b) => (load.get(b) ?? 0) - (load.get(a) ?? 0) || (a < b ? -1 : 1));
  const quota = new Map<string, number>(byLoad.map((n, i) => [n, base + (i < extra ? 1 : 0)]));

  // A shard with more than R replicas keeps those on the least loaded nodes (relative to quota).
  const over = (n: string) => (load.get(n) ?? 0) - (quota.get(n) ?? 0);
  for (let s = 0; s < shards; s++) {
    while (held[s].size > R) {
      const drop = [...held[s]].sort((a, b) => over(b) - over(a) || (a < b ? -1 : 1))[0];
      held[s].delete(drop);
      load.set(drop, (load.get(drop) ?? 0) - 1);
    }
  }
  // A node over quota gives up shards, those with the most replicas left first (so that removals spread over
  // distinct shards and a node that joins can take them all), then the highest shard numbers.
  for (const n of nodes) {
    while (over(n) > 0) {
      let best = -1;
      for (let s = shards - 1; s >= 0; s--) {
        if (held[s].has(n) && (best < 0 || held[s].size > held[best].size)) best = s;
      }
      held[best].delete(n);
      load.set(n, (load.get(n) ?? 0) - 1);
    }
  }
  // Fill the missing replicas on nodes under quota, the least loaded first; a shard whose only free nodes
  // already hold it swaps: another node Y (at quota, without s) gives one of its shards t to a free node X
  // (which lacks t), and takes s.
  const free = (n: string) => (quota.get(n) ?? 0) - (load.get(n) ?? 0);
  const pick = (s: number): string | undefined =>
    nodes
      .filter((n) => free(n) > 0 && !held[s].has(n))
      .sort((a, b) => free(b) - free(a) || spread(s, a) - spread(s, b))[0];
  for (let s = 0; s < shards; s++) {
    while (held[s].size < R) {
      const n = pick(s);
      if (n !== undefined) {
        held[s].add(n);
        load.set(n, (load.get(n) ?? 0) + 1);
        continue;
      }
      if (!swapInto(s)) throw new Error(`no balanced placement for shard ${s} (bug: a swap always exists)`);
    }
  }
  return held.map((set) => [...set].sort());

  function swapInto(s: number): boolean {
    const xs = nodes.filter((n) => free(n) > 0);
    for (const y of nodes) {
      if (held[s].has(y) || free(y) > 0) continue;
      for (let t = 0; t < shards; t++) {
        if (t === s || !held[t].has(y)) continue;
        const x = xs.find((c) => !held[t].has(c));
        if (x === undefined) continue;
        held[t].delete(y);
        held[t].add(x);
        held[s].add(y);
        load.set(x, (load.get(x) ?? 0) + 1);
        return true;
      }
    }
    return false;
  }
}

/** A per-shard, per-node tie breaker, so that equal choices do not all land on the first node by name. */
function spread(shard: number, node: string): number {
  let h = 0x811c9dc5 ^ shard;
  for (let i = 0; i < node.length; i++) h = Math.imul(h ^ node.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** What the coordinator knows about a store node when it computes the next map. */
export interface NodeFacts {
  /** Takes new replicas: alive (or dead for less than the grace period), active (not in maintenance), store role. */
  eligible: boolean;
  /**
   * Its replicas are kept: registered in etcd, or dead for less than the grace period (it may come back with
   * its data). false: gone for good, its replicas are removed and placed elsewhere.
   */
  present: boolean;
  /** Lag of each shard it consumes, as it last reported (absent: it has not reported the shard). */
  lag: ReadonlyMap<number, number>;
}

/**
 * The next assignment, one step of the rebalance from `current` towards `planTarget`:
 * - a node in the target that lacks the shard gets it as `catching_up`;
 * - a `catching_up` replica becomes `serving` once its node reports its lag at most `serveLagMessages`;
 * - a replica outside the target becomes `draining` and is removed only once the shard has min(R, N)
 *   serving replicas in the target, so a rebalance never lowers the serving copies below R;
 * - a replica on a node no longer present (dead past the grace period, or gone) is removed at once: nothing
 *   can be read from it anyway.
 * A draining replica back in the target is `serving` again (it kept consuming while draining).
 */
export function nextAssignment(
  current: readonly ShardAssignment[],
  facts: ReadonlyMap<string, NodeFacts>,
  shards: number,
  replicas: number,
  serveLagMessages: number,
  /** The revision of `current` (recorded on new replicas as `added_after_revision`). */
  revision = 0,
  /**
   * Most replicas catching up at once in the cluster, counting only shards that have a complete replica
   * (a move or a re-replication reads a whole shard from the stream): the rest wait for a later step. A
   * shard without any complete replica (a new cluster) gets its replicas at once: nothing is copied.
   */
  maxCatchingUp = Number.POSITIVE_INFINITY,
): ShardAssignment[] {
  const eligible = [...facts].filter(([, f]) => f.eligible).map(([n]) => n);
  const bySlot: ShardReplica[][] = Array.from({ length: shards }, (_, s) =>
    (current.find((a) => a.shard === s)?.replicas ?? []).filter((r) => facts.get(r.node)?.present),
  );
  const target = planTarget(
    bySlot.map((list) => list.filter((r) => r.state !== 'draining').map((r) => r.node)),
    eligible,
    shards,
    replicas,
  );
  const want = Math.min(Math.max(1, replicas), eligible.length);
  const complete = (list: readonly ShardReplica[]) => list.some((r) => r.state !== 'catching_up');
  let moving = 0;
  for (const list of bySlot) if (complete(list)) moving += list.filter((r) => r.state === 'catching_up').length;
  return bySlot.map((list, s) => {
    const inTarget = new Set(target[s]);
    const lagOf = (node: string) => facts.get(node)?.lag.get(s);
    const out: ShardReplica[] = [];
    for (const node of target[s]) {
      const had = list.find((r) => r.node === node);
      if (!had && complete(list)) {
        if (moving >= maxCatchingUp) continue;
        moving++;
      }
      const lag = lagOf(node);
      let state: ReplicaState = had ? had.state : 'catching_up';
      if (state === 'draining') state = 'serving';
      if (state === 'catching_up' && lag !== undefined && lag <= serveLagMessages) state = 'serving';
      const r: ShardReplica = { node, state, lag_messages: lag ?? had?.lag_messages ?? 0 };
      if (state === 'catching_up') r.added_after_revision = had?.added_after_revision ?? revision;
      out.push(r);
    }
    const serving = out.filter((r) => r.state === 'serving').length;
    for (const r of list) {
      if (inTarget.has(r.node)) continue;
      // Kept until the target serves with R copies; a never-complete (catching_up) replica has nothing to keep.
      if (serving >= want || r.state === 'catching_up') continue;
      out.push({ node: r.node, state: 'draining', lag_messages: lagOf(r.node) ?? r.lag_messages });
    }
    out.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    return { shard: s, replicas: out };
  });
}

/** Whether two assignments place the same nodes in the same states (lag ignored): the map needs no write. */
export function sameAssignment(a: readonly ShardAssignment[], b: readonly ShardAssignment[]): boolean {
  const key = (x: readonly ShardAssignment[]) =>
    JSON.stringify(x.map((s) => [s.shard, s.replicas.map((r) => [r.node, r.state])]));
  return key(a) === key(b);
}
