import type { IKeyValue } from 'etcd3';
import type { Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { ClusterConfig } from './config.ts';
import { clusterMetrics } from './metrics.ts';
import type { Membership, NodeView } from './membership.ts';
import { type EtcdSession, withTimeout } from './session.ts';

/**
 * Receives this node's partition ownership. `onAcquire` gives the fencing token to stamp on every write
 * made for the partition (alerts carry it; the alert store refuses a token lower than one it has seen).
 * `onLose` must stop acting as owner before it returns; a promise it returns says when in-flight work for
 * the partition is finished (awaited, up to `handover_timeout_ms`, before a voluntary release).
 */
export interface OwnershipListener {
  onAcquire(partition: number, token: number): void | Promise<void>;
  onLose(partition: number): void | Promise<void>;
}

/** The owner of a partition in etcd. */
export interface PartitionOwner {
  partition: number;
  node: string;
  fencing_token: number;
  acquired_at: string;
}

/**
 * Ownership of the correlation partitions: each partition is a key `<prefix>partitions/<p>` created in a
 * transaction only when absent and attached to the owner's session lease. The key's create revision is the
 * fencing token: etcd revisions only grow, so every new owner's token is higher than any before it. A node
 * takes at most ceil(partitions / active detect nodes) and releases extras, one at a time, when nodes join.
 */
export interface PartitionManager extends Component {
  /** Number of partitions. */
  readonly count: number;
  /** The partition of a correlation group: a stable hash of tenant and group key. */
  partitionOf(tenant: string, key: string): number;
  /** Partitions owned now with their fencing tokens (empty once the session passed its local deadline). */
  owned(): Map<number, number>;
  /** The fencing token of an owned partition, checked now; undefined when not owned. */
  tokenOf(partition: number): number | undefined;
  /** Registers an ownership listener; it is told at once about partitions already owned. */
  subscribe(listener: OwnershipListener): () => void;
  /** Every partition's owner, read from etcd now. */
  owners(): Promise<PartitionOwner[]>;
  /**
   * Stops taking partitions and hands over every owned one, one at a time; resolves when none is owned (or
   * when resume() cuts the drain short).
   */
  drain(): Promise<void>;
  /** Takes partitions again by the balancing rule after drain(). */
  resume(): void;
  /** Runs one ownership pass now (acquire up to the quota, release extras). */
  reconcile(): Promise<void>;
  /** The most partitions this node should own now. */
  quota(): number;
}

/** FNV-1a, 32 bits: stable across processes and versions, which a partition map must be. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The partition (0 .. partitions-1) of a correlation group key within a tenant. */
export function partitionOf(tenant: string, key: string, partitions: number): number {
  return fnv1a(`${tenant}\u0000${key}`) % partitions;
}

/** Whether a node runs detection (and so takes partitions). */
export function runsDetect(roles: readonly string[]): boolean {
  return roles.includes('detect') || roles.includes('all');
}

/**
 * The most partitions one node takes: ceil(partitions / nodes that take partitions), counting the nodes that
 * are not Dead, run detect and are not in maintenance, plus this node when it takes partitions itself.
 */
export function partitionQuota(partitions: number, nodes: readonly NodeView[], self: string, selfTakes: boolean) {
  const takers = new Set(
    nodes.filter((n) => n.state !== 'Dead' && n.maintenance === 'active' && runsDetect(n.roles)).map((n) => n.id),
  );
  if (!selfTakes) return 0;
  takers.add(self);
  return Math.ceil(partitions / Math.max(1, takers.size));
}

interface KeyInfo {
  node: string;
  token: number;
  lease: string;
  acquired_at: string;
}

/** Creates the partition manager; `participate` is false on nodes without the detect role (owners() only). */
export function createPartitionManager(
  config: ClusterConfig,
  deps: {
    session: EtcdSession;
    membership: Membership;
    participate: boolean;
    metrics: Registry;
    logger: Logger;
  },
): PartitionManager {
  const { session, membership } = deps;
  const log = deps.logger.child({ component: 'cluster-partitions' });
  const metrics = clusterMetrics(deps.metrics);
  const prefix = `${config.key_prefix}partitions/`;
  const nodesPrefix = `${config.key_prefix}nodes/`;
  const P = config.partitions;
  const self = session.nodeId;
  const owned = new Map<number, number>();
  const listeners = new Set<OwnershipListener>();
  // The last owner seen for each partition, to tell a failover (owner's lease expired) from a handover.
  const lastOwner = new Map<number, { node: string; lease: string }>();
  // Partitions are tried from a node-specific offset so that nodes racing for free ones collide less.
  const offset = P > 0 ? fnv1a(self) % P : 0;
  let draining = false;
  let started = false;
  let running: Promise<void> | undefined;
  let again = false;
  let lastQuota = -1;
  let timer: NodeJS.Timeout | undefined;
  let stopWatch: (() => Promise<void>) | undefined;
  const offs: (() => void)[] = [];
  const drainWaiters = new Set<() => void>();

  const keyOf = (p: number) => `${prefix}${p}`;

  const parse = (kv: IKeyValue): [number, KeyInfo] | undefined => {
    const p = Number(kv.key.toString().slice(prefix.length));
    if (!Number.isInteger(p) || p < 0) return undefined;
    let node = '';
    let acquired_at = '';
    try {
      const v = JSON.parse(kv.value.toString()) as { node?: string; acquired_at?: string };
      node = String(v.node ?? '');
      acquired_at = String(v.acquired_at ?? '');
    } catch {
      log.warn({ key: kv.key.toString() }, 'A partition key holds no owner record.');
    }
    return [p, { node, token: Number(kv.create_revision), lease: kv.lease, acquired_at }];
  };

  const publishOwned = () => {
    metrics.partitionsOwned.set(owned.size);
    // Only observes: membership's writer logs and retries its own failures.
    void membership.update({ partitions: [...owned.keys()] }).catch(() => undefined);
    if (owned.size === 0) for (const w of drainWaiters) w();
  };

  const call = (what: string, fn: () => void | Promise<void>): Promise<void> => {
    try {
      return Promise.resolve(fn()).catch((err) => log.error({ err: errorMessage(err) }, `An ${what} listener failed.`));
    } catch (err) {
      log.error({ err: errorMessage(err) }, `An ${what} listener failed.`);
      return Promise.resolve();
    }
  };

  const tellAcquire = (p: number, token: number) => {
    for (const l of listeners) void call('onAcquire', () => l.onAcquire(p, token));
  };

  /** Drops ownership locally first (tokenOf answers undefined at once), then tells the listeners. */
  const dropLocal = (p: number): Promise<void> => {
    owned.delete(p);
    const done = Promise.all([...listeners].map((l) => call('onLose', () => l.onLose(p)))).then(() => undefined);
    publishOwned();
    return done;
  };

  const quota = () => (draining ? 0 : partitionQuota(P, membership.nodes(), self, deps.participate));

  const release = async (p: number, token: number, why: string) => {
    log.info({ partition: p, fencing_token: token, why }, 'Handing over a partition.');
    const flushed = dropLocal(p);
    await withTimeout(flushed, Math.max(1, config.handover_timeout_ms), `partition ${p} handover`).catch((err) =>
      log.warn({ partition: p, err: errorMessage(err) }, 'A partition owner did not finish in time; releasing anyway.'),
    );
    // Delete only our own incarnation of the key (same create revision = same token).
    await session.run('partition_release', (e) =>
      e
        .if(keyOf(p), 'Create', '==', token)
        .then(e.delete().key(keyOf(p)))
        .commit(),
    );
  };

  const acquire = async (p: number, lease: string, generation: number): Promise<boolean> => {
    const prev = lastOwner.get(p);
    const value = JSON.stringify({ node: self, acquired_at: new Date().toISOString() });
    const res = await session.run('partition_acquire', (e) => {
      const then = [e.put(keyOf(p)).value(value).lease(lease)];
      const ops = prev && prev.node !== self ? [...then, e.get(`${nodesPrefix}${prev.node}`)] : then;
      return e
        .if(keyOf(p), 'Create', '==', 0)
        .then(...ops)
        .commit();
    });
    if (!res.succeeded) return false;
    const token = Number(res.header.revision);
    if (session.generation() !== generation || !session.isUp()) {
      // The lease was lost while the transaction was in flight: the key dies with it (or is cleaned up as
      // stale after the next grant); never act on it.
      return false;
    }
    owned.set(p, token);
    lastOwner.set(p, { node: self, lease });
    if (prev && prev.node !== self) {
      const node = res.responses[1]?.response_range?.kvs?.[0];
      // The previous owner's registration is gone or belongs to a newer lease: its lease expired.
      if (!node || node.lease !== prev.lease) metrics.failovers.inc();
    }
    log.info({ partition: p, fencing_token: token }, 'Acquired a partition.');
    tellAcquire(p, token);
    publishOwned();
    return true;
  };

  const pass = async () => {
    if (!started) return;
    const lease = session.leaseId();
    if (lease === undefined) return;
    const generation = session.generation();
    const res = await session.run('partitions_read', (e) => e.getAll().prefix(prefix).exec());
    if (session.generation() !== generation) return;
    const keys = new Map<number, KeyInfo>();
    for (const kv of res.kvs) {
      const parsed = parse(kv);
      if (!parsed || parsed[0] >= P) continue;
      keys.set(parsed[0], parsed[1]);
      lastOwner.set(parsed[0], { node: parsed[1].node, lease: parsed[1].lease });
    }
    // etcd is the truth: a key of ours that changed or vanished (deleted by hand) is no longer ours.
    for (const [p, token] of [...owned]) {
      const k = keys.get(p);
      if (!k || k.token !== token) {
        log.warn(
          { partition: p, fencing_token: token },
          'A partition key of this node changed in etcd; no longer its owner.',
        );
        void dropLocal(p);
      }
    }
    const q = quota();
    for (const [p, k] of keys) {
      if (k.node !== self || owned.has(p)) continue;
      if (k.lease === lease && owned.size < q) {
        // Created by a transaction whose answer we missed (a timeout): it is ours.
        owned.set(p, k.token);
        tellAcquire(p, k.token);
        publishOwned();
      } else {
        // Ours from an earlier lease (whose loss we already acted on), or one whose release failed half-way
        // (listeners already told): free it for the next owner now.
        await session
          .run('partition_release', (e) =>
            e
              .if(keyOf(p), 'Create', '==', k.token)
              .then(e.delete().key(keyOf(p)))
              .commit(),
          )
          .catch((err: unknown) =>
            // Counted by session.run; the next pass reads the key again and retries.
            log.warn({ partition: p, err: errorMessage(err) }, 'Freeing a stale partition key failed; retrying.'),
          );
        keys.delete(p);
      }
    }
    lastQuota = q;
    if (owned.size > q) {
      // One at a time: the next pass (right after) releases the next one.
      const p = Math.max(...owned.keys());
      await release(p, owned.get(p)!, draining ? 'maintenance drain' : `over quota ${q}`);
      if (owned.size > q) again = true;
      return;
    }
    for (let i = 0; i < P && owned.size < q; i++) {
      const p = (offset + i) % P;
      if (keys.has(p) || owned.has(p)) continue;
      if (session.generation() !== generation || !session.isUp()) return;
      await acquire(p, lease, generation);
    }
  };

  /** Runs passes one at a time; a request during a pass runs another right after it. */
  const reconcile = (): Promise<void> => {
    again = true;
    if (running) return running;
    running = (async () => {
      while (again && started) {
        again = false;
        try {
          await pass();
        } catch (err) {
          log.warn({ err: errorMessage(err) }, 'A partition ownership pass failed.');
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
    name: 'cluster-partitions',
    count: P,
    partitionOf: (tenant, key) => partitionOf(tenant, key, P),
    owned: () => (session.isUp() ? new Map(owned) : new Map()),
    tokenOf: (p) => (session.isUp() ? owned.get(p) : undefined),
    subscribe(l) {
      listeners.add(l);
      if (session.isUp()) for (const [p, token] of owned) void call('onAcquire', () => l.onAcquire(p, token));
      return () => listeners.delete(l);
    },
    async owners() {
      const res = await session.run('partitions_read', (e) => e.getAll().prefix(prefix).exec());
      const out: PartitionOwner[] = [];
      for (const kv of res.kvs) {
        const parsed = parse(kv);
        if (!parsed) continue;
        const [p, k] = parsed;
        out.push({ partition: p, node: k.node, fencing_token: k.token, acquired_at: k.acquired_at });
      }
      return out.sort((a, b) => a.partition - b.partition);
    },
    async drain() {
      draining = true;
      if (owned.size === 0) return;
      const empty = new Promise<void>((resolve) => {
        const done = () => {
          drainWaiters.delete(done);
          resolve();
        };
        drainWaiters.add(done);
      });
      void reconcile();
      await empty;
    },
    resume() {
      draining = false;
      // A drain cut short by resume() is over as well.
      for (const w of [...drainWaiters]) w();
      void reconcile();
    },
    reconcile,
    quota,
    async start() {
      started = true;
      if (!deps.participate) return;
      offs.push(
        // Losing the session: stop acting as owner now, without waiting for anyone (the lease may expire soon).
        session.onDown((reason) => {
          if (owned.size === 0) return;
          log.warn({ partitions: [...owned.keys()], reason }, 'Dropping every partition: the etcd session is lost.');
          for (const p of [...owned.keys()]) void dropLocal(p);
        }),
        session.onUp(() => void reconcile()),
        membership.onChange(() => {
          if (quota() !== lastQuota) void reconcile();
        }),
      );
      stopWatch = session.watchPrefix(prefix, {
        put(kv) {
          const parsed = parse(kv);
          if (parsed) lastOwner.set(parsed[0], { node: parsed[1].node, lease: parsed[1].lease });
        },
        // A freed partition: take it now if under quota (the fast path of a takeover).
        delete: () => void reconcile(),
        resync: () => void reconcile(),
      });
      await reconcile();
      tick();
    },
    async stop(deadline) {
      started = false;
      clearTimeout(timer);
      for (const off of offs.splice(0)) off();
      await stopWatch?.();
      if (running) await running;
      // Leaving on purpose: hand every partition over so others need not wait for the lease to expire.
      for (const [p, token] of [...owned]) {
        if (Date.now() >= deadline || !session.isUp()) {
          void dropLocal(p);
          continue;
        }
        await release(p, token, 'node stopping').catch((err) =>
          log.warn({ partition: p, err: errorMessage(err) }, 'Could not release a partition; its lease will expire.'),
        );
      }
    },
    health(): ComponentHealth {
      if (!deps.participate) return { ok: true };
      return session.isUp() ? { ok: true } : { ok: false, detail: 'no etcd session: owning no partition' };
    },
  };
}
