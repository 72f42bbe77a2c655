import type { IKeyValue } from 'etcd3';
import type { Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../../lib/component.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge } from '../../lib/metrics.ts';
import type { Membership, NodeView } from '../membership.ts';
import { ClusterError } from '../errors.ts';
import type { EtcdSession } from '../session.ts';
import { type NodeFacts, nextAssignment, sameAssignment } from './assignment.ts';
import type { ShardAssignment, ShardMap } from './types.ts';

export { type NodeFacts, nextAssignment, planTarget, sameAssignment } from './assignment.ts';
export {
  murmur3,
  type ReplicaState,
  type ShardAssignment,
  type ShardMap,
  type ShardReplica,
  shardOf,
  shardPredicate,
} from './types.ts';

/** What the shard map needs from the configuration (`store.*` and `cluster.*`). */
export interface ShardMapConfig {
  /** S (`store.shards`). */
  shards: number;
  /** R (`store.replicas`); 0: every store node. */
  replicas: number;
  /** `store.shard_grace_ms`. */
  grace_ms: number;
  /** `store.shard_serve_lag_messages`. */
  serve_lag_messages: number;
  /** `store.shard_max_catching_up`; unlimited when unset. */
  max_catching_up?: number;
  /** `cluster.key_prefix`. */
  key_prefix: string;
  /** `cluster.refresh_interval_ms`: the coordinator's pass and the lag reports' period. */
  refresh_interval_ms: number;
}

/**
 * The shard map of the cluster, kept in etcd: `<prefix>shards/map` (the assignment; its mod revision is the
 * map's revision), written only by the coordinator, the node holding `<prefix>shards/coordinator` (created
 * when absent under its session lease: when it dies, another store node takes the role). Every store node
 * reports the lag of the shards it consumes at `<prefix>shards/lag/<node>` (under its lease); the
 * coordinator turns a `catching_up` replica `serving` from those reports and drops a `draining` one once its
 * successors serve. Every node watches the map.
 */
export interface ShardMapService extends Component {
  readonly shards: number;
  /** The last map seen, with each replica's lag as its node last reported it (revision 0: none yet). */
  current(): ShardMap;
  /** Called with the new map whenever its assignment changes (not for lag reports). */
  onChange(listener: (map: ShardMap) => void): () => void;
  /**
   * This node's lag per shard it consumes, and the map revision from which it consumes each (a report
   * counts for a `catching_up` replica only when that revision is later than the replica's
   * `added_after_revision`); written to etcd when it changes (at most once per refresh).
   */
  report(lags: ReadonlyMap<number, number>, since: ReadonlyMap<number, number>): void;
  /** Whether this node writes the map now. */
  isCoordinator(): boolean;
  /** Runs one coordinator pass now (tests; the pass also runs on a timer and on changes). */
  reconcile(): Promise<void>;
}

/**
 * A check run at start on every cluster node, sharded or not: refuses to start when the shard map in etcd
 * has another shard count than this node's `store.shards` (1 included). Such a node would publish events
 * on subjects no store node reads, or read the wrong shards: acknowledged events would never be stored.
 */
export function createShardCountCheck(shards: number, deps: { session: EtcdSession; keyPrefix: string }): Component {
  return {
    name: 'cluster-shard-check',
    async start() {
      const res = await deps.session.run('shards_check', (e) => e.get(`${deps.keyPrefix}shards/map`).exec());
      const map = parseMap(res.kvs[0]);
      if (map && map.shards !== shards) {
        throw new ClusterError(
          'shards_mismatch',
          `the cluster's shard map in etcd (${deps.keyPrefix}shards/map) has ${map.shards} shards and this node's store.shards is ${shards}: every node of a cluster must have the same store.shards, which cannot change once events are stored`,
          { retryable: false },
        );
      }
    },
    async stop() {},
    health: () => ({ ok: true }),
  };
}

/** Whether a node keeps events (the `store` role, or `all`). */
export function runsStore(roles: readonly string[]): boolean {
  return roles.includes('store') || roles.includes('all');
}

interface StoredMap {
  shards: number;
  replicas: number;
  assignment: ShardAssignment[];
}

