import type { Severity } from '../detect/alerts/severity.ts';

export const INCIDENT_STATUSES = ['new', 'acknowledged', 'in_progress', 'resolved', 'false_positive'] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];

/** Statuses in which an incident still takes new alerts of its key. */
export const OPEN_STATUSES: readonly IncidentStatus[] = ['new', 'acknowledged', 'in_progress'];

/**
 * Allowed status changes. An incident never goes back to `new` (it means nobody has looked at it yet);
 * reopening a resolved or false-positive incident moves it to `acknowledged` or `in_progress`. A closed
 * incident may be reclassified (resolved <-> false_positive). Setting the current status is a no-op.
 */
export const TRANSITIONS: Readonly<Record<IncidentStatus, readonly IncidentStatus[]>> = {
  new: ['acknowledged', 'in_progress', 'resolved', 'false_positive'],
  acknowledged: ['in_progress', 'resolved', 'false_positive'],
  in_progress: ['acknowledged', 'resolved', 'false_positive'],
  resolved: ['acknowledged', 'in_progress', 'false_positive'],
  false_positive: ['acknowledged', 'in_progress', 'resolved'],
};

/** Why `from -> to` is refused, or undefined when it is allowed (or a no-op). */
export function transitionRefusal(from: IncidentStatus, to: IncidentStatus): string | undefined {
  if (from === to || TRANSITIONS[from].includes(to)) return undefined;
  if (to === 'new') {
    return `an incident never goes back to new (${from} -> new); reopen it as acknowledged or in_progress`;
  }
  return `${from} -> ${to} is not allowed; from ${from} an incident may go to ${TRANSITIONS[from].join(', ')}`;
}

/** An incident as the API shows it. Times are epoch milliseconds. */
export interface Incident {
  id: string;
  tenant: string;
  title: string;
  severity: Severity;
  status: IncidentStatus;
  assignee: string | null;
  tags: string[];
  /** The grouping key (null for a manual incident). */
  groupKey: string | null;
  ruleId: string | null;
  host: string | null;
  windowStart: number | null;
  windowEnd: number | null;
  firstAlertAt: number | null;
  lastAlertAt: number | null;
  alertCount: number;
  createdBy: string;
  createdAt: number;
  updatedAt: number;
}

/** An incident with its links and comments (GET /api/v1/incidents/:id). */
export interface IncidentDetail extends Incident {
  alertIds: string[];
  eventIds: string[];
  comments: IncidentComment[];
}

export interface IncidentComment {
  id: number;
  author: string;
  body: string;
  createdAt: number;
}

/** One entry of an incident's timeline: creation, every status/assignee/severity/tags change, links, comments. */
export interface TimelineEntry {
  id: number;
  at: number;
  actor: string;
  action: 'created' | 'status' | 'assignee' | 'severity' | 'tags' | 'title' | 'alert_linked' | 'comment';
  from: string | null;
  to: string | null;
  details: Record<string, unknown> | null;
}

/** An alert refused at intake, and why. */
export interface RejectedAlert {
  alertId: string;
  partition: string;
  fencingToken: number;
  /** The highest token seen for the partition when it was refused. */
  highestToken: number;
  reason: 'stale_fencing_token';
}

/** What one intake call did. */
export interface IngestResult {
  /** Incidents opened by this call. */
  opened: number;
  /** Alerts linked to an incident now. */
  linked: number;
  /** Alerts already linked before (same id): nothing changed. */
  duplicates: number;
  rejected: RejectedAlert[];
  /** Incidents created or grown by this call. */
  incidentIds: string[];
}
