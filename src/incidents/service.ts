import { createHash, randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Alert } from '../detect/alerts/index.ts';
import { SEVERITIES, type Severity, severityRank } from '../detect/alerts/severity.ts';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage, InputError, OverloadError, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge } from '../lib/metrics.ts';
import type { AuditLog } from '../users/index.ts';
import type { IncidentsConfig } from './config.ts';
import { type Db, type Queryable, withDbRetry } from '../db/index.ts';
import {
  INCIDENT_STATUSES,
  type Incident,
  type IncidentComment,
  type IncidentDetail,
  type IncidentStatus,
  type IngestResult,
  OPEN_STATUSES,
  type RejectedAlert,
  type TimelineEntry,
  transitionRefusal,
} from './model.ts';
import { settleBy } from '../lib/deadline.ts';

/** Sort keys of GET /api/v1/incidents (prefix `-` for descending). */
export const INCIDENT_SORTS = ['created_at', 'updated_at', 'severity', 'last_alert_at'] as const;
export type IncidentSort = (typeof INCIDENT_SORTS)[number];

/** Filters, order and page of a listing; `tenants` is the principal's (always applied). */
export interface IncidentFilter {
  tenants: string[];
  status?: IncidentStatus[];
  severity?: Severity[];
  assignee?: string;
  tag?: string;
  rule?: string;
  host?: string;
  /** created_at >= from (epoch ms). */
  from?: number;
  /** created_at < to (epoch ms). */
  to?: number;
  sort: IncidentSort;
  descending: boolean;
  limit: number;
  /** Either an offset or a cursor from a previous page's `nextCursor`. */
  offset?: number;
  cursor?: string;
}

