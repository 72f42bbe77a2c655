/**
 * The alert store of a cluster: alerts, fences and status changes are records of one replicated stream
 * (VIGIL_ALERTS), and every node applies them in stream order to its own alert table. The stream is the
 * single order all replicas agree on, so they all refuse the same stale alerts: a new partition owner
 * publishes a fence with its token before its first alert, and an alert with a lower token published after
 * it is refused everywhere. `Nats-Msg-Id` is the alert id (a replayed alert is stored once in the stream's
 * duplicate window, and once in the table after it: ids are deterministic).
 */
import type { ComponentHealth } from '../../lib/component.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { type Alert, type AlertStatus, type AlertStore, EPOCH_FENCE, epochSincePartition } from '../alerts/index.ts';
import type { RecordConsumer, RecordStream, StreamRecord } from './records.ts';

type AlertRecord =
  | { type: 'alert'; alert: Alert }
  | { type: 'fence'; partition: string; token: number }
  /**
   * An activated site's epoch, published before its first alert: a lower epoch's alerts raised at or after
   * `since` (the activation, epoch ms) are refused; without `since` (older nodes), all that come after it.
   */
  | { type: 'epoch'; site: string; epoch: number; since?: number }
  | { type: 'status'; id: string; tenants: string[]; status: AlertStatus; updated: number };

/** The replicated alert store: writes go to the stream, reads to this node's table. */
export interface AlertLog extends AlertStore {
  stop(): Promise<void>;
  /** Stream sequence applied to this node's table. */
  applied(): number;
  /**
   * Two sites: publishes this site's epoch and when it began (after an activation, before the first alert),
   * so that every replica of both sites refuses the alerts a lower epoch raised from then on.
   */
  fenceEpoch(epoch: number, since: number): Promise<void>;
  /** Two sites: the peer's alert records not yet copied here or applied to this node's table. */
  behind(): Promise<number>;
}

/** The site of a two-site deployment, as the alert log needs it. */
export interface AlertLogSite {
  name: string;
  /** The epoch stamped on this site's alerts. */
  epoch(): number;
}

