import { performance } from 'node:perf_hooks';
import { Etcd3, type IKeyValue, type IOptions, type Watcher } from 'etcd3';
import type { Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { redactUrl } from '../lib/redact.ts';
import type { ClusterConfig } from './config.ts';
import { ClusterError } from './errors.ts';
import { type ClusterMetrics, clusterMetrics, reportLeaseRemaining } from './metrics.ts';
import { withTimeout as timeout } from '../lib/deadline.ts';
import { backoffDelay, sleep } from '../lib/retry.ts';

/** A change under a watched prefix. */
export interface WatchHandlers {
  put(kv: IKeyValue): void;
  delete(kv: IKeyValue): void;
  /** The watch (re)connected: events may have been missed, re-read the prefix. */
  resync(): void;
}

/**
 * This node's session with etcd: one lease, renewed in the background, that every key the node writes
 * (its registration, the partitions it owns) is attached to. The session is "up" only while the lease is
 * certainly alive in etcd: it goes down at a local deadline, `lease_safety_margin_ms` before the earliest
 * moment etcd could expire it, so an owner stops acting before anyone else can acquire what it held.
 * After a loss it grants a new lease and says so with `onUp`.
 */
export interface EtcdSession extends Component {
  readonly nodeId: string;
  /** The configured key prefix, ending in "/". */
  readonly prefix: string;
  /** The live lease's id (decimal), undefined while the session is down. */
  leaseId(): string | undefined;
  /** Whether the lease is up and within its local deadline, checked now (not by a timer). */
  isUp(): boolean;
  /** Counts session losses: compare before and after an await to know the lease is the same one. */
  generation(): number;
  /** Milliseconds before the local deadline (0 when down). */
  remainingMs(): number;
  /** Whether etcd answered this node within `suspect_after_ms` (false: the problem may be ours). */
  connected(): boolean;
  /** Milliseconds since etcd last renewed our lease (Infinity before the first). */
  heartbeatAgeMs(): number;
  /** Called with the new lease id whenever a lease is granted. */
  onUp(listener: (leaseId: string) => void): () => void;
  /** Called synchronously when the session is lost; listeners must stop acting on leased keys at once. */
  onDown(listener: (reason: string) => void): () => void;
  /** Runs one etcd call, counting a failure in `vigil_cluster_etcd_errors_total{op}`. */
  run<T>(op: string, fn: (etcd: Etcd3) => Promise<T>): Promise<T>;
  /** Watches a key prefix until the returned function is called; re-creates the watch after errors. */
  watchPrefix(prefix: string, handlers: WatchHandlers): () => Promise<void>;
}

type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;

/** Watch reconnects double from `ms` up to `max` (the client's default waits up to 30 s). */
function cappedBackoff(ms: number, max: number): WatchBackoff {
  return { duration: ms, next: () => cappedBackoff(Math.min(ms * 2, max), max) };
}

const now = () => performance.now();
/** Rejects with a ClusterError when `p` takes longer than `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return timeout(p, ms, () => new ClusterError('etcd_unavailable', `${what}: no answer within ${ms} ms`));
}

/** Creates the session; nothing is opened until start(). */
export function createEtcdSession(
  config: ClusterConfig,
  deps: { nodeId: string; metrics: Registry; logger: Logger },
): EtcdSession {
  const log = deps.logger.child({ component: 'cluster-etcd' });
  const metrics: ClusterMetrics = clusterMetrics(deps.metrics);
  const ttlSeconds = config.lease_ttl_ms / 1000;
  const upListeners = new Set<(leaseId: string) => void>();
  const downListeners = new Set<(reason: string) => void>();
  let etcd: Etcd3 | undefined;
  let lease: string | undefined;
  let gen = 0;
  let validUntil = 0;
  let lastRenewal = Number.NEGATIVE_INFINITY;
  let lastContact = Number.NEGATIVE_INFINITY;
  let stopped = false;
  let deadlineTimer: NodeJS.Timeout | undefined;
  let keepaliveTimer: NodeJS.Timeout | undefined;
  let lastKeepaliveError = 0;

  const client = (): Etcd3 => {
    if (!etcd) throw new ClusterError('cluster_not_started', 'the etcd session is not started', { retryable: false });
    return etcd;
  };

  const run = async <T>(op: string, fn: (e: Etcd3) => Promise<T>): Promise<T> => {
    try {
      const res = await fn(client());
      lastContact = now();
      return res;
    } catch (err) {
      metrics.etcdErrors.inc({ op });
      throw err;
    }
  };

  const emit = <A>(listeners: Set<(a: A) => void>, arg: A, what: string) => {
    for (const l of listeners) {
      try {
        l(arg);
      } catch (err) {
        log.error({ err: errorMessage(err), listener: what }, 'A cluster session listener failed.');
      }
    }
  };

  const isUp = () => lease !== undefined && now() < validUntil;

  const armDeadline = () => {
    clearTimeout(deadlineTimer);
    if (lease === undefined) return;
    deadlineTimer = setTimeout(
      () => {
        if (lease !== undefined && now() >= validUntil) {
          lose('no lease renewal was answered in time; the lease may expire in etcd');
        } else armDeadline();
      },
      Math.max(0, validUntil - now()),
    );
  };

  /** `sentAt` is when the request left: etcd's expiry is at least sentAt + its TTL, in etcd's clock. */
  const extend = (sentAt: number, grantedTtlSeconds: number) => {
    const until = sentAt + grantedTtlSeconds * 1000 - config.lease_safety_margin_ms;
    lastRenewal = sentAt;
    if (until > validUntil) {
      validUntil = until;
      armDeadline();
    }
  };

  const lose = (reason: string) => {
    if (lease === undefined) return;
    const old = lease;
    lease = undefined;
    validUntil = 0;
    gen++;
    clearTimeout(deadlineTimer);
    clearTimeout(keepaliveTimer);
    metrics.leaseRemaining.set(0);
    metrics.leaseLosses.inc();
    log.warn({ lease: old, reason }, 'The etcd session was lost; this node stops acting on its leases.');
    emit(downListeners, reason, 'down');
    // Revoking frees what the old lease held at once instead of after its TTL; it fails harmlessly when
    // etcd is unreachable (the lease then expires by itself).
    if (etcd) {
      const e = etcd;
      void withTimeout(e.leaseClient.leaseRevoke({ ID: old }), config.etcd_timeout_ms, 'lease revoke').catch(
        () => undefined,
      );
    }
    if (!stopped) void grantLoop(gen);
  };

  /** One renewal: a keepalive stream carrying one request, answered or failed within etcd_timeout_ms. */
  const keepaliveOnce = async (id: string): Promise<number> => {
    const stream = await client().leaseClient.leaseKeepAlive({ deadline: Date.now() + config.etcd_timeout_ms });
    let done = false;
    const answer = new Promise<number>((resolve, reject) => {
      stream.on('data', (res) => {
        done = true;
        resolve(Number(res.TTL));
      });
      stream.on('error', reject);
      stream.on('end', () => reject(new Error('keepalive stream ended without an answer')));
      stream.write({ ID: id });
    });
    try {
      return await withTimeout(answer, config.etcd_timeout_ms, 'lease keepalive');
    } finally {
      if (done) stream.end();
      else stream.cancel();
    }
  };

  /** Renews every keepalive_interval_ms; after a failure, retries sooner (another member may answer). */
  const keepaliveLoop = (g: number, delayMs = config.keepalive_interval_ms) => {
    keepaliveTimer = setTimeout(async () => {
      if (g !== gen || stopped || lease === undefined) return;
      const id = lease;
      const sentAt = now();
      let next = config.keepalive_interval_ms;
      try {
        const ttl = await keepaliveOnce(id);
        lastContact = now();
        if (g !== gen) return;
        if (ttl <= 0) return lose('etcd reports the lease expired');
        extend(sentAt, ttl);
      } catch (err) {
        metrics.etcdErrors.inc({ op: 'keepalive' });
        next = Math.min(100, config.keepalive_interval_ms);
        // One line per second at most: an outage would otherwise log at the retry rate.
        if (now() - lastKeepaliveError > 1000) {
          lastKeepaliveError = now();
          log.warn({ err: errorMessage(err), remaining_ms: Math.round(validUntil - now()) }, 'A lease renewal failed.');
        }
      }
      if (g === gen && !stopped) keepaliveLoop(g, next);
    }, delayMs);
  };

  const grantLoop = async (g: number) => {
    const backoff = { initialMs: 100, maxMs: Math.max(200, config.lease_ttl_ms / 2) };
    for (let attempt = 0; !stopped && g === gen; attempt++) {
      const sentAt = now();
      try {
        const res = await run('lease_grant', (e) =>
          e.leaseClient.leaseGrant({ TTL: ttlSeconds }, { deadline: Date.now() + config.etcd_timeout_ms }),
        );
        if (stopped || g !== gen) {
          // Best effort: an unused lease that is not revoked expires at its TTL.
          void client()
            .leaseClient.leaseRevoke({ ID: res.ID })
            .catch((err: unknown) =>
              log.debug({ lease: res.ID, err: errorMessage(err) }, 'Revoking an unused etcd lease failed.'),
            );
          return;
        }
        lease = res.ID;
        validUntil = 0;
        extend(sentAt, Number(res.TTL));
        log.info({ lease: lease, ttl_s: Number(res.TTL) }, 'An etcd lease was granted to this node.');
        keepaliveLoop(g);
        emit(upListeners, lease, 'up');
        return;
      } catch (err) {
        const delay = backoffDelay(attempt, backoff);
        if (delay >= 800) log.warn({ err: errorMessage(err) }, 'Could not get an etcd lease; retrying.');
        await sleep(delay);
      }
    }
  };

  return {
    name: 'cluster-etcd',
    nodeId: deps.nodeId,
    prefix: config.key_prefix,
    leaseId: () => (isUp() ? lease : undefined),
    isUp,
    generation: () => gen,
    remainingMs: () => (isUp() ? validUntil - now() : 0),
    connected: () => isUp() && now() - lastContact < config.suspect_after_ms,
    heartbeatAgeMs: () => now() - lastRenewal,
    onUp(l) {
      upListeners.add(l);
      return () => upListeners.delete(l);
    },
    onDown(l) {
      downListeners.add(l);
      return () => downListeners.delete(l);
    },
    run,
    watchPrefix(prefix, handlers) {
      let closed = false;
      let current: Watcher | undefined;
      const open = () => {
        if (closed || stopped) return;
        current = client().watch().prefix(prefix).watcher();
        const w = current;
        w.on('put', (kv) => handlers.put(kv));
        w.on('delete', (kv) => handlers.delete(kv));
        w.on('connected', () => handlers.resync());
        w.on('disconnected', () => metrics.etcdErrors.inc({ op: 'watch' }));
        // A cancelled watch (for instance after compaction) is gone for good: open a new one.
        w.on('error', (err) => {
          metrics.etcdErrors.inc({ op: 'watch' });
          log.warn({ prefix, err: errorMessage(err) }, 'An etcd watch failed; opening it again.');
          // Best effort: the failure is logged above and a new watch opens.
          void w.cancel().catch(() => undefined);
          setTimeout(open, config.refresh_interval_ms);
        });
      };
      open();
      return async () => {
        closed = true;
        // Best effort: a watch that does not cancel in time ends with the client at stop.
        if (current) {
          await withTimeout(current.cancel(), config.etcd_timeout_ms, 'watch cancel').catch((err: unknown) =>
            log.debug({ prefix, err: errorMessage(err) }, 'Cancelling an etcd watch failed.'),
          );
        }
      };
    },
    async start() {
      stopped = false;
      etcd = new Etcd3({
        hosts: config.etcd_endpoints,
        dialTimeout: config.connect_timeout_ms,
        defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + config.etcd_timeout_ms }),
        faultHandling: { watchBackoff: cappedBackoff(100, config.refresh_interval_ms) },
      });
      const first = new Promise<void>((resolve) => {
        const once = () => {
          upListeners.delete(once);
          resolve();
        };
        upListeners.add(once);
      });
      void grantLoop(gen);
      try {
        await withTimeout(
          first,
          config.connect_timeout_ms,
          `etcd at ${config.etcd_endpoints.map(redactUrl).join(', ')}`,
        );
      } catch (err) {
        stopped = true;
        gen++;
        etcd.close();
        etcd = undefined;
        throw new ClusterError(
          'etcd_unavailable',
          `no etcd lease within ${config.connect_timeout_ms} ms from ${config.etcd_endpoints.map(redactUrl).join(', ')}`,
          { cause: err },
        );
      }
      reportLeaseRemaining(deps.metrics, () => Math.max(0, (validUntil - now()) / 1000));
    },
    async stop(deadline) {
      stopped = true;
      clearTimeout(keepaliveTimer);
      clearTimeout(deadlineTimer);
      const old = lease;
      lease = undefined;
      validUntil = 0;
      gen++;
      metrics.leaseRemaining.set(0);
      if (old !== undefined) emit(downListeners, 'the node is stopping', 'down');
      if (etcd && old !== undefined) {
        const budget = Math.max(1, Math.min(config.etcd_timeout_ms, deadline - Date.now()));
        await withTimeout(etcd.leaseClient.leaseRevoke({ ID: old }), budget, 'lease revoke').catch((err) =>
          log.warn({ err: errorMessage(err) }, 'Could not revoke the etcd lease; it will expire by itself.'),
        );
      }
      etcd?.close();
      etcd = undefined;
    },
    health(): ComponentHealth {
      if (isUp()) return { ok: true };
      return { ok: false, detail: stopped ? 'stopped' : 'no etcd lease' };
    },
  };
}
