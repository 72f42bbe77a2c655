import { createHash } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { AlertPosition } from '../../db/index.ts';
import { VigilError } from '../../lib/errors.ts';
import type { FieldValue } from '../../lib/event.ts';
import { counter } from '../../lib/metrics.ts';
import type { EventStore } from '../../store/index.ts';
import { engineTimeToIso } from '../../store/rows.ts';
import type { Logger } from '../../lib/logger.ts';
import { ALERTS_DDL, ALERTS_EPOCH_DDL, ALERTS_TABLE, FENCES_DDL, FENCES_TABLE } from './schema.ts';

export const ALERT_STATUSES = ['new', 'acknowledged', 'closed'] as const;
export type AlertStatus = (typeof ALERT_STATUSES)[number];

/** An alert: a rule (or correlation) that fired, on which events, with what it saw. */
export interface Alert {
  id: string;
  /** Time of the (last) triggering event, epoch ms. */
  timestamp: number;
  created: number;
  tenant: string;
  kind: 'rule' | 'correlation';
  rule: { id: string; title: string; level: string; tags: string[] };
  host: string;
  status: AlertStatus;
  matched: Record<string, FieldValue>;
  eventIds: string[];
  /** Correlation partition that produced it and its owner's fencing token (0 in a single node). */
  partition: string;
  fencingToken: number;
  /**
   * The epoch of the site that raised it (two sites, `cluster.site`): an alert of an epoch lower than one
   * fenced before it (EPOCH_FENCE), raised at or after that epoch began, comes from a site that was replaced
   * as active, and is refused. One raised before (a site lost with alerts not yet copied) is history: kept.
   */
  epoch?: number;
}

/**
 * The pseudo-partition whose fence is the greatest site epoch seen: an activated site fences it with its
 * epoch before its first alert, so the alerts of a returning old site (a lower epoch) are refused after it.
 */
export const EPOCH_FENCE = '~site-epoch';

/** The pseudo-partition whose token is when site epoch `epoch` began (epoch ms). */
export function epochSincePartition(epoch: number): string {
  return `${EPOCH_FENCE}-since/${epoch}`;
}

/**
 * When the first epoch above `epoch` began, from the fences seen: an alert of `epoch` raised from then on
 * is stale. 0 when no epoch above has a known start (fenced by older nodes): every such alert is stale.
 */
function replacedAt(highestToken: ReadonlyMap<string, number>, epoch: number): number {
  const prefix = epochSincePartition(0).slice(0, -1);
  let earliest = Number.POSITIVE_INFINITY;
  for (const [partition, since] of highestToken) {
    if (partition.startsWith(prefix) && Number(partition.slice(prefix.length)) > epoch) {
      earliest = Math.min(earliest, since);
    }
  }
  return Number.isFinite(earliest) ? earliest : 0;
}

/** Filters of GET /api/v1/alerts. */
export interface AlertFilter {
  tenants: string[];
  from?: number;
  to?: number;
  rule?: string;
  level?: string;
  host?: string;
  status?: string;
  limit: number;
}

/** Alert ids are deterministic: the same rule on the same events is the same alert, on any node. */
export function alertId(parts: readonly string[]): string {
  return createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 32);
}

/** A token lower than one already seen for its partition: the writer is a stale owner. */
export class StaleFencingTokenError extends VigilError {
  constructor(partition: string, token: number, highest: number) {
    super('stale_fencing_token', `partition ${partition}: fencing token ${token} is older than ${highest}`, {
      status: 409,
    });
    this.name = 'StaleFencingTokenError';
  }
}

/** Stores alerts once each, answers alert queries, and streams new alerts to listeners. */
export interface AlertStore {
  start(): Promise<void>;
  /**
   * Stores the alerts not stored before; returns those, after telling the listeners. An alert whose fencing
   * token is lower than the highest seen for its partition comes from a stale owner: it is refused (counted
   * in vigil_alerts_stale_token_total), the others are stored.
   */
  save(alerts: Alert[]): Promise<Alert[]>;
  /** Raises the partition's highest fencing token (a new owner announces itself before its first alert). */
  fence(partition: string, token: number): Promise<void>;
  list(filter: AlertFilter): Promise<Alert[]>;
  get(id: string, tenants: string[]): Promise<Alert | undefined>;
  /** Sets the status; `updated` (epoch ms, default now) orders concurrent changes the same on every replica. */
  setStatus(id: string, tenants: string[], status: AlertStatus, updated?: number): Promise<Alert>;
  onAlert(listener: (alerts: Alert[]) => void): void;
  /** Which of `ids` are stored already (any tenant). */
  known?(ids: string[]): Promise<Set<string>>;
}

