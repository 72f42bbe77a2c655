/**
 * Grouping: alerts joined to incidents by key and time window. A FIFO queue (so fencing tokens are seen in
 * order) hands batches to one transaction each (group-batch.ts): dedupe by alert id, fencing check, and
 * grouping under an advisory lock per key, so two nodes never open two incidents for one key. Database errors are retried
 * with backoff until the stop's deadline; a full queue refuses new alerts (the alert log hands them over
 * again).
 */
import type { Counter, Registry } from 'prom-client';
import { type Db, withDbRetry } from '../db/index.ts';
import type { Alert } from '../detect/alerts/index.ts';
import type { ComponentHealth } from '../lib/component.ts';
import { settleBy } from '../lib/deadline.ts';
import { errorMessage, OverloadError, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge } from '../lib/metrics.ts';
import type { IncidentsConfig } from './config.ts';
import { pgSafeAlert } from './pg-text.ts';
import { groupBatch } from './group-batch.ts';
import type { IngestResult } from './model.ts';

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

  /** Splits, retries and reports one queued call; runs only at the head of the FIFO. */
  const process = async (alerts: readonly Alert[]): Promise<IngestResult> => {
    const total: IngestResult = { opened: 0, linked: 0, duplicates: 0, rejected: [], incidentIds: [] };
    const began = Date.now();
    for (let i = 0; i < alerts.length; i += config.batch_max_alerts) {
      const batch = alerts.slice(i, i + config.batch_max_alerts);
      let r: IngestResult;
      try {
        r = await withDbRetry(() => groupBatch(db, batch, config), {
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
      const batch = alerts.map(pgSafeAlert);
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
