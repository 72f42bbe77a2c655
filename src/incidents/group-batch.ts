/**
 * The grouping transaction of one batch, in set-based statements: their number grows with nothing but the
 * kinds of rows written (about ten whatever the batch's size), where grouping alert by alert took five to
 * eight statements an alert (about 1 ms of CPU each on PGlite). The decisions are group-plan.ts's; this
 * module holds the SQL and its order:
 *
 * 1. the alerts linked already (dedupe), one statement;
 * 2. the partitions' fencing tokens, one upsert (partitions in sorted order), and one raise when a token rose
 *    within the batch; the refused alerts, one insert;
 * 3. the advisory locks of the accepted alerts' keys, one statement taking them in sorted order (so that
 *    two nodes locking overlapping keys wait for each other instead of deadlocking), then the open incidents
 *    of those keys overlapping the batch's times, locked (FOR UPDATE) so that the severities read stay true
 *    until commit;
 * 4. the plan's rows: new incidents, links (ON CONFLICT DO NOTHING), growth of the incidents open before,
 *    events, and the timeline in one insert whose ids ascend in the plan's order.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Db, Queryable } from '../db/index.ts';
import type { Alert } from '../detect/alerts/index.ts';
import { VigilError } from '../lib/errors.ts';
import type { IncidentsConfig } from './config.ts';
import {
  firstTokens,
  type GroupingPlan,
  inTenant,
  type OpenIncident,
  planIncidents,
  screenAlerts,
} from './group-plan.ts';
import { type IngestResult, OPEN_STATUSES } from './model.ts';

const OPEN_SQL = OPEN_STATUSES.map((s) => `'${s}'`).join(', ');

/** A stable 64-bit advisory lock key for one grouping key of one tenant. */
export function lockKey(tenant: string, key: string): bigint {
  return BigInt.asIntN(
    64,
    BigInt(`0x${createHash('sha256').update(inTenant(tenant, key)).digest('hex').slice(0, 16)}`),
  );
}

/**
 * Some alerts of the batch were linked by another transaction after this one read the linked alerts (the
 * read comes before the locks: nodes grouping with different keys, or one alert handed to two nodes at
 * once). The transaction is rolled back and run again: the alerts are then known, counted as duplicates,
 * and no incident is opened for them. Reaches the queue only if the runs run out: the batch fails, and the alert
 * log hands it over again.
 */
export class AlertsTakenMeanwhileError extends VigilError {
  constructor(taken: number) {
    super('alerts_taken_meanwhile', `${taken} alerts of the batch were linked to incidents by another node meanwhile`, {
      status: 503,
      retryable: true,
    });
    this.name = 'AlertsTakenMeanwhileError';
  }
}

/**
 * Groups one batch in one transaction, run again when alerts were taken meanwhile: each run finds at least
 * one more alert linked, so a batch needs at most one run more than it has alerts.
 */
export async function groupBatch(db: Db, alerts: readonly Alert[], config: IncidentsConfig): Promise<IngestResult> {
  for (let run = 0; ; run++) {
    try {
      return await db.transaction((tx) => groupInTransaction(tx, alerts, config, Date.now()));
    } catch (err) {
      if (!(err instanceof AlertsTakenMeanwhileError) || run >= alerts.length) throw err;
    }
  }
}