/** A place in the alert log of a single node: see db/positions.ts, where consumers keep theirs. */
export type { AlertPosition };

/**
 * The local alert table as a log (the outbox of a single node): every stored alert is read back after a
 * position, in the order alerts were stored, by consumers that keep their own positions (incidents, notify).
 */
export interface AlertOutbox {
  /** Up to `limit` alerts stored after `after` (all from the start when undefined), with their positions. */
  readAfter(after: AlertPosition | undefined, limit: number): Promise<{ alert: Alert; position: AlertPosition }[]>;
  /** Alerts stored after `after`: a consumer's backlog. */
  countAfter(after: AlertPosition | undefined): Promise<number>;
  /** The position of the last stored alert (undefined when there is none). */
  head(): Promise<AlertPosition | undefined>;
}

const RECENT_IDS = 100000;

interface AlertRow {
  id: string;
  ts: string;
  created: string;
  tenant: string;
  kind: string;
  rule_id: string;
  rule_title: string;
  level: string;
  tags: string[];
  host: string;
  status: string;
  matched: string;
  event_ids: string[];
  partition: string;
  fencing_token: string | number;
  epoch?: string | number;
}

/**
 * Creates the alert store on the event store's engine. With `outbox` (a single node, whose incidents and
 * notifications read the table after their positions), each insert's `created` is later than every alert
 * stored before it, so that (created, ts, id) is the order alerts were stored in, whatever the clock does.
 */
