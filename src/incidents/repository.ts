/**
 * The SQL of incidents that grouping does not own: rows and their mapping, reads (one incident, its detail,
 * listings with cursors, the timeline, refused alerts) and the writes of manual incidents, comments and
 * patches. Every function runs on the Queryable it is given (the database or a transaction of it).
 */
import type { Queryable } from '../db/index.ts';
import { type Severity, severityRank } from '../detect/alerts/severity.ts';
import { InputError, VigilError } from '../lib/errors.ts';
import type {
  Incident,
  IncidentComment,
  IncidentDetail,
  IncidentFilter,
  IncidentPage,
  IncidentPatch,
  IncidentSort,
  IncidentStatus,
  RejectedAlert,
  TimelineEntry,
} from './model.ts';

/** A row of the incidents table. */
export interface IncidentRow {
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

/** An incident row as the API shows it. */
export const toIncident = (r: IncidentRow): Incident => ({
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

/** No incident `id` among the principal's tenants: answered exactly like an id that does not exist. */
export const notFound = (id: string) => new VigilError('not_found', `no incident ${id}`, { status: 404 });

/** Adds one entry to an incident's timeline. */
export const timelineAdd = (
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

/** The incident `id` if it is in one of `tenants`; `lock` holds its row until the transaction ends. */
export const loadIncident = async (q: Queryable, id: string, tenants: string[], lock = false) =>
  (
    await q.query<IncidentRow>(
      `SELECT * FROM incidents WHERE id = $1 AND tenant = ANY($2::text[])${lock ? ' FOR UPDATE' : ''}`,
      [id, tenants],
    )
  )[0] as IncidentRow | undefined;

/** An incident with its alerts, events and comments. */
export async function loadDetail(q: Queryable, row: IncidentRow): Promise<IncidentDetail> {
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
}

const SORT_SQL: Record<IncidentSort, string> = {
  created_at: 'created_at',
  updated_at: 'updated_at',
  severity: 'severity_rank',
  last_alert_at: 'COALESCE(last_alert_at, created_at)',
};

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

/** One page of incidents under `f`, with the total and the cursor of the next page. */
export async function listIncidents(q: Queryable, f: IncidentFilter): Promise<IncidentPage> {
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
  const rows = await q.query<IncidentRow & { sort_value: number }>(sql, params);
  const [{ n }] = await q.query<{ n: number }>(
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
}

/** An incident's timeline, oldest first. */
export async function readTimeline(q: Queryable, id: string): Promise<TimelineEntry[]> {
  const rows = await q.query<{
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
}

/** Alerts refused at intake in `tenants`, newest first. */
export async function readRejectedAlerts(
  q: Queryable,
  tenants: string[],
  limit: number,
): Promise<(RejectedAlert & { tenant: string; rejectedAt: number })[]> {
  const rows = await q.query<{
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
}

/** A manual incident as created (status new, no alert yet). */
export interface ManualIncidentRow {
  id: string;
  tenant: string;
  title: string;
  severity: Severity;
  assignee: string | null;
  tags: string[];
  actor: string;
  at: number;
}

/** Inserts a manual incident with its timeline entry. */
export async function insertManualIncident(tx: Queryable, r: ManualIncidentRow): Promise<void> {
  await tx.query(
    `INSERT INTO incidents (id, tenant, title, severity, severity_rank, status, assignee, tags, alert_count,
       created_by, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, 'new', $6, $7, 0, $8, $9, $9)`,
    [r.id, r.tenant, r.title, r.severity, severityRank(r.severity), r.assignee, r.tags, r.actor, r.at],
  );
  await timelineAdd(tx, r.id, r.at, r.actor, 'created', null, 'new', { manual: true });
}

/**
 * Links `alertIds` of the incident's tenant to a manual incident. Alerts already in an incident stay where
 * they are (an alert belongs to one incident): refused with 409 alert_taken. Ids are looked up in the
 * incident's tenant only, so another tenant's alert is an unknown id here.
 */
export async function linkManualAlerts(tx: Queryable, r: ManualIncidentRow, alertIds: string[]): Promise<void> {
  const taken = await tx.query<{ alert_id: string; incident_id: string }>(
    'SELECT alert_id, incident_id FROM incident_alerts WHERE tenant = $2 AND alert_id = ANY($1::text[])',
    [alertIds, r.tenant],
  );
  if (taken.length > 0) {
    throw new VigilError(
      'alert_taken',
      `alerts ${taken.map((t) => t.alert_id).join(', ')} already belong to an incident`,
      {
        status: 409,
        details: { alerts: taken.map((t) => ({ alertId: t.alert_id, incidentId: t.incident_id })) },
      },
    );
  }
  for (const alertId of alertIds) {
    await tx.query(
      `INSERT INTO incident_alerts (alert_id, incident_id, tenant, rule_id, level, partition, fencing_token, alert_at, linked_at)
       VALUES ($1, $2, $3, '', $4, '', 0, $5, $5)`,
      [alertId, r.id, r.tenant, r.severity, r.at],
    );
    await timelineAdd(tx, r.id, r.at, r.actor, 'alert_linked', null, alertId);
  }
  await tx.query('UPDATE incidents SET alert_count = $2 WHERE id = $1', [r.id, alertIds.length]);
}

/** Links events to an incident (each once). */
export async function linkEvents(tx: Queryable, incidentId: string, eventIds: string[]): Promise<void> {
  await tx.query(
    'INSERT INTO incident_events (incident_id, event_id) SELECT $1, e FROM unnest($2::text[]) AS e ON CONFLICT DO NOTHING',
    [incidentId, eventIds],
  );
}

/** Adds a comment to an incident (with its timeline entry) and touches the incident. */
export async function insertComment(
  tx: Queryable,
  incidentId: string,
  actor: string,
  body: string,
  at: number,
): Promise<IncidentComment> {
  const [c] = await tx.query<{ id: number }>(
    'INSERT INTO incident_comments (incident_id, author, body, created_at) VALUES ($1, $2, $3, $4) RETURNING id',
    [incidentId, actor, body, at],
  );
  await timelineAdd(tx, incidentId, at, actor, 'comment', null, null, { commentId: Number(c.id) });
  await tx.query('UPDATE incidents SET updated_at = $2 WHERE id = $1', [incidentId, at]);
  return { id: Number(c.id), author: actor, body, createdAt: at };
}

/** Writes a patch over `row` (fields the patch leaves out keep their values). */
export async function writePatch(tx: Queryable, row: IncidentRow, patch: IncidentPatch, at: number): Promise<Incident> {
  const [updated] = await tx.query<IncidentRow>(
    `UPDATE incidents SET status = $2, assignee = $3, severity = $4, severity_rank = $5, tags = $6, title = $7,
       updated_at = $8 WHERE id = $1 RETURNING *`,
    [
      row.id,
      patch.status ?? row.status,
      patch.assignee === undefined ? row.assignee : patch.assignee,
      patch.severity ?? row.severity,
      severityRank(patch.severity ?? row.severity),
      patch.tags ?? row.tags,
      patch.title ?? row.title,
      at,
    ],
  );
  return toIncident(updated);
}
