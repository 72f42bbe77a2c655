/**
 * The plan of one grouping batch, computed without a database from what the batch's reads returned: which
 * alerts are duplicates or refused by their fencing token, which incident each accepted alert joins or
 * opens, and every row to write. It decides exactly as grouping the alerts one at a time in batch order
 * would (same incidents and windows, same timeline entries in the same order), so that group-batch.ts can
 * write a batch in a number of statements that does not grow with its alerts.
 */
import type { Alert } from '../detect/alerts/index.ts';
import { SEVERITIES, severityRank } from '../detect/alerts/severity.ts';
import { MAX_TAGS, type RejectedAlert, TAG } from './model.ts';

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

/** An alert id (or a grouping key) within its tenant, as one string. */
export const inTenant = (tenant: string, id: string): string => `${tenant}\u0000${id}`;

/**
 * The token of each partition's first alert not linked before the batch: the batch upserts these once
 * (keeping the higher of them and the stored one), as the alert-by-alert order did at the first alert of
 * each partition. Alerts linked already never reach the fencing check.
 */
export function firstTokens(alerts: readonly Alert[], known: ReadonlySet<string>): Map<string, number> {
  const first = new Map<string, number>();
  for (const a of alerts) {
    if (!known.has(inTenant(a.tenant, a.id)) && !first.has(a.partition)) first.set(a.partition, a.fencingToken);
  }
  return first;
}

/** An alert that passed dedupe and fencing, with its grouping key. */
export interface AcceptedAlert {
  alert: Alert;
  key: string;
}

/** What the dedupe and the fencing check decided for a batch. */
export interface Screening {
  /** In batch order. */
  accepted: AcceptedAlert[];
  /** In batch order. */
  rejected: RejectedAlert[];
  /** The tenant of each refused alert (the same index as `rejected`). */
  rejectedTenants: string[];
  duplicates: number;
  /** Partitions whose token rose above the upserted one within the batch, with the highest token seen. */
  raised: Map<string, number>;
}

/**
 * Dedupe and fencing in batch order. `tokens` holds each partition's token after the first upsert (its row
 * stays locked until commit, so the stored token is what this batch made it): an alert below the highest
 * token seen so far is refused, one above it raises it for the alerts after it.
 */
export function screenAlerts(
  alerts: readonly Alert[],
  known: ReadonlySet<string>,
  tokens: ReadonlyMap<string, number>,
  groupBy: readonly string[],
): Screening {
  const seen = new Set(known);
  const highest = new Map(tokens);
  const out: Screening = { accepted: [], rejected: [], rejectedTenants: [], duplicates: 0, raised: new Map() };
  for (const a of alerts) {
    const ref = inTenant(a.tenant, a.id);
    if (seen.has(ref)) {
      out.duplicates++;
      continue;
    }
    const top = highest.get(a.partition) ?? a.fencingToken;
    if (a.fencingToken > top) {
      highest.set(a.partition, a.fencingToken);
      out.raised.set(a.partition, a.fencingToken);
    } else if (a.fencingToken < top) {
      out.rejected.push({
        alertId: a.id,
        partition: a.partition,
        fencingToken: a.fencingToken,
        highestToken: top,
        reason: 'stale_fencing_token',
      });
      out.rejectedTenants.push(a.tenant);
      continue;
    }
    seen.add(ref);
    out.accepted.push({ alert: a, key: groupKeyOf(a, groupBy) });
  }
  return out;
}

/** An open incident of one of the batch's keys whose window overlaps the batch's alerts of that key. */
export interface OpenIncident {
  id: string;
  tenant: string;
  groupKey: string;
  windowStart: number;
  windowEnd: number;
  severity: string;
  severityRank: number;
}

/** An incident's values after the batch's alerts. */
interface Tally {
  severity: string;
  severityRank: number;
  firstAlertAt: number;
  lastAlertAt: number;
  /** An opened incident's alerts; for an incident open before, the alerts the batch adds. */
  alertCount: number;
}

/** An incident the batch opens, with its values after all of the batch's alerts. */
export interface OpenedIncident extends Tally {
  id: string;
  tenant: string;
  title: string;
  tags: string[];
  groupKey: string;
  ruleId: string;
  host: string | null;
  windowStart: number;
  windowEnd: number;
}

/** What the batch changes in an incident that was open before it (first/last are the batch's own). */
export interface IncidentGrowth extends Tally {
  id: string;
}

/** One timeline entry written by grouping (actor `system`). */
export interface PlannedEntry {
  incidentId: string;
  action: 'created' | 'alert_linked' | 'severity';
  from: string | null;
  to: string;
  details: Record<string, unknown>;
}