/** Parses the stored map; undefined when it is not one. */
function parseMap(kv: IKeyValue | undefined): (StoredMap & { revision: number }) | undefined {
  if (!kv) return undefined;
  try {
    const v = JSON.parse(kv.value.toString()) as Partial<StoredMap>;
    if (!Number.isInteger(v.shards) || !Array.isArray(v.assignment)) return undefined;
    return {
      shards: Number(v.shards),
      replicas: Number(v.replicas ?? 0),
      assignment: v.assignment.map((a) => ({
        shard: Number(a.shard),
        replicas: (a.replicas ?? []).map((r) => ({
          node: String(r.node),
          state: r.state === 'serving' || r.state === 'draining' ? r.state : 'catching_up',
          lag_messages: Number(r.lag_messages ?? 0),
          ...(r.added_after_revision !== undefined ? { added_after_revision: Number(r.added_after_revision) } : {}),
        })),
      })),
      revision: Number(kv.mod_revision),
    };
  } catch {
    return undefined;
  }
}

/** A node's lag report: per shard, its lag and the map revision it consumes the shard from. */
interface LagReport {
  lags: Map<number, number>;
  since: Map<number, number>;
}

/** Parses a lag report `{"lags": {"<shard>": n}, "since": {"<shard>": revision}}`. */
function parseLags(kv: IKeyValue): LagReport {
  const out: LagReport = { lags: new Map(), since: new Map() };
  try {
    const v = JSON.parse(kv.value.toString()) as { lags?: Record<string, number>; since?: Record<string, number> };
    for (const [k, n] of Object.entries(v.lags ?? {})) {
      if (Number.isInteger(Number(k)) && Number.isFinite(n)) out.lags.set(Number(k), Number(n));
    }
    for (const [k, n] of Object.entries(v.since ?? {})) {
      if (Number.isInteger(Number(k)) && Number.isFinite(n)) out.since.set(Number(k), Number(n));
    }
  } catch {
    // a malformed report counts as none: its replicas stay catching_up
  }
  return out;
}

