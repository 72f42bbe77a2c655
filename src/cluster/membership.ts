import type { IKeyValue } from 'etcd3';
import type { Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { ClusterConfig } from './config.ts';
import { clusterMetrics } from './metrics.ts';
import { type EtcdSession, withTimeout } from './session.ts';
import { sleep } from '../lib/retry.ts';

/** A node's maintenance state, as it registers it. */
export type MaintenanceState = 'active' | 'draining' | 'drained';

/** A node's liveness as this node sees it. */
export type NodeState = 'Alive' | 'Suspect' | 'Dead';

/** What a node writes at `<prefix>nodes/<id>`, attached to its session lease. */
export interface NodeRegistration {
  id: string;
  roles: string[];
  version: string;
  /** host:port of the node's HTTP API. */
  http_addr: string;
  state: MaintenanceState;
  /** ISO 8601. */
  started_at: string;
  /** Correlation partitions the node owns. */
  partitions: number[];
}

/** A node as the status API shows it. */
export interface NodeView {
  id: string;
  state: NodeState;
  maintenance: MaintenanceState;
  roles: string[];
  partitions: number[];
  version: string;
  address: string;
  started_at: string;
  /** Time since the node's lease was last renewed, as far as etcd's whole-second TTLs tell (a lower bound). */
  heartbeat_age_ms: number | null;
  /** ISO 8601, for Dead nodes. */
  dead_since?: string;
}

/**
 * Cluster membership: registers this node under its session lease and watches every node's key. A node
 * is Alive while its key exists and its lease was renewed within `suspect_after_ms`; Suspect when the
 * renewal is older (or when this node itself has lost touch with etcd); Dead once its key is gone (lease
 * expired or node left), kept as a tombstone for `dead_retention_ms`.
 */
export interface Membership extends Component {
  readonly nodeId: string;
  /** Every known node (Dead ones included), sorted by id. */
  nodes(): NodeView[];
  /** This node's registration as last written (or about to be). */
  self(): NodeRegistration;
  /** Changes this node's registration and writes it; resolves once written (or once the session is down). */
  update(patch: Partial<Pick<NodeRegistration, 'state' | 'partitions'>>): Promise<void>;
  /** Called after every change of the view. */
  onChange(listener: (nodes: NodeView[]) => void): () => void;
  /** Re-reads every registration and lease from etcd now. */
  refresh(): Promise<void>;
}

interface LiveNode {
  reg: NodeRegistration;
  lease: string;
  /** Lower bound of the heartbeat age when last measured, and when (performance.now()). */
  ageAtMeasure?: number;
  measuredAt?: number;
  /** The lease was reported expired (the key is about to go). */
  expired?: boolean;
}

/** Parses a registration; undefined (and a warning) when it is not one. */
function parseRegistration(kv: IKeyValue, log: Logger): NodeRegistration | undefined {
  try {
    const v = JSON.parse(kv.value.toString()) as Partial<NodeRegistration>;
    if (typeof v.id !== 'string' || !Array.isArray(v.roles)) throw new Error('missing id or roles');
    return {
      id: v.id,
      roles: v.roles.map(String),
      version: String(v.version ?? ''),
      http_addr: String(v.http_addr ?? ''),
      state: v.state === 'draining' || v.state === 'drained' ? v.state : 'active',
      started_at: String(v.started_at ?? ''),
      partitions: Array.isArray(v.partitions) ? v.partitions.map(Number) : [],
    };
  } catch (err) {
    log.warn({ key: kv.key.toString(), err: errorMessage(err) }, 'Ignored a malformed node registration.');
    return undefined;
  }
}

/** Creates membership for this node; nothing is opened until start(). */
export function createMembership(
  config: ClusterConfig,
  deps: {
    session: EtcdSession;
    roles: string[];
    version: string;
    httpAddr: string;
    /** The state to register with: `draining` when the node restarts in maintenance. */
    initialState?: MaintenanceState;
    metrics: Registry;
    logger: Logger;
  },
): Membership {
  const { session } = deps;
  const log = deps.logger.child({ component: 'cluster-membership' });
  const metrics = clusterMetrics(deps.metrics);
  const prefix = `${config.key_prefix}nodes/`;
  const selfKey = `${prefix}${session.nodeId}`;
  const live = new Map<string, LiveNode>();
  const dead = new Map<string, { reg: NodeRegistration; since: number }>();
  const listeners = new Set<(nodes: NodeView[]) => void>();
  const reg: NodeRegistration = {
    id: session.nodeId,
    roles: [...deps.roles],
    version: deps.version,
    http_addr: deps.httpAddr,
    state: deps.initialState ?? 'active',
    started_at: new Date().toISOString(),
    partitions: [],
  };
  // Watch events and snapshots are applied in revision order; an older snapshot is skipped.
  let appliedRevision = 0;
  let refreshTimer: NodeJS.Timeout | undefined;
  let stopWatch: (() => Promise<void>) | undefined;
  let offUp: (() => void) | undefined;
  let started = false;
  let writing: Promise<void> | undefined;
  let dirty = false;

  const view = (): NodeView[] => {
    const out: NodeView[] = [];
    const t = performance.now();
    const weAreCut = !session.connected();
    for (const [id, n] of live) {
      const self = id === session.nodeId;
      let age: number | null = null;
      if (self) age = Number.isFinite(session.heartbeatAgeMs()) ? Math.round(session.heartbeatAgeMs()) : null;
      else if (n.ageAtMeasure !== undefined && n.measuredAt !== undefined) {
        age = Math.round(n.ageAtMeasure + (t - n.measuredAt));
      }
      const stale = n.expired === true || (age !== null && age > config.suspect_after_ms);
      out.push({
        id,
        state: weAreCut || stale ? 'Suspect' : 'Alive',
        maintenance: n.reg.state,
        roles: n.reg.roles,
        partitions: n.reg.partitions,
        version: n.reg.version,
        address: n.reg.http_addr,
        started_at: n.reg.started_at,
        heartbeat_age_ms: age,
      });
    }
    const cutoff = Date.now() - config.dead_retention_ms;
    for (const [id, d] of dead) {
      if (d.since < cutoff) {
        dead.delete(id);
        continue;
      }
      out.push({
        id,
        state: 'Dead',
        maintenance: d.reg.state,
        roles: d.reg.roles,
        partitions: [],
        version: d.reg.version,
        address: d.reg.http_addr,
        started_at: d.reg.started_at,
        heartbeat_age_ms: null,
        dead_since: new Date(d.since).toISOString(),
      });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  };

  const changed = () => {
    const nodes = view();
    const counts = { alive: 0, suspect: 0, dead: 0 };
    for (const n of nodes) counts[n.state === 'Alive' ? 'alive' : n.state === 'Suspect' ? 'suspect' : 'dead']++;
    for (const [state, n] of Object.entries(counts)) metrics.members.set({ state }, n);
    for (const l of listeners) {
      try {
        l(nodes);
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'A membership listener failed.');
      }
    }
  };

  const markDead = (id: string) => {
    const n = live.get(id);
    if (!n) return;
    live.delete(id);
    dead.set(id, { reg: n.reg, since: Date.now() });
    if (id !== session.nodeId) log.info({ node: id }, 'A cluster node is gone (its key was deleted or expired).');
  };

  const applyPut = (kv: IKeyValue) => {
    const r = parseRegistration(kv, log);
    if (!r) return;
    const id = kv.key.toString().slice(prefix.length);
    const old = live.get(id);
    if (!old && id !== session.nodeId) log.info({ node: id, roles: r.roles }, 'A cluster node joined.');
    // A new lease means a new incarnation: its heartbeat is fresh until measured.
    live.set(id, old && old.lease === kv.lease ? { ...old, reg: r } : { reg: r, lease: kv.lease });
    dead.delete(id);
  };

  /** Writes our registration under the live lease; coalesces concurrent updates into one write. */
  const publish = (): Promise<void> => {
    dirty = true;
    if (writing) return writing;
    writing = (async () => {
      while (dirty && started) {
        dirty = false;
        const lease = session.leaseId();
        if (lease === undefined) return;
        try {
          await session.run('register', (e) => e.put(selfKey).value(JSON.stringify(reg)).lease(lease).exec());
        } catch (err) {
          log.warn({ err: errorMessage(err) }, 'Could not write this node registration; retrying.');
          dirty = true;
          await sleep(config.refresh_interval_ms);
        }
      }
    })().finally(() => {
      writing = undefined;
    });
    return writing;
  };

  const refresh = async () => {
    const res = await session.run('nodes_read', (e) => e.getAll().prefix(prefix).exec());
    const revision = Number(res.header.revision);
    if (revision >= appliedRevision) {
      appliedRevision = revision;
      const seen = new Set<string>();
      for (const kv of res.kvs) {
        seen.add(kv.key.toString().slice(prefix.length));
        applyPut(kv);
      }
      for (const id of [...live.keys()]) if (!seen.has(id)) markDead(id);
    }
    const lease = session.leaseId();
    const mine = res.kvs.find((kv) => kv.key.toString() === selfKey);
    if (lease !== undefined && (!mine || mine.lease !== lease)) void publish();
    // Heartbeats: etcd's remaining TTL of each other node's lease says how long ago it was renewed.
    await Promise.all(
      [...live.entries()]
        .filter(([id]) => id !== session.nodeId)
        .map(async ([id, n]) => {
          try {
            const ttl = await session.run('lease_ttl', (e) => e.leaseClient.leaseTimeToLive({ ID: n.lease }));
            const remaining = Number(ttl.TTL);
            const granted = Number(ttl.grantedTTL);
            const current = live.get(id);
            if (!current || current.lease !== n.lease) return;
            current.expired = remaining <= 0;
            // Remaining counts whole seconds, rounded down: the renewal is at least this old.
            current.ageAtMeasure = Math.max(0, (granted - remaining - 1) * 1000);
            current.measuredAt = performance.now();
          } catch {
            // counted by run(); the node keeps its last measure
          }
        }),
    );
    changed();
  };

  const tick = () => {
    refreshTimer = setTimeout(async () => {
      try {
        await withTimeout(refresh(), config.refresh_interval_ms + 3 * config.etcd_timeout_ms, 'membership refresh');
      } catch (err) {
        log.debug({ err: errorMessage(err) }, 'Membership refresh failed.');
        changed();
      }
      if (started) tick();
    }, config.refresh_interval_ms);
  };

  return {
    name: 'cluster-membership',
    nodeId: session.nodeId,
    nodes: view,
    self: () => ({ ...reg, roles: [...reg.roles], partitions: [...reg.partitions] }),
    async update(patch) {
      if (patch.state !== undefined) reg.state = patch.state;
      if (patch.partitions !== undefined) reg.partitions = [...patch.partitions].sort((a, b) => a - b);
      if (started) await publish();
    },
    onChange(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    refresh,
    async start() {
      started = true;
      offUp = session.onUp(() => {
        log.info({ node: session.nodeId }, 'Registering this node in etcd.');
        void publish();
      });
      stopWatch = session.watchPrefix(prefix, {
        put(kv) {
          if (Number(kv.mod_revision) <= appliedRevision) return;
          appliedRevision = Number(kv.mod_revision);
          applyPut(kv);
          changed();
        },
        delete(kv) {
          if (Number(kv.mod_revision) <= appliedRevision) return;
          appliedRevision = Number(kv.mod_revision);
          markDead(kv.key.toString().slice(prefix.length));
          changed();
          // Our own key gone while our lease lives (deleted by hand, or a compaction race): write it again.
          if (kv.key.toString() === selfKey && session.isUp()) void publish();
        },
        resync() {
          // Counted by session.run; the periodic refresh follows.
          void refresh().catch((err: unknown) =>
            log.debug({ err: errorMessage(err) }, 'Membership refresh after a watch resync failed.'),
          );
        },
      });
      await publish();
      await refresh().catch((err) => log.warn({ err: errorMessage(err) }, 'The first membership read failed.'));
      tick();
    },
    async stop(deadline) {
      started = false;
      clearTimeout(refreshTimer);
      offUp?.();
      await stopWatch?.();
      // Only waits: publish logs and retries its own failures.
      if (writing) await writing.catch(() => undefined);
      // Leaving on purpose: delete our key so others see us gone now rather than after the lease TTL.
      if (session.isUp()) {
        const budget = Math.max(1, Math.min(config.etcd_timeout_ms, deadline - Date.now()));
        await withTimeout(
          session.run('deregister', (e) => e.delete().key(selfKey).exec()),
          budget,
          'deregister',
        ).catch((err) => log.warn({ err: errorMessage(err) }, 'Could not remove this node registration.'));
      }
    },
    health(): ComponentHealth {
      return session.connected() ? { ok: true } : { ok: false, detail: 'etcd unreachable: membership is stale' };
    },
  };
}
