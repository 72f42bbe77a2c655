import { randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Db } from '../db/index.ts';
import type { Alert } from '../detect/alerts/index.ts';
import { SEVERITIES } from '../detect/alerts/severity.ts';
import type { Component } from '../lib/component.ts';
import { InputError, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter } from '../lib/metrics.ts';
import type { AuditLog } from '../users/index.ts';
import type { IncidentsConfig } from './config.ts';
import { createGroupingQueue } from './grouping.ts';
import type {
  BulkOutcome,
  Incident,
  IncidentComment,
  IncidentDetail,
  IncidentFilter,
  IncidentPage,
  IncidentPatch,
  IngestResult,
  NewIncident,
  RejectedAlert,
  TimelineEntry,
} from './model.ts';
import {
  insertComment,
  insertManualIncident,
  linkEvents,
  linkManualAlerts,
  listIncidents,
  loadDetail,
  loadIncident,
  type ManualIncidentRow,
  notFound,
  readRejectedAlerts,
  readTimeline,
} from './repository.ts';
import { applyPatch, checkPatch, checkTags } from './transitions.ts';

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

/**
 * Creates the incident service on `db` (opens nothing; `start` only accepts work): the grouping queue
 * (grouping.ts) for alerts, the repository (repository.ts) for reads and writes, and the transition rules
 * (transitions.ts) for changes by analysts.
 */
export function createIncidentService(
  config: IncidentsConfig,
  deps: { db: Db; metrics: Registry; logger: Logger; audit?: AuditLog },
): IncidentComponent {
  const { db, audit } = deps;
  const logger = deps.logger.child({ component: 'incidents' });
  const created = counter(
    deps.metrics,
    'vigil_incidents_created_total',
    'Incidents created, by origin (alerts, manual).',
    ['origin'],
  );
  const grouping = createGroupingQueue(config, { db, metrics: deps.metrics, logger, created });

  return {
    name: 'incidents',
    async start() {
      grouping.start();
    },
    stop: (deadline) => grouping.stop(deadline),
    health: () => grouping.health(),
    ingestAlerts: (alerts) => grouping.ingestAlerts(alerts),
    list: (filter) => listIncidents(db, filter),

    async get(id, tenants) {
      const row = await loadIncident(db, id, tenants);
      return row ? loadDetail(db, row) : undefined;
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
      const incident: ManualIncidentRow = {
        id: randomUUID(),
        tenant: input.tenant,
        title: input.title,
        severity: input.severity,
        assignee: patch.assignee ?? null,
        tags,
        actor,
        at: Date.now(),
      };
      const row = await db.transaction(async (tx) => {
        await insertManualIncident(tx, incident);
        if (alertIds.length > 0) await linkManualAlerts(tx, incident, alertIds);
        if (eventIds.length > 0) await linkEvents(tx, incident.id, eventIds);
        await audit?.record(
          actor,
          'incident.create',
          `incident:${incident.id}`,
          { title: input.title, severity: input.severity },
          { tenant: input.tenant, tx },
        );
        return (await loadIncident(tx, incident.id, [input.tenant]))!;
      });
      created.inc({ origin: 'manual' });
      return loadDetail(db, row);
    },

    async update(id, tenants, patch, actor) {
      const checked = checkPatch(patch);
      return db.transaction((tx) => applyPatch(tx, id, tenants, checked, actor, audit));
    },

    async addComment(id, tenants, body, actor) {
      if (typeof body !== 'string' || body.trim() === '' || body.length > 20000) {
        throw new InputError('bad_comment', 'body: 1 to 20000 characters');
      }
      return db.transaction(async (tx) => {
        const row = await loadIncident(tx, id, tenants, true);
        if (!row) throw notFound(id);
        const comment = await insertComment(tx, id, actor, body, Date.now());
        await audit?.record(
          actor,
          'incident.comment',
          `incident:${id}`,
          { commentId: comment.id },
          { tenant: row.tenant, tx },
        );
        return comment;
      });
    },

    async timeline(id, tenants) {
      const row = await loadIncident(db, id, tenants);
      if (!row) throw notFound(id);
      return readTimeline(db, id);
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
            incident: await db.transaction((tx) => applyPatch(tx, id, tenants, checked, actor, audit)),
          });
        } catch (err) {
          if (!(err instanceof VigilError) || err.status >= 500) throw err;
          out.push({ id, ok: false, error: { code: err.code, message: err.message } });
        }
      }
      return out;
    },

    rejectedAlerts: (tenants, limit) => readRejectedAlerts(db, tenants, limit),
  };
}