/** Creates it over the node's local alert table (`local`), consumed as `alerts-<nodeId>`. */
export function createAlertLog(
  local: AlertStore,
  deps: { records: RecordStream; nodeId: string; logger: Logger; applyTimeoutMs?: number; site?: AlertLogSite },
): AlertLog {
  const { records, site } = deps;
  // Two sites: correlation partitions and their fencing tokens are per site (each site's etcd counts its
  // own), so a partition is named with its site, and one site's fences never refuse the other's alerts.
  // Consumer names allow letters, digits, - and _ only; a node id may be a dotted host name.
  const consumerName = `alerts-${deps.nodeId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const scoped = (partition: string) => (site ? `${site.name}/${partition}` : partition);
  let consumer: RecordConsumer | undefined;
  let applied = 0;
  const waiters = new Set<{ seq: number; resolve: () => void }>();

  const apply = async (batch: StreamRecord<AlertRecord>[]) => {
    // Consecutive alerts go to the table together; fences and status changes apply in their place.
    let run: Alert[] = [];
    const flush = async () => {
      if (run.length > 0) await local.save(run);
      run = [];
    };
    for (const r of batch) {
      const v = r.value;
      if (v.type === 'alert') {
        run.push(v.alert);
        continue;
      }
      await flush();
      if (v.type === 'fence') await local.fence(v.partition, v.token);
      else if (v.type === 'epoch') {
        // The start first: an alert checked between the two records is judged by the start, not refused.
        if (v.since) await local.fence(epochSincePartition(v.epoch), v.since);
        await local.fence(EPOCH_FENCE, v.epoch);
      } else if (v.type === 'status') {
        await local.setStatus(v.id, v.tenants, v.status, v.updated).catch((err: unknown) => {
          // An alert this replica never stored (removed by retention) cannot change status; nothing to do.
          deps.logger.warn({ alert: v.id, err: String(err) }, 'A status change names an unknown alert.');
        });
      }
    }
    await flush();
    applied = batch[batch.length - 1].seq;
    for (const w of [...waiters]) {
      if (w.seq <= applied) {
        waiters.delete(w);
        w.resolve();
      }
    }
  };

  /** Resolves once this node applied `seq` (or after the timeout: the caller answers with what it has). */
  const appliedUpTo = (seq: number) =>
    new Promise<void>((resolve) => {
      if (applied >= seq) return resolve();
      const w = { seq, resolve };
      waiters.add(w);
      setTimeout(() => {
        waiters.delete(w);
        resolve();
      }, deps.applyTimeoutMs ?? 5000).unref();
    });

  return {
    async start() {
      await local.start();
      // With two sites the stream also holds the peer's records (sourced): the table applies both.
      // This node's own consumer, and applying a record twice is harmless (alerts by id, fences by max).
      consumer = records.consume<AlertRecord>(consumerName, apply, {
        remakeUnacked: true,
        filterSubject: site ? undefined : records.subject,
      });
    },
    async stop() {
      await consumer?.stop();
      consumer = undefined;
    },
    applied: () => applied,
    async save(input) {
      const epoch = site?.epoch();
      // Two sites: an alert this table holds already was raised by the peer before this site took over
      // (a site activated again detects from its own position): ids are deterministic, so it is the same
      // alert, linked and notified there; published again it would be notified twice.
      const held = site && local.known ? await local.known(input.map((a) => a.id)) : undefined;
      const alerts = site
        ? input
            .filter((a) => !held?.has(a.id))
            .map((a) => ({ ...a, partition: scoped(a.partition), ...(epoch ? { epoch } : {}) }))
        : input;
      // Concurrent publishes: their order does not matter, a fence was acknowledged before any of them.
      for (let i = 0; i < alerts.length; i += 256) {
        await Promise.all(
          alerts
            .slice(i, i + 256)
            .map((a) => records.publish(records.subject, { type: 'alert', alert: a }, `alert:${a.id}`)),
        );
      }
      return alerts;
    },
    async fence(raw, token) {
      const partition = scoped(raw);
      await records.publish(records.subject, { type: 'fence', partition, token }, `fence:${partition}:${token}`);
    },
    async fenceEpoch(epoch, since) {
      if (!site) return;
      await records.publish(
        records.subject,
        { type: 'epoch', site: site.name, epoch, since },
        `epoch:${site.name}:${epoch}`,
      );
    },
    list: (filter) => local.list(filter),
    get: (id, tenants) => local.get(id, tenants),
    async setStatus(id, tenants, status) {
      // Checked here so that an unknown id answers 404 rather than a record nobody can apply.
      const current = await local.get(id, tenants);
      if (!current) return local.setStatus(id, tenants, status);
      const updated = Date.now();
      const seq = await records.publish(
        records.subject,
        { type: 'status', id, tenants, status, updated },
        `status:${id}:${status}:${updated}`,
      );
      await appliedUpTo(seq);
      return { ...current, status };
    },
    onAlert: (listener) => local.onAlert(listener),
    known: local.known ? (ids) => (local.known as (ids: string[]) => Promise<Set<string>>)(ids) : undefined,
    async behind() {
      await records.ensure();
      const copy = (await records.sourceLags()).reduce((n, l) => n + l.lag, 0);
      const pending = await records.consumerPending(consumerName);
      return copy + (pending ?? 0);
    },
  };
}

/**
 * A durable consumer of the alert stream (incidents, notify in a cluster): each batch of alert records is
 * handed to `handle` and acknowledged only after `handle` committed it; a failure or an overload is retried
 * (the stream redelivers; nothing is skipped), and fences and status changes are passed over.
 */
export function createAlertStreamConsumer(opts: {
  records: RecordStream;
  /** The durable name: shared by every node of one database, or one per node with a database per node. */
  durable: string;
  handle: (alerts: Alert[]) => Promise<unknown>;
  /**
   * Two sites: true for an alert this consumer must pass over (a lower epoch than this site's: raised
   * before a failover and never handed over then, it would reach incidents or a receiver late, twice).
   */
  stale?: (alert: Alert) => boolean;
}): { name: string; start(): Promise<void>; stop(): Promise<void>; health(): ComponentHealth } {
  let consumer: RecordConsumer | undefined;
  // The last failure of `handle` until a batch commits: health says degraded meanwhile (as the local
  // consumer's does), and the stream redelivers the batch.
  let failingSince: number | undefined;
  let lastFailure: string | undefined;
  return {
    name: `${opts.durable}-alerts`,
    async start() {
      consumer = opts.records.consume<AlertRecord>(
        opts.durable.replace(/[^A-Za-z0-9_-]/g, '_'),
        async (batch) => {
          const alerts = batch.flatMap((r) =>
            r.value.type === 'alert' && !opts.stale?.(r.value.alert) ? [r.value.alert] : [],
          );
          if (alerts.length > 0) {
            try {
              await opts.handle(alerts);
            } catch (err) {
              failingSince ??= Date.now();
              lastFailure = errorMessage(err);
              throw err;
            }
          }
          failingSince = undefined;
          lastFailure = undefined;
        },
        { filterSubject: opts.records.subject },
      );
    },
    async stop() {
      await consumer?.stop();
      consumer = undefined;
    },
    health(): ComponentHealth {
      if (failingSince === undefined) return { ok: true };
      const seconds = Math.round((Date.now() - failingSince) / 1000);
      return { ok: true, detail: `degraded: committing alerts: ${lastFailure}; retrying for ${seconds} s` };
    },
  };
}
