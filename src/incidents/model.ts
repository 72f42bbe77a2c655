import type { Severity } from '../detect/alerts/severity.ts';

export const INCIDENT_STATUSES = ['new', 'acknowledged', 'in_progress', 'resolved', 'false_positive'] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];

/** Statuses in which an incident still takes new alerts of its key. */
export const OPEN_STATUSES: readonly IncidentStatus[] = ['new', 'acknowledged', 'in_progress'];

/** What an incident tag is: 1 to 64 characters without spaces or commas; an incident has at most MAX_TAGS. */
export const TAG = /^[^\s,]{1,64}$/;
export const MAX_TAGS = 50;

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