export interface IncidentPage {
  incidents: Incident[];
  /** Incidents matching the filters, all pages together. */
  total: number;
  /** Give as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

/** What PATCH and bulk may change; `null` clears the assignee. */
export interface IncidentPatch {
  status?: IncidentStatus;
  assignee?: string | null;
  tags?: string[];
  severity?: Severity;
  title?: string;
}

export interface NewIncident {
  tenant: string;
  title: string;
  severity: Severity;
  assignee?: string | null;
  tags?: string[];
  alertIds?: string[];
  eventIds?: string[];
}

/** The outcome for one incident of a bulk change. */
export interface BulkOutcome {
  id: string;
  ok: boolean;
  incident?: Incident;
  error?: { code: string; message: string };
}

/** A status change refused by the transition table (answered 409 with the reason). */
export class InvalidTransitionError extends VigilError {
  constructor(from: IncidentStatus, to: IncidentStatus, reason: string) {
    super('invalid_transition', reason, { status: 409, details: { from, to } });
    this.name = 'InvalidTransitionError';
  }
}

/**
 * Incidents: alerts grouped by key and time window, worked by a team through statuses, assignees, tags
 * and comments, each change on the incident's timeline and in the audit log.
 */
export interface IncidentService {
  /**
   * Groups alerts into incidents, in order of calls (a FIFO, so fencing tokens are seen in order),
   * retrying connection errors with backoff. Idempotent per alert id; refuses alerts whose fencing token
   * is lower than the highest seen for their partition (counted, logged and returned).
   */
  ingestAlerts(alerts: readonly Alert[]): Promise<IngestResult>;
  list(filter: IncidentFilter): Promise<IncidentPage>;
  get(id: string, tenants: string[]): Promise<IncidentDetail | undefined>;
  create(input: NewIncident, actor: string): Promise<IncidentDetail>;
  update(id: string, tenants: string[], patch: IncidentPatch, actor: string): Promise<Incident>;
  addComment(id: string, tenants: string[], body: string, actor: string): Promise<IncidentComment>;
  timeline(id: string, tenants: string[]): Promise<TimelineEntry[]>;
  bulk(ids: string[], tenants: string[], patch: IncidentPatch, actor: string): Promise<BulkOutcome[]>;
  /** Alerts refused at intake, newest first. */
  rejectedAlerts(tenants: string[], limit: number): Promise<(RejectedAlert & { tenant: string; rejectedAt: number })[]>;
}

/** The incident service and its lifecycle (stop drains queued alerts until the deadline). */
export interface IncidentComponent extends IncidentService, Component {}

interface IncidentRow {
  id: string;
  tenant: string;
  title: string;
  severity: Severity;
  severity_rank: number;
  status: IncidentStatus;
  assignee: string | null;
  tags: string[];
  group_key: string | null;
  rule_id: string | null;
  host: string | null;
  window_start: number | null;
  window_end: number | null;
  first_alert_at: number | null;
  last_alert_at: number | null;
  alert_count: number;
  created_by: string;
  created_at: number;
  updated_at: number;
}

const num = (v: number | null) => (v === null ? null : Number(v));

const toIncident = (r: IncidentRow): Incident => ({
  id: r.id,
  tenant: r.tenant,
  title: r.title,
  severity: r.severity,
  status: r.status,
  assignee: r.assignee,
  tags: r.tags,
  groupKey: r.group_key,
  ruleId: r.rule_id,
  host: r.host,
  windowStart: num(r.window_start),
  windowEnd: num(r.window_end),
  firstAlertAt: num(r.first_alert_at),
  lastAlertAt: num(r.last_alert_at),
  alertCount: Number(r.alert_count),
  createdBy: r.created_by,
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
});

const SORT_SQL: Record<IncidentSort, string> = {
  created_at: 'created_at',
  updated_at: 'updated_at',
  severity: 'severity_rank',
  last_alert_at: 'COALESCE(last_alert_at, created_at)',
};

const OPEN_SQL = OPEN_STATUSES.map((s) => `'${s}'`).join(', ');
const TAG = /^[^\s,]{1,64}$/;
const MAX_TAGS = 50;

/** The grouping key of an alert under `groupBy` (see IncidentsConfig.group_by). */
export function groupKeyOf(alert: Alert, groupBy: readonly string[]): string {
  const parts = groupBy.map((f) => {
    switch (f) {
      case 'rule.id':
        return alert.rule.id;
      case 'rule.title':
        return alert.rule.title;
      case 'rule.level':
        return alert.rule.level;
      case 'host':
        return alert.host;
      case 'kind':
        return alert.kind;
      case 'partition':
        return alert.partition;
      default: {
        const v = alert.matched[f.slice('matched.'.length)];
        return v === undefined ? '' : JSON.stringify(v);
      }
    }
  });
  return groupBy.map((f, i) => `${f}=${parts[i]}`).join('\u001f');
}

/** A stable 64-bit advisory lock key for one grouping key of one tenant. */
function lockKey(tenant: string, key: string): string {
  return BigInt.asIntN(
    64,
    BigInt(`0x${createHash('sha256').update(`${tenant}\u0000${key}`).digest('hex').slice(0, 16)}`),
  ).toString();
}

function encodeCursor(value: number, id: string): string {
  return Buffer.from(JSON.stringify([value, id])).toString('base64url');
}

function decodeCursor(cursor: string): [number, string] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'number' && typeof v[1] === 'string') {
      return [v[0], v[1]];
    }
  } catch {
    // answered below
  }
  throw new InputError('bad_cursor', 'cursor is not one this server gave out');
}

function checkTags(tags: unknown): string[] {
  if (!Array.isArray(tags) || tags.length > MAX_TAGS || !tags.every((t) => typeof t === 'string' && TAG.test(t))) {
    throw new InputError(
      'bad_tags',
      `tags: a list of at most ${MAX_TAGS} tags of 1 to 64 characters without spaces or commas`,
    );
  }
  return [...new Set(tags as string[])];
}

function checkPatch(patch: IncidentPatch): IncidentPatch {
  const out: IncidentPatch = {};
  if (patch.status !== undefined) {
    if (!INCIDENT_STATUSES.includes(patch.status)) {
      throw new InputError('bad_status', `status must be one of ${INCIDENT_STATUSES.join(', ')}`);
    }
    out.status = patch.status;
  }
  if (patch.severity !== undefined) {
    if (!SEVERITIES.includes(patch.severity)) {
      throw new InputError('bad_severity', `severity must be one of ${SEVERITIES.join(', ')}`);
    }
    out.severity = patch.severity;
  }
  if (patch.assignee !== undefined) {
    if (
      patch.assignee !== null &&
      (typeof patch.assignee !== 'string' || patch.assignee.length < 1 || patch.assignee.length > 128)
    ) {
      throw new InputError('bad_assignee', 'assignee: a user name of 1 to 128 characters, or null to unassign');
    }
    out.assignee = patch.assignee;
  }
  if (patch.tags !== undefined) out.tags = checkTags(patch.tags);
  if (patch.title !== undefined) {
    if (typeof patch.title !== 'string' || patch.title.trim() === '' || patch.title.length > 500) {
      throw new InputError('bad_title', 'title: 1 to 500 characters');
    }
    out.title = patch.title;
  }
  if (Object.keys(out).length === 0) {
    throw new InputError('empty_patch', 'nothing to change: give status, assignee, tags, severity or title');
  }
  return out;
}

