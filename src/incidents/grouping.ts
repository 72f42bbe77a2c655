/**
 * Grouping: alerts joined to incidents by key and time window. A FIFO queue (so fencing tokens are seen in
 * order) hands batches to one transaction each: fencing check, dedupe by alert id, and grouping under an
 * advisory lock per key, so two nodes never open two incidents for one key. Database errors are retried
 * with backoff until the stop's deadline; a full queue refuses new alerts (the alert log hands them over
 * again).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Counter, Registry } from 'prom-client';
import { type Db, withDbRetry } from '../db/index.ts';
import type { Alert } from '../detect/alerts/index.ts';
import { SEVERITIES, type Severity, severityRank } from '../detect/alerts/severity.ts';
import type { ComponentHealth } from '../lib/component.ts';
import { settleBy } from '../lib/deadline.ts';
import { errorMessage, OverloadError, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge } from '../lib/metrics.ts';
import type { IncidentsConfig } from './config.ts';
import { type IngestResult, MAX_TAGS, OPEN_STATUSES, type RejectedAlert, TAG } from './model.ts';
import { timelineAdd } from './repository.ts';

const OPEN_SQL = OPEN_STATUSES.map((s) => `'${s}'`).join(', ');

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

/** The grouping queue: takes alert batches in order and commits them to incidents. */
export interface GroupingQueue {
  start(): void;
  /** Refuses new alerts, and groups the queued ones until the deadline. */
  stop(deadline: number): Promise<void>;
  health(): ComponentHealth;
  /** See IncidentService.ingestAlerts. */
  ingestAlerts(alerts: readonly Alert[]): Promise<IngestResult>;
}

/** Creates the grouping queue on `db` (accepts nothing before `start`). */
export function createGroupingQueue(
  config: IncidentsConfig,
  deps: {
    db: Db;
    metrics: Registry;
    logger: Logger;
    /** vigil_incidents_created_total, created once by the service (which also counts manual incidents). */
    created: Counter<'origin'>;
  },
): GroupingQueue {
  const { db, logger } = deps;
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
  const { created } = deps;

  let accepting = false;
  let stopDeadline = Number.POSITIVE_INFINITY;
  let pending = 0;
  let chain: Promise<unknown> = Promise.resolve();
  let lastFailure: string | undefined;

  /** One transaction: fencing check, dedupe and grouping for each alert of the batch, in order. */
  const ingestBatch = (alerts: readonly Alert[]): Promise<IngestResult> =>
    db.transaction(async (tx) => {
      const result: IngestResult = { opened: 0, linked: 0, duplicates: 0, rejected: [], incidentIds: [] };
      const touched = new Set<string>();
      const alertKey = (tenant: string, id: string) => `${tenant}\u0000${id}`;
      const known = new Set(
        // By (tenant, alert_id) pairs, so the primary key is used (an alert id alone is no index prefix).
        (
          await tx.query<{ tenant: string; alert_id: string }>(
            `SELECT tenant, alert_id FROM incident_alerts
             WHERE (tenant, alert_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
            [alerts.map((a) => a.tenant), alerts.map((a) => a.id)],
          )
        ).map((r) => alertKey(r.tenant, r.alert_id)),
      );
      const t = Date.now();
      /**
       * The highest token of each partition upserted in this transaction. The row stays locked until commit, so
       * an alert with a token no higher than it would change nothing: it is judged without a statement (the
       * alerts of a batch mostly share one partition and token; PGlite spends about 1 ms a statement).
       */
      const highestOf = new Map<string, number>();
      const locked = new Set<ReturnType<typeof lockKey>>();
      for (const a of alerts) {
        if (known.has(alertKey(a.tenant, a.id))) {
          result.duplicates++;
          continue;
        }
        let highest = highestOf.get(a.partition);
        if (highest === undefined || a.fencingToken > highest) {
          // The upsert keeps the highest token and locks the partition's row until commit, so a stale
          // owner's transaction cannot interleave with the new owner's.
          const [{ token }] = await tx.query<{ token: number }>(
            `INSERT INTO partition_tokens (partition, token, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (partition) DO UPDATE SET token = GREATEST(partition_tokens.token, EXCLUDED.token),
               updated_at = EXCLUDED.updated_at
             RETURNING token`,
            [a.partition, a.fencingToken, t],
          );
          highest = Number(token);
          highestOf.set(a.partition, highest);
        }
        if (a.fencingToken < highest) {
          const r: RejectedAlert = {
            alertId: a.id,
            partition: a.partition,
            fencingToken: a.fencingToken,
            highestToken: highest,
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
        // Serializes grouping per key across nodes, so two nodes never open two incidents for one key. The lock
        // is held until commit: taken once per key and transaction.
        const lock = lockKey(a.tenant, key);
        if (!locked.has(lock)) {
          await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [lock]);
          locked.add(lock);
        }
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
        // One statement: the self-join's `prev` row is the incident as it was, for the severity timeline.
        const [before] = await tx.query<{ severity: Severity }>(
          `UPDATE incidents i SET alert_count = i.alert_count + 1,
             severity_rank = GREATEST(i.severity_rank, $2),
             severity = CASE WHEN $2 > i.severity_rank THEN $3 ELSE i.severity END,
             first_alert_at = LEAST(i.first_alert_at, $4), last_alert_at = GREATEST(i.last_alert_at, $4),
             updated_at = $5
           FROM incidents prev WHERE i.id = $1 AND prev.id = i.id
           RETURNING prev.severity AS severity`,
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

  return {
    start() {
      accepting = true;
      stopDeadline = Number.POSITIVE_INFINITY;
    },
    async stop(deadline) {
      accepting = false;
      stopDeadline = deadline;
      // Queued alerts are grouped until the deadline; retries give up at it (reported, not dropped silently).
      await settleBy(
        // Only waits: each batch's outcome goes to its own caller of ingestAlerts.
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
  };
}