async function groupInTransaction(
  tx: Queryable,
  alerts: readonly Alert[],
  config: IncidentsConfig,
  t: number,
): Promise<IngestResult> {
  // By (tenant, alert_id) pairs, so the primary key is used (an alert id alone is no index prefix).
  const known = new Set(
    (
      await tx.query<{ tenant: string; alert_id: string }>(
        `SELECT tenant, alert_id FROM incident_alerts
         WHERE (tenant, alert_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
        [alerts.map((a) => a.tenant), alerts.map((a) => a.id)],
      )
    ).map((r) => inTenant(r.tenant, r.alert_id)),
  );

  const first = [...firstTokens(alerts, known)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const tokens = new Map<string, number>();
  if (first.length > 0) {
    // Keeps the highest token and locks each partition's row until commit, so that a stale owner's
    // transaction cannot interleave with the new owner's.
    const rows = await tx.query<{ partition: string; token: number }>(
      `INSERT INTO partition_tokens (partition, token, updated_at)
       SELECT p, tok, $3 FROM unnest($1::text[], $2::bigint[]) AS u(p, tok)
       ON CONFLICT (partition) DO UPDATE SET token = GREATEST(partition_tokens.token, EXCLUDED.token),
         updated_at = EXCLUDED.updated_at
       RETURNING partition, token`,
      [first.map(([p]) => p), first.map(([, tok]) => tok), t],
    );
    for (const r of rows) tokens.set(r.partition, Number(r.token));
  }
  const screening = screenAlerts(alerts, known, tokens, config.group_by);
  const result: IngestResult = {
    opened: 0,
    linked: 0,
    duplicates: screening.duplicates,
    rejected: screening.rejected,
    incidentIds: [],
  };
  if (screening.raised.size > 0) {
    const raised = [...screening.raised];
    await tx.query(
      `UPDATE partition_tokens pt SET token = GREATEST(pt.token, u.tok), updated_at = $3
       FROM unnest($1::text[], $2::bigint[]) AS u(p, tok) WHERE pt.partition = u.p`,
      [raised.map(([p]) => p), raised.map(([, tok]) => tok), t],
    );
  }
  if (screening.rejected.length > 0) {
    const r = screening.rejected;
    await tx.query(
      `INSERT INTO rejected_alerts (alert_id, partition, fencing_token, highest_token, reason, tenant, rejected_at)
       SELECT *, $7::bigint FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[])
       ON CONFLICT DO NOTHING`,
      [
        r.map((x) => x.alertId),
        r.map((x) => x.partition),
        r.map((x) => x.fencingToken),
        r.map((x) => x.highestToken),
        r.map((x) => x.reason),
        screening.rejectedTenants,
        t,
      ],
    );
  }
  if (screening.accepted.length === 0) return result;

  // Per key: its lock, and the span of its alerts' times (the open incidents worth reading overlap it).
  const keys = new Map<string, { tenant: string; key: string; lock: bigint; lo: number; hi: number }>();
  for (const { alert: a, key } of screening.accepted) {
    const ref = inTenant(a.tenant, key);
    const k = keys.get(ref);
    if (k) {
      k.lo = Math.min(k.lo, a.timestamp);
      k.hi = Math.max(k.hi, a.timestamp);
    } else keys.set(ref, { tenant: a.tenant, key, lock: lockKey(a.tenant, key), lo: a.timestamp, hi: a.timestamp });
  }
  const locks = [...new Set([...keys.values()].map((k) => k.lock))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  // Serializes grouping per key across nodes, so two nodes never open two incidents for one key; held until
  // commit. unnest yields the array's order, so the locks are taken in sorted order.
  await tx.query('SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k', [locks.map(String)]);
  // A statement after the locks: its snapshot sees what the transactions that held them committed.
  const spans = [...keys.values()];
  const open = (
    await tx.query<{
      id: string;
      tenant: string;
      group_key: string;
      window_start: number;
      window_end: number;
      severity: string;
      severity_rank: number;
    }>(
      `SELECT i.id, i.tenant, i.group_key, i.window_start, i.window_end, i.severity, i.severity_rank
       FROM incidents i JOIN unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS k(tenant, gk, lo, hi)
         ON i.tenant = k.tenant AND i.group_key = k.gk AND i.window_start <= k.hi AND i.window_end > k.lo
       WHERE i.status IN (${OPEN_SQL})
       FOR UPDATE OF i`,
      [spans.map((k) => k.tenant), spans.map((k) => k.key), spans.map((k) => k.lo), spans.map((k) => k.hi)],
    )
  ).map(
    (r): OpenIncident => ({
      id: r.id,
      tenant: r.tenant,
      groupKey: r.group_key,
      windowStart: Number(r.window_start),
      windowEnd: Number(r.window_end),
      severity: r.severity,
      severityRank: Number(r.severity_rank),
    }),
  );
  const plan = planIncidents(screening.accepted, open, { windowMs: config.group_window_ms, newId: randomUUID });
  await writePlan(tx, plan, t);
  result.opened = plan.opened.length;
  result.linked = plan.links.length;
  result.incidentIds = plan.incidentIds;
  return result;
}

/** Writes a plan's rows: five statements at most. Throws AlertsTakenMeanwhileError when a link was taken. */
async function writePlan(tx: Queryable, plan: GroupingPlan, t: number): Promise<void> {
  const o = plan.opened;
  if (o.length > 0) {
    await tx.query(
      `INSERT INTO incidents (id, tenant, title, severity, severity_rank, status, assignee, tags, group_key,
         rule_id, host, window_start, window_end, first_alert_at, last_alert_at, alert_count, created_by,
         created_at, updated_at)
       SELECT u.id, u.tenant, u.title, u.severity, u.severity_rank, 'new', NULL,
         ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)), u.group_key, u.rule_id, u.host, u.window_start,
         u.window_end, u.first_alert_at, u.last_alert_at, u.alert_count, 'system', $15, $15
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::smallint[], $6::text[], $7::text[],
         $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::integer[])
         AS u(id, tenant, title, severity, severity_rank, tags, group_key, rule_id, host, window_start, window_end,
           first_alert_at, last_alert_at, alert_count)`,
      [
        o.map((x) => x.id),
        o.map((x) => x.tenant),
        o.map((x) => x.title),
        o.map((x) => x.severity),
        o.map((x) => x.severityRank),
        o.map((x) => JSON.stringify(x.tags)),
        o.map((x) => x.groupKey),
        o.map((x) => x.ruleId),
        o.map((x) => x.host),
        o.map((x) => x.windowStart),
        o.map((x) => x.windowEnd),
        o.map((x) => x.firstAlertAt),
        o.map((x) => x.lastAlertAt),
        o.map((x) => x.alertCount),
        t,
      ],
    );
  }
  const l = plan.links.map((x) => ({ ...x.alert, incidentId: x.incidentId }));
  const linked = await tx.query(
    `INSERT INTO incident_alerts (alert_id, incident_id, tenant, rule_id, level, partition, fencing_token, alert_at,
       linked_at)
     SELECT *, $9::bigint FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
       $7::bigint[], $8::bigint[])
     ON CONFLICT (tenant, alert_id) DO NOTHING RETURNING alert_id`,
    [
      l.map((a) => a.id),
      l.map((a) => a.incidentId),
      l.map((a) => a.tenant),
      l.map((a) => a.rule.id),
      l.map((a) => a.rule.level),
      l.map((a) => a.partition),
      l.map((a) => a.fencingToken),
      l.map((a) => a.timestamp),
      t,
    ],
  );
  if (linked.length < l.length) throw new AlertsTakenMeanwhileError(l.length - linked.length);
  const g = plan.grown;
  if (g.length > 0) {
    await tx.query(
      `UPDATE incidents i SET alert_count = i.alert_count + u.added, severity = u.severity,
         severity_rank = u.severity_rank, first_alert_at = LEAST(i.first_alert_at, u.first_at),
         last_alert_at = GREATEST(i.last_alert_at, u.last_at), updated_at = $7
       FROM unnest($1::text[], $2::integer[], $3::text[], $4::smallint[], $5::bigint[], $6::bigint[])
         AS u(id, added, severity, severity_rank, first_at, last_at)
       WHERE i.id = u.id`,
      [
        g.map((x) => x.id),
        g.map((x) => x.alertCount),
        g.map((x) => x.severity),
        g.map((x) => x.severityRank),
        g.map((x) => x.firstAlertAt),
        g.map((x) => x.lastAlertAt),
        t,
      ],
    );
  }
  if (plan.events.length > 0) {
    await tx.query(
      `INSERT INTO incident_events (incident_id, event_id) SELECT * FROM unnest($1::text[], $2::text[])
       ON CONFLICT DO NOTHING`,
      [plan.events.map((e) => e.incidentId), plan.events.map((e) => e.eventId)],
    );
  }
  // Ids are drawn in unnest's order, which is the plan's: each timeline reads `ORDER BY id` as it was written.
  const e = plan.timeline;
  await tx.query(
    `INSERT INTO incident_timeline (incident_id, at, actor, action, from_value, to_value, details)
     SELECT u.incident_id, $6, 'system', u.action, u.from_value, u.to_value, u.details::jsonb
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
       AS u(incident_id, action, from_value, to_value, details)`,
    [
      e.map((x) => x.incidentId),
      e.map((x) => x.action),
      e.map((x) => x.from),
      e.map((x) => x.to),
      e.map((x) => JSON.stringify(x.details)),
      t,
    ],
  );
}