const notFound = (id: string) => new VigilError('not_found', `no incident ${id}`, { status: 404 });

/** Creates the incident service on `db` (opens nothing; `start` only accepts work). */
export function createIncidentService(
  config: IncidentsConfig,
  deps: { db: Db; metrics: Registry; logger: Logger; audit?: AuditLog },
): IncidentComponent {
  const { db, audit } = deps;
  const logger = deps.logger.child({ component: 'incidents' });
  const alertsTotal = counter(
    deps.metrics,
    'vigil_incidents_alerts_total',
    'Alerts offered to incidents, by result (linked, duplicate, rejected).',
    ['result'],
  );
  const rejectedTotal = counter(
    deps.metrics,
    'vigil_incidents_alerts_rejected_total',
    'Alerts refused by incidents, by reason (stale_fencing_token, overloaded, stopped, failed).',
    ['reason'],
  );
  const retries = counter(
    deps.metrics,
    'vigil_incidents_ingest_retries_total',
    'Alert batches retried after a database error.',
  );
  const pendingGauge = gauge(deps.metrics, 'vigil_incidents_ingest_pending_alerts', 'Alerts waiting to be grouped.');
  const created = counter(
    deps.metrics,
    'vigil_incidents_created_total',
    'Incidents created, by origin (alerts, manual).',
    ['origin'],
  );

  let accepting = false;
  let stopDeadline = Number.POSITIVE_INFINITY;
  let pending = 0;
  let chain: Promise<unknown> = Promise.resolve();
  let lastFailure: string | undefined;

  const timelineAdd = (
    tx: Queryable,
    incidentId: string,
    at: number,
    actor: string,
    action: TimelineEntry['action'],
    from: string | null,
    to: string | null,
    details?: Record<string, unknown>,
  ) =>
    tx.query(
      `INSERT INTO incident_timeline (incident_id, at, actor, action, from_value, to_value, details)
       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)`,
      [incidentId, at, actor, action, from, to, details === undefined ? null : JSON.stringify(details)],
    );

  /** One transaction: fencing check, dedupe and grouping for each alert of the batch, in order. */
  const ingestBatch = (alerts: readonly Alert[]): Promise<IngestResult> =>
    db.transaction(async (tx) => {
      const result: IngestResult = { opened: 0, linked: 0, duplicates: 0, rejected: [], incidentIds: [] };
      const touched = new Set<string>();
      const ids = alerts.map((a) => a.id);
      const alertKey = (tenant: string, id: string) => `${tenant}\u0000${id}`;
      const known = new Set(
        (
          await tx.query<{ tenant: string; alert_id: string }>(
            'SELECT tenant, alert_id FROM incident_alerts WHERE alert_id = ANY($1::text[])',
            [ids],
          )
        ).map((r) => alertKey(r.tenant, r.alert_id)),
      );
      const t = Date.now();
      for (const a of alerts) {
        if (known.has(alertKey(a.tenant, a.id))) {
          result.duplicates++;
          continue;
        }
        // The upsert keeps the highest token and locks the partition's row until commit, so a stale
        // owner's transaction cannot interleave with the new owner's.
        const [{ token: highest }] = await tx.query<{ token: number }>(
          `INSERT INTO partition_tokens (partition, token, updated_at) VALUES ($1, $2, $3)
           ON CONFLICT (partition) DO UPDATE SET token = GREATEST(partition_tokens.token, EXCLUDED.token),
             updated_at = EXCLUDED.updated_at
           RETURNING token`,
          [a.partition, a.fencingToken, t],
        );
        if (a.fencingToken < Number(highest)) {
          const r: RejectedAlert = {
            alertId: a.id,
            partition: a.partition,
            fencingToken: a.fencingToken,
            highestToken: Number(highest),
            reason: 'stale_fencing_token',
          };
          await tx.query(
            `INSERT INTO rejected_alerts (alert_id, partition, fencing_token, highest_token, reason, tenant, rejected_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
            [a.id, a.partition, a.fencingToken, r.highestToken, r.reason, a.tenant, t],
          );
          result.rejected.push(r);
          continue;
        }
        const key = groupKeyOf(a, config.group_by);
        // Serializes grouping per key across nodes, so two nodes never open two incidents for one key.
        await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [lockKey(a.tenant, key)]);
        const rank = severityRank(a.rule.level);
        let incidentId = (
          await tx.query<{ id: string }>(
            `SELECT id FROM incidents WHERE tenant = $1 AND group_key = $2 AND status IN (${OPEN_SQL})
               AND window_start <= $3 AND window_end > $3
             ORDER BY window_start DESC LIMIT 1`,
            [a.tenant, key, a.timestamp],
          )
        )[0]?.id;
        let opened = false;
        if (incidentId === undefined) {
          incidentId = randomUUID();
          opened = true;
          await tx.query(
            `INSERT INTO incidents (id, tenant, title, severity, severity_rank, status, assignee, tags, group_key,
               rule_id, host, window_start, window_end, first_alert_at, last_alert_at, alert_count, created_by,
               created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'new', NULL, $6, $7, $8, $9, $10, $11, $10, $10, 0, 'system', $12, $12)`,
            [
              incidentId,
              a.tenant,
              a.host ? `${a.rule.title} on ${a.host}` : a.rule.title,
              SEVERITIES[rank],
              rank,
              a.rule.tags.filter((tag) => TAG.test(tag)).slice(0, MAX_TAGS),
              key,
              a.rule.id,
              a.host || null,
              a.timestamp,
              a.timestamp + config.group_window_ms,
              t,
            ],
          );
          await timelineAdd(tx, incidentId, t, 'system', 'created', null, 'new', { alertId: a.id, groupKey: key });
        }
        const linked = await tx.query(
          `INSERT INTO incident_alerts (alert_id, incident_id, tenant, rule_id, level, partition, fencing_token, alert_at, linked_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant, alert_id) DO NOTHING RETURNING alert_id`,
          [a.id, incidentId, a.tenant, a.rule.id, a.rule.level, a.partition, a.fencingToken, a.timestamp, t],
        );
        if (linked.length === 0) {
          // Linked meanwhile by another transaction (possible only if nodes group with different keys).
          if (opened) {
            await tx.query('DELETE FROM incident_timeline WHERE incident_id = $1', [incidentId]);
            await tx.query('DELETE FROM incidents WHERE id = $1', [incidentId]);
          }
          result.duplicates++;
          continue;
        }
        known.add(alertKey(a.tenant, a.id));
        if (opened) result.opened++;
        const [before] = await tx.query<{ severity: Severity }>('SELECT severity FROM incidents WHERE id = $1', [
          incidentId,
        ]);
        await tx.query(
          `UPDATE incidents SET alert_count = alert_count + 1,
             severity_rank = GREATEST(severity_rank, $2),
             severity = CASE WHEN $2 > severity_rank THEN $3 ELSE severity END,
             first_alert_at = LEAST(first_alert_at, $4), last_alert_at = GREATEST(last_alert_at, $4),
             updated_at = $5
           WHERE id = $1`,
          [incidentId, rank, SEVERITIES[rank], a.timestamp, t],
        );
        if (a.eventIds.length > 0) {
          await tx.query(
            `INSERT INTO incident_events (incident_id, event_id) SELECT $1, e FROM unnest($2::text[]) AS e
             ON CONFLICT DO NOTHING`,
            [incidentId, a.eventIds],
          );
        }
        await timelineAdd(tx, incidentId, t, 'system', 'alert_linked', null, a.id, {
          rule: a.rule.id,
          level: a.rule.level,
        });
        if (!opened && severityRank(before.severity) < rank) {
          await timelineAdd(tx, incidentId, t, 'system', 'severity', before.severity, SEVERITIES[rank], {
            alertId: a.id,
          });
        }
        result.linked++;
        touched.add(incidentId);
      }
      result.incidentIds = [...touched];
      return result;
    });

  /** Splits, retries and reports one queued call; runs only at the head of the FIFO. */
  const process = async (alerts: readonly Alert[]): Promise<IngestResult> => {
    const total: IngestResult = { opened: 0, linked: 0, duplicates: 0, rejected: [], incidentIds: [] };
    const began = Date.now();
    for (let i = 0; i < alerts.length; i += config.batch_max_alerts) {
      const batch = alerts.slice(i, i + config.batch_max_alerts);
      let r: IngestResult;
      try {
        r = await withDbRetry(() => ingestBatch(batch), {
          initialMs: config.retry_initial_ms,
          maxMs: config.retry_max_ms,
          // No deadline but the stop's: an alert is never given up (the alert log's consumer retries even after
          // a stop). Past retry_max_elapsed_ms the failure is logged as an error and health says degraded.
          deadline: () => stopDeadline,
          onRetry: (err, attempt, delayMs) => {
            retries.inc();
            lastFailure = errorMessage(err);
            (Date.now() - began > config.retry_max_elapsed_ms ? logger.error : logger.warn).call(
              logger,
              { err: lastFailure, attempt, delayMs, alerts: batch.length },
              'Grouping alerts failed; retrying.',
            );
          },
        });
      } catch (err) {
        const rest = alerts.length - i;
        rejectedTotal.inc({ reason: 'failed' }, rest);
        lastFailure = errorMessage(err);
        logger.warn(
          { err: lastFailure, alerts: rest, alertIds: alerts.slice(i, i + 20).map((a) => a.id) },
          'Alerts could not be grouped into incidents yet; the alert log hands them over again.',
        );
        throw err;
      }
      lastFailure = undefined;
      total.opened += r.opened;
      total.linked += r.linked;
      total.duplicates += r.duplicates;
      total.rejected.push(...r.rejected);
      for (const id of r.incidentIds) if (!total.incidentIds.includes(id)) total.incidentIds.push(id);
    }
    created.inc({ origin: 'alerts' }, total.opened);
    alertsTotal.inc({ result: 'linked' }, total.linked);
    alertsTotal.inc({ result: 'duplicate' }, total.duplicates);
    if (total.rejected.length > 0) {
      alertsTotal.inc({ result: 'rejected' }, total.rejected.length);
      rejectedTotal.inc({ reason: 'stale_fencing_token' }, total.rejected.length);
      logger.warn(
        { rejected: total.rejected.slice(0, 20), count: total.rejected.length },
        'Alerts with a stale fencing token were refused: their writer no longer owns the partition.',
      );
    }
    return total;
  };

  const loadIncident = async (q: Queryable, id: string, tenants: string[], lock = false) =>
    (
      await q.query<IncidentRow>(
        `SELECT * FROM incidents WHERE id = $1 AND tenant = ANY($2::text[])${lock ? ' FOR UPDATE' : ''}`,
        [id, tenants],
      )
    )[0] as IncidentRow | undefined;

  const detail = async (q: Queryable, row: IncidentRow): Promise<IncidentDetail> => {
    const alerts = await q.query<{ alert_id: string }>(
      'SELECT alert_id FROM incident_alerts WHERE incident_id = $1 ORDER BY alert_at, alert_id',
      [row.id],
    );
    const events = await q.query<{ event_id: string }>(
      'SELECT event_id FROM incident_events WHERE incident_id = $1 ORDER BY event_id',
      [row.id],
    );
    const comments = await q.query<{ id: number; author: string; body: string; created_at: number }>(
      'SELECT id, author, body, created_at FROM incident_comments WHERE incident_id = $1 ORDER BY id',
      [row.id],
    );
    return {
      ...toIncident(row),
      alertIds: alerts.map((r) => r.alert_id),
      eventIds: events.map((r) => r.event_id),
      comments: comments.map((c) => ({
        id: Number(c.id),
        author: c.author,
        body: c.body,
        createdAt: Number(c.created_at),
      })),
    };
  };

  /** Applies a checked patch inside `tx`; the incident row is locked so concurrent changes serialize. */
  const applyPatch = async (tx: Queryable, id: string, tenants: string[], patch: IncidentPatch, actor: string) => {
    const row = await loadIncident(tx, id, tenants, true);
    if (!row) throw notFound(id);
    const t = Date.now();
    const changes: Record<string, { from: unknown; to: unknown }> = {};
    if (patch.status !== undefined && patch.status !== row.status) {
      const refusal = transitionRefusal(row.status, patch.status);
      if (refusal) throw new InvalidTransitionError(row.status, patch.status, refusal);
      changes.status = { from: row.status, to: patch.status };
      await timelineAdd(tx, id, t, actor, 'status', row.status, patch.status);
    }
    if (patch.assignee !== undefined && patch.assignee !== row.assignee) {
      changes.assignee = { from: row.assignee, to: patch.assignee };
      await timelineAdd(tx, id, t, actor, 'assignee', row.assignee, patch.assignee);
    }
    if (patch.severity !== undefined && patch.severity !== row.severity) {
      changes.severity = { from: row.severity, to: patch.severity };
      await timelineAdd(tx, id, t, actor, 'severity', row.severity, patch.severity);
    }
    if (patch.title !== undefined && patch.title !== row.title) {
      changes.title = { from: row.title, to: patch.title };
      await timelineAdd(tx, id, t, actor, 'title', row.title, patch.title);
    }
    if (patch.tags !== undefined && JSON.stringify([...patch.tags].sort()) !== JSON.stringify([...row.tags].sort())) {
      changes.tags = { from: row.tags, to: patch.tags };
      await timelineAdd(tx, id, t, actor, 'tags', row.tags.join(','), patch.tags.join(','));
    }
    if (Object.keys(changes).length === 0) return toIncident(row);
    const [updated] = await tx.query<IncidentRow>(
      `UPDATE incidents SET status = $2, assignee = $3, severity = $4, severity_rank = $5, tags = $6, title = $7,
         updated_at = $8 WHERE id = $1 RETURNING *`,
      [
        id,
        patch.status ?? row.status,
        patch.assignee === undefined ? row.assignee : patch.assignee,
        patch.severity ?? row.severity,
        severityRank(patch.severity ?? row.severity),
        patch.tags ?? row.tags,
        patch.title ?? row.title,
        t,
      ],
    );
    await audit?.record(actor, 'incident.update', `incident:${id}`, changes, { tenant: row.tenant, tx });
    return toIncident(updated);
  };

  return {
    name: 'incidents',
    async start() {
      accepting = true;
      stopDeadline = Number.POSITIVE_INFINITY;
    },
    async stop(deadline) {
      accepting = false;
      stopDeadline = deadline;
      // Queued alerts are grouped until the deadline; retries give up at it (reported, not dropped silently).
      await settleBy(
        chain.catch(() => {}),
        deadline,
      );
    },
    health(): ComponentHealth {
      if (!accepting) return { ok: false, detail: 'stopped' };
      return lastFailure
        ? { ok: true, detail: `degraded: grouping alerts fails, retrying: ${lastFailure}` }
        : { ok: true };
    },

    ingestAlerts(alerts) {
      if (alerts.length === 0)
        return Promise.resolve({ opened: 0, linked: 0, duplicates: 0, rejected: [], incidentIds: [] });
      // A batch larger than the queue is taken when the queue is empty: refused, it would be refused forever.
      if (!accepting || (pending > 0 && pending + alerts.length > config.max_pending_alerts)) {
        const reason = accepting ? 'overloaded' : 'stopped';
        rejectedTotal.inc({ reason }, alerts.length);
        alertsTotal.inc({ result: 'rejected' }, alerts.length);
        logger.error(
          { reason, alerts: alerts.length, pending, alertIds: alerts.slice(0, 20).map((a) => a.id) },
          'Alerts were refused by incidents.',
        );
        return Promise.reject(
          accepting
            ? new OverloadError(`more than ${config.max_pending_alerts} alerts wait to be grouped`)
            : new VigilError('stopped', 'the incident service is stopped', { retryable: true, status: 503 }),
        );
      }
      pending += alerts.length;
      pendingGauge.set(pending);
      const batch = [...alerts];
      const run = chain.then(() => process(batch));
      const settle = () => {
        pending -= batch.length;
        pendingGauge.set(pending);
      };
      chain = run.then(settle, settle);
      return run;
    },

    async list(f) {
      const where = ['tenant = ANY($1::text[])'];
      const params: unknown[] = [f.tenants];
      const add = (clause: string, value: unknown) => {
        params.push(value);
        where.push(clause.replaceAll('?', `$${params.length}`));
      };
      if (f.status?.length) add('status = ANY(?::text[])', f.status);
      if (f.severity?.length) add('severity = ANY(?::text[])', f.severity);
      if (f.assignee !== undefined) add('assignee = ?', f.assignee);
      if (f.tag !== undefined) add('? = ANY(tags)', f.tag);
      if (f.rule !== undefined) add('rule_id = ?', f.rule);
      if (f.host !== undefined) add('host = ?', f.host);
      if (f.from !== undefined) add('created_at >= ?', f.from);
      if (f.to !== undefined) add('created_at < ?', f.to);
      const filtered = [...where];
      const filteredParams = [...params];
      const sortSql = SORT_SQL[f.sort];
      const dir = f.descending ? 'DESC' : 'ASC';
      if (f.cursor !== undefined) {
        const [value, id] = decodeCursor(f.cursor);
        params.push(value, id);
        where.push(`(${sortSql}, id) ${f.descending ? '<' : '>'} ($${params.length - 1}, $${params.length})`);
      }
      params.push(f.limit + 1);
      let sql = `SELECT *, ${sortSql} AS sort_value FROM incidents WHERE ${where.join(' AND ')}
                 ORDER BY ${sortSql} ${dir}, id ${dir} LIMIT $${params.length}`;
      if (f.cursor === undefined && f.offset) {
        params.push(f.offset);
        sql += ` OFFSET $${params.length}`;
      }
      const rows = await db.query<IncidentRow & { sort_value: number }>(sql, params);
      const [{ n }] = await db.query<{ n: number }>(
        `SELECT count(*)::bigint AS n FROM incidents WHERE ${filtered.join(' AND ')}`,
        filteredParams,
      );
      const more = rows.length > f.limit;
      const page = rows.slice(0, f.limit);
      const last = page[page.length - 1];
      return {
        incidents: page.map(toIncident),
        total: Number(n),
        nextCursor: more && last ? encodeCursor(Number(last.sort_value), last.id) : null,
      };
    },

    async get(id, tenants) {
      const row = await loadIncident(db, id, tenants);
      return row ? detail(db, row) : undefined;
    },

    async create(input, actor) {
      if (typeof input.title !== 'string' || input.title.trim() === '' || input.title.length > 500) {
        throw new InputError('bad_title', 'title: 1 to 500 characters');
      }
      if (!SEVERITIES.includes(input.severity)) {
        throw new InputError('bad_severity', `severity must be one of ${SEVERITIES.join(', ')}`);
      }
      const tags = checkTags(input.tags ?? []);
      const patch = input.assignee == null ? {} : checkPatch({ assignee: input.assignee });
      const idList = (v: unknown, what: string): string[] => {
        if (v === undefined) return [];
        if (
          !Array.isArray(v) ||
          v.length > 10000 ||
          !v.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 256)
        ) {
          throw new InputError(`bad_${what}`, `${what}: a list of ids`);
        }
        return [...new Set(v as string[])];
      };
      const alertIds = idList(input.alertIds, 'alert_ids');
      const eventIds = idList(input.eventIds, 'event_ids');
      const id = randomUUID();
      const t = Date.now();
      const rank = severityRank(input.severity);
      const row = await db.transaction(async (tx) => {
        await tx.query(
          `INSERT INTO incidents (id, tenant, title, severity, severity_rank, status, assignee, tags, alert_count,
             created_by, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, 'new', $6, $7, 0, $8, $9, $9)`,
          [id, input.tenant, input.title, input.severity, rank, patch.assignee ?? null, tags, actor, t],
        );
        await timelineAdd(tx, id, t, actor, 'created', null, 'new', { manual: true });
        if (alertIds.length > 0) {
          // Alerts already in an incident stay where they are: an alert belongs to one incident. Ids are
          // looked up in the incident's tenant only, so another tenant's alert is an unknown id here.
          const taken = await tx.query<{ alert_id: string; incident_id: string }>(
            'SELECT alert_id, incident_id FROM incident_alerts WHERE tenant = $2 AND alert_id = ANY($1::text[])',
            [alertIds, input.tenant],
          );
          if (taken.length > 0) {
            throw new VigilError(
              'alert_taken',
              `alerts ${taken.map((r) => r.alert_id).join(', ')} already belong to an incident`,
              {
                status: 409,
                details: { alerts: taken.map((r) => ({ alertId: r.alert_id, incidentId: r.incident_id })) },
              },
            );
          }
          for (const alertId of alertIds) {
            await tx.query(
              `INSERT INTO incident_alerts (alert_id, incident_id, tenant, rule_id, level, partition, fencing_token, alert_at, linked_at)
               VALUES ($1, $2, $3, '', $4, '', 0, $5, $5)`,
              [alertId, id, input.tenant, input.severity, t],
            );
            await timelineAdd(tx, id, t, actor, 'alert_linked', null, alertId);
          }
          await tx.query('UPDATE incidents SET alert_count = $2 WHERE id = $1', [id, alertIds.length]);
        }
        if (eventIds.length > 0) {
          await tx.query(
            'INSERT INTO incident_events (incident_id, event_id) SELECT $1, e FROM unnest($2::text[]) AS e ON CONFLICT DO NOTHING',
            [id, eventIds],
          );
        }
        await audit?.record(
          actor,
          'incident.create',
          `incident:${id}`,
          { title: input.title, severity: input.severity },
          {
            tenant: input.tenant,
            tx,
          },
        );
        return (await loadIncident(tx, id, [input.tenant]))!;
      });
      created.inc({ origin: 'manual' });
      return detail(db, row);
    },

    async update(id, tenants, patch, actor) {
      const checked = checkPatch(patch);
      return db.transaction((tx) => applyPatch(tx, id, tenants, checked, actor));
    },

    async addComment(id, tenants, body, actor) {
      if (typeof body !== 'string' || body.trim() === '' || body.length > 20000) {
        throw new InputError('bad_comment', 'body: 1 to 20000 characters');
      }
      return db.transaction(async (tx) => {
        const row = await loadIncident(tx, id, tenants, true);
        if (!row) throw notFound(id);
        const t = Date.now();
        const [c] = await tx.query<{ id: number }>(
          'INSERT INTO incident_comments (incident_id, author, body, created_at) VALUES ($1, $2, $3, $4) RETURNING id',
          [id, actor, body, t],
        );
        await timelineAdd(tx, id, t, actor, 'comment', null, null, { commentId: Number(c.id) });
        await tx.query('UPDATE incidents SET updated_at = $2 WHERE id = $1', [id, t]);
        await audit?.record(
          actor,
          'incident.comment',
          `incident:${id}`,
          { commentId: Number(c.id) },
          { tenant: row.tenant, tx },
        );
        return { id: Number(c.id), author: actor, body, createdAt: t };
      });
    },

    async timeline(id, tenants) {
      const row = await loadIncident(db, id, tenants);
      if (!row) throw notFound(id);
      const rows = await db.query<{
        id: number;
        at: number;
        actor: string;
        action: TimelineEntry['action'];
        from_value: string | null;
        to_value: string | null;
        details: Record<string, unknown> | null;
      }>('SELECT * FROM incident_timeline WHERE incident_id = $1 ORDER BY id', [id]);
      return rows.map((r) => ({
        id: Number(r.id),
        at: Number(r.at),
        actor: r.actor,
        action: r.action,
        from: r.from_value,
        to: r.to_value,
        details: r.details,
      }));
    },

    async bulk(ids, tenants, patch, actor) {
      const checked = checkPatch(patch);
      const out: BulkOutcome[] = [];
      // One transaction per incident: one refused transition does not undo the others.
      for (const id of [...new Set(ids)]) {
        try {
          out.push({
            id,
            ok: true,
            incident: await db.transaction((tx) => applyPatch(tx, id, tenants, checked, actor)),
          });
        } catch (err) {
          if (!(err instanceof VigilError) || err.status >= 500) throw err;
          out.push({ id, ok: false, error: { code: err.code, message: err.message } });
        }
      }
      return out;
    },

    async rejectedAlerts(tenants, limit) {
      const rows = await db.query<{
        alert_id: string;
        partition: string;
        fencing_token: number;
        highest_token: number;
        tenant: string;
        rejected_at: number;
      }>(`SELECT * FROM rejected_alerts WHERE tenant = ANY($1::text[]) ORDER BY rejected_at DESC, alert_id LIMIT $2`, [
        tenants,
        limit,
      ]);
      return rows.map((r) => ({
        alertId: r.alert_id,
        partition: r.partition,
        fencingToken: Number(r.fencing_token),
        highestToken: Number(r.highest_token),
        reason: 'stale_fencing_token' as const,
        tenant: r.tenant,
        rejectedAt: Number(r.rejected_at),
      }));
    },
  };
}