/** Creates the shard map of this node; `participate`: a store node (reports lag, may coordinate). */
export function createShardMap(
  config: ShardMapConfig,
  deps: {
    session: EtcdSession;
    membership: Membership;
    participate: boolean;
    metrics: Registry;
    logger: Logger;
  },
): ShardMapService {
  const { session, membership } = deps;
  const self = session.nodeId;
  const log = deps.logger.child({ component: 'cluster-shards' });
  const prefix = `${config.key_prefix}shards/`;
  const mapKey = `${prefix}map`;
  const coordKey = `${prefix}coordinator`;
  const lagPrefix = `${prefix}lag/`;
  const S = config.shards;
  const listeners = new Set<(map: ShardMap) => void>();
  const reports = new Map<string, LagReport>();
  /** When a node of the map was first seen without a registration (its grace period counts from there). */
  const missingSince = new Map<string, number>();
  let stored: (StoredMap & { revision: number }) | undefined;
  let coordinatorRev = 0;
  let started = false;
  let running: Promise<void> | undefined;
  let again = false;
  let timer: NodeJS.Timeout | undefined;
  let stopWatch: (() => Promise<void>) | undefined;
  const offs: (() => void)[] = [];
  let ownLags = new Map<number, number>();
  let ownSince = new Map<number, number>();
  let reportedKey = '';
  let lastError: string | undefined;

  const mapWrites = counter(
    deps.metrics,
    'vigil_cluster_shard_map_writes_total',
    'Shard map revisions written by this node as coordinator.',
  );
  const replicaGauge = gauge(
    deps.metrics,
    'vigil_cluster_shard_replicas',
    'Shard replicas in the map, by state (serving, catching_up, draining).',
    ['state'],
  );
  const underGauge = gauge(
    deps.metrics,
    'vigil_cluster_shards_under_replicated',
    'Shards with fewer serving replicas than the map wants.',
  );

  const current = (): ShardMap => {
    if (!stored) return { revision: 0, shards: S, replicas: 0, assignment: [] };
    return {
      revision: stored.revision,
      shards: stored.shards,
      replicas: stored.replicas,
      assignment: stored.assignment.map((a) => ({
        shard: a.shard,
        replicas: a.replicas.map((r) => ({
          ...r,
          lag_messages: reports.get(r.node)?.lags.get(a.shard) ?? r.lag_messages,
        })),
      })),
    };
  };

  const applyMap = (next: (StoredMap & { revision: number }) | undefined) => {
    if (!next || (stored && next.revision <= stored.revision)) return;
    if (next.shards !== S) {
      lastError = `the shard map in etcd has ${next.shards} shards, this node is configured with store.shards ${S}`;
      log.error({ map_shards: next.shards, shards: S }, 'The shard map disagrees with store.shards; ignored.');
      return;
    }
    const changed = !stored || !sameAssignment(stored.assignment, next.assignment);
    stored = next;
    lastError = undefined;
    const counts = { serving: 0, catching_up: 0, draining: 0 };
    let under = 0;
    for (const a of next.assignment) {
      let serving = 0;
      for (const r of a.replicas) {
        counts[r.state]++;
        if (r.state !== 'catching_up') serving++;
      }
      if (serving < next.replicas) under++;
    }
    for (const [state, n] of Object.entries(counts)) replicaGauge.set({ state }, n);
    underGauge.set(under);
    if (!changed) return;
    const map = current();
    for (const l of listeners) {
      try {
        l(map);
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'A shard map listener failed.');
      }
    }
  };

  const readAll = async () => {
    const res = await session.run('shards_read', (e) => e.getAll().prefix(prefix).exec());
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      if (key === mapKey) applyMap(parseMap(kv));
      else if (key.startsWith(lagPrefix)) reports.set(key.slice(lagPrefix.length), parseLags(kv));
    }
    const present = new Set(res.kvs.map((kv) => kv.key.toString()));
    for (const node of [...reports.keys()]) if (!present.has(`${lagPrefix}${node}`)) reports.delete(node);
    return res.kvs;
  };

  /**
   * A node's lags that count: for a shard where its replica is catching_up, only a report of a consumer
   * started from a map later than the one the replica was added after.
   */
  const lagsOf = (node: string): Map<number, number> => {
    const report = reports.get(node);
    const out = new Map<number, number>();
    if (!report) return out;
    for (const [shard, lag] of report.lags) {
      const r = stored?.assignment[shard]?.replicas.find((x) => x.node === node);
      const after = r?.state === 'catching_up' ? (r.added_after_revision ?? 0) : -1;
      if ((report.since.get(shard) ?? 0) > after) out.set(shard, lag);
    }
    return out;
  };

  /** What the coordinator knows of every store node, from membership and the nodes of the map. */
  const facts = (): Map<string, NodeFacts> => {
    const now = Date.now();
    const out = new Map<string, NodeFacts>();
    const seen = new Set<string>();
    const stores = membership.nodes().filter((n: NodeView) => runsStore(n.roles));
    for (const n of stores) {
      seen.add(n.id);
      if (n.state === 'Dead') {
        const since = n.dead_since ? Date.parse(n.dead_since) : now;
        if (!missingSince.has(n.id) || missingSince.get(n.id)! > since) missingSince.set(n.id, since);
        continue;
      }
      missingSince.delete(n.id);
      out.set(n.id, {
        eligible: n.maintenance === 'active',
        present: true,
        lag: lagsOf(n.id),
      });
    }
    // Nodes of the map that are gone (dead, or unknown to this process since it started): kept, and still
    // eligible so that nothing moves, during the grace period; after it, removed.
    for (const a of stored?.assignment ?? []) {
      for (const r of a.replicas) {
        if (out.has(r.node)) continue;
        if (!seen.has(r.node) && !missingSince.has(r.node)) missingSince.set(r.node, now);
        const since = missingSince.get(r.node) ?? now;
        const within = now - since < config.grace_ms;
        out.set(r.node, { eligible: within, present: within, lag: lagsOf(r.node) });
      }
    }
    return out;
  };

  /** Takes the coordinator role if free; returns whether this node holds it (with its key's create revision). */
  const claim = async (lease: string): Promise<boolean> => {
    const res = await session.run('shards_coordinator', (e) =>
      e
        .if(coordKey, 'Create', '==', 0)
        .then(
          e
            .put(coordKey)
            .value(JSON.stringify({ node: self }))
            .lease(lease),
        )
        .else(e.get(coordKey))
        .commit(),
    );
    if (res.succeeded) {
      coordinatorRev = Number(res.header.revision);
      log.info({ fencing_token: coordinatorRev }, 'This node coordinates the shard map.');
      return true;
    }
    const kv = res.responses[0]?.response_range?.kvs?.[0];
    if (kv && kv.lease === lease) {
      coordinatorRev = Number(kv.create_revision);
      return true;
    }
    coordinatorRev = 0;
    return false;
  };

  const pass = async () => {
    if (!started) return;
    const lease = session.leaseId();
    if (lease === undefined) {
      coordinatorRev = 0;
      return;
    }
    await writeReport(lease);
    await readAll();
    if (!deps.participate || !(await claim(lease))) return;
    const f = facts();
    const eligible = [...f.values()].filter((x) => x.eligible).length;
    if (eligible === 0) return;
    const R = config.replicas === 0 ? eligible : config.replicas;
    const prev = stored?.assignment ?? [];
    const next = nextAssignment(
      prev,
      f,
      S,
      R,
      config.serve_lag_messages,
      stored?.revision ?? 0,
      config.max_catching_up ?? Number.POSITIVE_INFINITY,
    );
    const effective = Math.min(R, eligible);
    if (stored && sameAssignment(prev, next) && stored.replicas === effective) return;
    const value = JSON.stringify({ shards: S, replicas: effective, assignment: next } satisfies StoredMap);
    const prevRev = stored?.revision ?? 0;
    // Written only while this node still holds the role (same create revision) and nobody wrote the map since
    // it was read; otherwise the next pass reads again.
    const res = await session.run('shards_write', (e) =>
      e
        .if(coordKey, 'Create', '==', coordinatorRev)
        .and(mapKey, 'Mod', '==', prevRev)
        .then(e.put(mapKey).value(value))
        .commit(),
    );
    if (!res.succeeded) {
      again = true;
      return;
    }
    mapWrites.inc();
    const moving = next.flatMap((a) =>
      a.replicas.filter((r) => r.state !== 'serving').map((r) => `${a.shard}:${r.node}`),
    );
    log.info(
      { revision: Number(res.header.revision), replicas: effective, moving },
      'The shard map was written by this coordinator.',
    );
    applyMap({ shards: S, replicas: effective, assignment: next, revision: Number(res.header.revision) });
  };

  const writeReport = async (lease: string) => {
    if (!deps.participate) return;
    const sorted = (m: ReadonlyMap<number, number>) => Object.fromEntries([...m].sort((a, b) => a[0] - b[0]));
    const value = JSON.stringify({ lags: sorted(ownLags), since: sorted(ownSince) });
    const key = `${lease}|${value}`;
    if (key === reportedKey) return;
    await session.run('shards_report', (e) => e.put(`${lagPrefix}${self}`).value(value).lease(lease).exec());
    reportedKey = key;
  };

  const reconcile = (): Promise<void> => {
    again = true;
    if (running) return running;
    running = (async () => {
      while (again && started) {
        again = false;
        try {
          await pass();
        } catch (err) {
          lastError = `shard map pass failed: ${errorMessage(err)}`;
          log.warn({ err: errorMessage(err) }, 'A shard map pass failed.');
        }
      }
    })().finally(() => {
      running = undefined;
    });
    return running;
  };

  const tick = () => {
    timer = setTimeout(async () => {
      await reconcile();
      if (started) tick();
    }, config.refresh_interval_ms);
  };

  return {
    name: 'cluster-shards',
    shards: S,
    current,
    onChange(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    report(lags, since) {
      ownLags = new Map(lags);
      ownSince = new Map(since);
    },
    isCoordinator: () => coordinatorRev > 0 && session.isUp(),
    reconcile,
    async start() {
      started = true;
      offs.push(
        session.onDown(() => {
          coordinatorRev = 0;
          reportedKey = '';
        }),
        session.onUp(() => void reconcile()),
        membership.onChange(() => void reconcile()),
      );
      stopWatch = session.watchPrefix(prefix, {
        put(kv) {
          const key = kv.key.toString();
          if (key === mapKey) applyMap(parseMap(kv));
          else if (key.startsWith(lagPrefix)) {
            reports.set(key.slice(lagPrefix.length), parseLags(kv));
            if (coordinatorRev > 0) void reconcile();
          }
        },
        delete(kv) {
          const key = kv.key.toString();
          if (key.startsWith(lagPrefix)) reports.delete(key.slice(lagPrefix.length));
          // The coordinator is gone: the next store node to claim the role carries on.
          if (key === coordKey && deps.participate) void reconcile();
        },
        resync: () => void reconcile(),
      });
      await reconcile();
      tick();
    },
    async stop() {
      started = false;
      clearTimeout(timer);
      for (const off of offs.splice(0)) off();
      await stopWatch?.();
      if (running) await running;
      // Leaving on purpose: free the coordinator role at once rather than at the lease's expiry.
      if (coordinatorRev > 0 && session.isUp()) {
        const rev = coordinatorRev;
        await session
          .run('shards_coordinator_release', (e) =>
            e.if(coordKey, 'Create', '==', rev).then(e.delete().key(coordKey)).commit(),
          )
          .catch((err) => log.warn({ err: errorMessage(err) }, 'Could not free the coordinator role; it expires.'));
      }
      coordinatorRev = 0;
    },
    health(): ComponentHealth {
      // A map of another shard count is a configuration error that no retry fixes.
      if (stored === undefined && lastError?.includes('store.shards')) return { ok: false, detail: lastError };
      return lastError ? { ok: true, detail: lastError } : { ok: true };
    },
  };
}