export function createAlertStore(
  store: EventStore,
  deps: { metrics: Registry; logger?: Logger; outbox?: boolean },
): AlertStore & AlertOutbox {
  const recent = new Set<string>();
  let lastCreated = 0;
  const highestToken = new Map<string, number>();
  const listeners: ((alerts: Alert[]) => void)[] = [];
  const stored = counter(deps.metrics, 'vigil_alerts_stored_total', 'Alerts stored.', ['level']);
  const duplicates = counter(deps.metrics, 'vigil_alerts_duplicates_total', 'Alerts dropped as already stored.');
  const stale = counter(deps.metrics, 'vigil_alerts_stale_token_total', 'Alerts refused for a stale fencing token.');
  const staleEpoch = counter(
    deps.metrics,
    'vigil_alerts_stale_epoch_total',
    'Alerts refused for a site epoch lower than one fenced before them (a returning old site).',
  );
  const lateEpoch = counter(
    deps.metrics,
    'vigil_alerts_late_epoch_total',
    'Alerts of a replaced site epoch kept because they were raised before it was replaced (copied late).',
  );

  const remember = (id: string) => {
    recent.add(id);
    if (recent.size > RECENT_IDS) recent.delete(recent.values().next().value as string);
  };

  const toRow = (a: Alert, updated: number) =>
    JSON.stringify({
      id: a.id,
      ts: a.timestamp,
      created: a.created,
      updated,
      tenant: a.tenant,
      kind: a.kind,
      rule_id: a.rule.id,
      rule_title: a.rule.title,
      level: a.rule.level,
      tags: a.rule.tags,
      host: a.host,
      status: a.status,
      matched: JSON.stringify(a.matched),
      event_ids: a.eventIds,
      partition: a.partition,
      fencing_token: a.fencingToken,
      epoch: a.epoch ?? 0,
    });

  const fromRow = (r: AlertRow): Alert => ({
    id: r.id,
    timestamp: Date.parse(engineTimeToIso(r.ts)),
    created: Date.parse(engineTimeToIso(r.created)),
    tenant: r.tenant,
    kind: r.kind === 'correlation' ? 'correlation' : 'rule',
    rule: { id: r.rule_id, title: r.rule_title, level: r.level, tags: r.tags },
    host: r.host,
    status: r.status as AlertStatus,
    matched: JSON.parse(r.matched),
    eventIds: r.event_ids,
    partition: r.partition,
    fencingToken: Number(r.fencing_token),
    ...(Number(r.epoch ?? 0) > 0 ? { epoch: Number(r.epoch) } : {}),
  });

  return {
    async start() {
      await store.exec(ALERTS_DDL);
      await store.exec(FENCES_DDL);
      await store.exec(ALERTS_EPOCH_DDL);
      const rows = await store.query<{ partition: string; t: string }>(
        `SELECT partition, max(t) AS t FROM (
           SELECT partition, max(fencing_token) AS t FROM vigil.${ALERTS_TABLE} GROUP BY partition
           UNION ALL SELECT partition, max(token) AS t FROM vigil.${FENCES_TABLE} GROUP BY partition
         ) GROUP BY partition`,
        {},
      );
      for (const r of rows) highestToken.set(r.partition, Number(r.t));
      if (deps.outbox) {
        const [last] = await store.query<{ c: string }>(
          `SELECT toUnixTimestamp64Milli(max(created)) AS c FROM vigil.${ALERTS_TABLE}`,
          {},
        );
        lastCreated = Number(last?.c ?? 0);
      }
    },
    async fence(partition, token) {
      if (token <= (highestToken.get(partition) ?? 0)) return;
      await store.insertRows(FENCES_TABLE, Buffer.from(JSON.stringify({ partition, token })));
      highestToken.set(partition, token);
    },
    async save(alerts) {
      const fresh: Alert[] = [];
      const seenInBatch = new Set<string>();
      const epochFloor = highestToken.get(EPOCH_FENCE) ?? 0;
      for (const a of alerts) {
        if (a.epoch !== undefined && a.epoch < epochFloor) {
          const since = replacedAt(highestToken, a.epoch);
          if (a.created >= since) {
            staleEpoch.inc();
            deps.logger?.warn(
              { alert: a.id, epoch: a.epoch, highest_epoch: epochFloor, created: a.created, replaced_at: since },
              'An alert of a stale site epoch was refused.',
            );
            continue;
          }
          // Raised before its site was replaced, copied late (the site was lost with it in flight): history.
          lateEpoch.inc();
          deps.logger?.warn(
            { alert: a.id, epoch: a.epoch, highest_epoch: epochFloor, created: a.created, replaced_at: since },
            'An alert raised before its site was replaced arrived late: kept.',
          );
        }
        const highest = highestToken.get(a.partition) ?? 0;
        if (a.fencingToken < highest) {
          stale.inc();
          deps.logger?.warn(
            { alert: a.id, partition: a.partition, fencing_token: a.fencingToken, highest },
            'An alert from a stale partition owner was refused.',
          );
          continue;
        }
        if (recent.has(a.id) || seenInBatch.has(a.id)) {
          duplicates.inc();
          continue;
        }
        seenInBatch.add(a.id);
        fresh.push(a);
      }
      if (fresh.length === 0) return [];
      // Ids evicted from memory (or stored before a restart) are checked in the table itself.
      const existing = await store.query<{ id: string }>(
        `SELECT id FROM vigil.${ALERTS_TABLE} WHERE id IN {ids:Array(String)}`,
        { ids: fresh.map((a) => a.id) },
      );
      const known = new Set(existing.map((r) => r.id));
      const toStore = fresh.filter((a) => !known.has(a.id));
      duplicates.inc(fresh.length - toStore.length);
      for (const a of fresh) remember(a.id);
      if (toStore.length === 0) return [];
      if (deps.outbox) {
        // Strictly after the previous insert: a reader past it must not miss an alert of the same millisecond.
        const floor = lastCreated + 1;
        for (let i = 0; i < toStore.length; i++) {
          if (toStore[i].created < floor) toStore[i] = { ...toStore[i], created: floor };
          lastCreated = Math.max(lastCreated, toStore[i].created);
        }
      }
      await store.insertRows(ALERTS_TABLE, Buffer.from(toStore.map((a) => toRow(a, a.created)).join('\n')));
      for (const a of toStore) {
        stored.inc({ level: a.rule.level });
        highestToken.set(a.partition, Math.max(highestToken.get(a.partition) ?? 0, a.fencingToken));
      }
      for (const l of listeners) l(toStore);
      return toStore;
    },
    async known(ids) {
      if (ids.length === 0) return new Set();
      const rows = await store.query<{ id: string }>(
        `SELECT id FROM vigil.${ALERTS_TABLE} WHERE id IN {ids:Array(String)}`,
        { ids },
      );
      return new Set(rows.map((r) => r.id));
    },
    async list(f) {
      const where = ['tenant IN {tenants:Array(String)}'];
      const params: Record<string, unknown> = { tenants: f.tenants, limit: f.limit };
      if (f.from !== undefined) {
        where.push('ts >= fromUnixTimestamp64Milli({from:Int64})');
        params.from = f.from;
      }
      if (f.to !== undefined) {
        where.push('ts < fromUnixTimestamp64Milli({to:Int64})');
        params.to = f.to;
      }
      for (const [key, column] of [
        ['rule', 'rule_id'],
        ['level', 'level'],
        ['host', 'host'],
        ['status', 'status'],
      ] as const) {
        const v = f[key];
        if (v !== undefined) {
          where.push(
            key === 'rule'
              ? `(rule_id = {${key}:String} OR rule_title = {${key}:String})`
              : `${column} = {${key}:String}`,
          );
          params[key] = v;
        }
      }
      const rows = await store.query<AlertRow>(
        `SELECT * FROM vigil.${ALERTS_TABLE} FINAL WHERE ${where.join(' AND ')} ORDER BY ts DESC LIMIT {limit:UInt32}`,
        params,
      );
      return rows.map(fromRow);
    },
    async get(id, tenants) {
      const rows = await store.query<AlertRow>(
        `SELECT * FROM vigil.${ALERTS_TABLE} FINAL WHERE id = {id:String} AND tenant IN {tenants:Array(String)}`,
        { id, tenants },
      );
      return rows[0] ? fromRow(rows[0]) : undefined;
    },
    async setStatus(id, tenants, status, updated = Date.now()) {
      const rows = await store.query<AlertRow>(
        `SELECT * FROM vigil.${ALERTS_TABLE} FINAL WHERE id = {id:String} AND tenant IN {tenants:Array(String)}`,
        { id, tenants },
      );
      if (!rows[0]) throw new VigilError('not_found', `no alert ${id}`, { status: 404 });
      const alert = { ...fromRow(rows[0]), status };
      await store.insertRows(ALERTS_TABLE, Buffer.from(toRow(alert, updated)));
      return alert;
    },
    onAlert(listener) {
      listeners.push(listener);
    },
    // `created >=` alone lets the engine prune the partitions (months of `created`) before the position; the
    // tuple comparison does not.
    async readAfter(after, limit) {
      const rows = await store.query<AlertRow & { created_ms: string; ts_ms: string }>(
        `SELECT *, toUnixTimestamp64Milli(created) AS created_ms, toUnixTimestamp64Milli(ts) AS ts_ms
         FROM vigil.${ALERTS_TABLE} FINAL
         WHERE created >= fromUnixTimestamp64Milli({c:Int64})
           AND (created, ts, id) > (fromUnixTimestamp64Milli({c:Int64}), fromUnixTimestamp64Milli({t:Int64}), {id:String})
         ORDER BY created, ts, id LIMIT {limit:UInt32}`,
        { c: after?.created ?? 0, t: after?.ts ?? 0, id: after?.id ?? '', limit },
      );
      return rows.map((r) => ({
        alert: fromRow(r),
        position: { created: Number(r.created_ms), ts: Number(r.ts_ms), id: r.id },
      }));
    },
    async countAfter(after) {
      const [row] = await store.query<{ n: string }>(
        `SELECT count() AS n FROM vigil.${ALERTS_TABLE} FINAL
         WHERE created >= fromUnixTimestamp64Milli({c:Int64})
           AND (created, ts, id) > (fromUnixTimestamp64Milli({c:Int64}), fromUnixTimestamp64Milli({t:Int64}), {id:String})`,
        { c: after?.created ?? 0, t: after?.ts ?? 0, id: after?.id ?? '' },
      );
      return Number(row?.n ?? 0);
    },
    async head() {
      const [row] = await store.query<{ c: string; t: string; id: string }>(
        `SELECT toUnixTimestamp64Milli(created) AS c, toUnixTimestamp64Milli(ts) AS t, id FROM vigil.${ALERTS_TABLE}
         ORDER BY created DESC, ts DESC, id DESC LIMIT 1`,
        {},
      );
      return row ? { created: Number(row.c), ts: Number(row.t), id: row.id } : undefined;
    },
  };
}