/** Every row a batch writes, in the order the alert-by-alert grouping would have written them. */
export interface GroupingPlan {
  opened: OpenedIncident[];
  grown: IncidentGrowth[];
  links: { alert: Alert; incidentId: string }[];
  events: { incidentId: string; eventId: string }[];
  timeline: PlannedEntry[];
  /** Incidents opened or grown, in the order of their first alert in the batch. */
  incidentIds: string[];
}

/** An incident alerts may join: its window, its severity so far, and what the batch writes of it. */
interface Working {
  id: string;
  windowStart: number;
  windowEnd: number;
  severity: string;
  severityRank: number;
  tally?: Tally;
}

/**
 * Assigns accepted alerts (in batch order) to incidents: an alert joins the open incident of its key whose
 * window holds its time (the latest-starting one, as `ORDER BY window_start DESC LIMIT 1` did), incidents
 * opened earlier in the batch included, else opens one whose window starts at its time. Severity rises to
 * the highest level seen, with a `severity` entry from the severity before that alert.
 */
export function planIncidents(
  accepted: readonly AcceptedAlert[],
  open: readonly OpenIncident[],
  opts: { windowMs: number; newId: () => string },
): GroupingPlan {
  const plan: GroupingPlan = { opened: [], grown: [], links: [], events: [], timeline: [], incidentIds: [] };
  const byKey = new Map<string, Working[]>();
  for (const o of open) {
    const k = inTenant(o.tenant, o.groupKey);
    const list = byKey.get(k) ?? [];
    list.push({
      id: o.id,
      windowStart: o.windowStart,
      windowEnd: o.windowEnd,
      severity: o.severity,
      severityRank: o.severityRank,
    });
    byKey.set(k, list);
  }
  const eventsSeen = new Set<string>();
  for (const { alert: a, key } of accepted) {
    const k = inTenant(a.tenant, key);
    const candidates = byKey.get(k) ?? [];
    byKey.set(k, candidates);
    let target: Working | undefined;
    for (const c of candidates) {
      if (c.windowStart <= a.timestamp && c.windowEnd > a.timestamp && (!target || c.windowStart > target.windowStart))
        target = c;
    }
    const rank = severityRank(a.rule.level);
    const opening = target === undefined;
    if (target === undefined) {
      const opened: OpenedIncident = {
        id: opts.newId(),
        tenant: a.tenant,
        title: a.host ? `${a.rule.title} on ${a.host}` : a.rule.title,
        tags: a.rule.tags.filter((tag) => TAG.test(tag)).slice(0, MAX_TAGS),
        groupKey: key,
        ruleId: a.rule.id,
        host: a.host || null,
        windowStart: a.timestamp,
        windowEnd: a.timestamp + opts.windowMs,
        severity: SEVERITIES[rank],
        severityRank: rank,
        firstAlertAt: a.timestamp,
        lastAlertAt: a.timestamp,
        alertCount: 0,
      };
      target = {
        id: opened.id,
        windowStart: opened.windowStart,
        windowEnd: opened.windowEnd,
        severity: opened.severity,
        severityRank: opened.severityRank,
        tally: opened,
      };
      candidates.push(target);
      plan.opened.push(opened);
      plan.incidentIds.push(opened.id);
      plan.timeline.push({
        incidentId: opened.id,
        action: 'created',
        from: null,
        to: 'new',
        details: { alertId: a.id, groupKey: key },
      });
    }
    const before = target.severity;
    if (rank > target.severityRank) {
      target.severity = SEVERITIES[rank];
      target.severityRank = rank;
    }
    if (!target.tally) {
      // Only an incident open before the batch is without one: an opened incident is its own.
      const growth: IncidentGrowth = {
        id: target.id,
        severity: target.severity,
        severityRank: target.severityRank,
        firstAlertAt: a.timestamp,
        lastAlertAt: a.timestamp,
        alertCount: 0,
      };
      target.tally = growth;
      plan.grown.push(growth);
      plan.incidentIds.push(target.id);
    }
    const tally = target.tally;
    tally.alertCount++;
    tally.severity = target.severity;
    tally.severityRank = target.severityRank;
    tally.firstAlertAt = Math.min(tally.firstAlertAt, a.timestamp);
    tally.lastAlertAt = Math.max(tally.lastAlertAt, a.timestamp);
    plan.links.push({ alert: a, incidentId: target.id });
    for (const e of a.eventIds) {
      const ref = inTenant(target.id, e);
      if (!eventsSeen.has(ref)) {
        eventsSeen.add(ref);
        plan.events.push({ incidentId: target.id, eventId: e });
      }
    }
    plan.timeline.push({
      incidentId: target.id,
      action: 'alert_linked',
      from: null,
      to: a.id,
      details: { rule: a.rule.id, level: a.rule.level },
    });
    if (!opening && severityRank(before) < rank) {
      plan.timeline.push({
        incidentId: target.id,
        action: 'severity',
        from: before,
        to: SEVERITIES[rank],
        details: { alertId: a.id },
      });
    }
  }
  return plan;
}
