/**
 * How an incident changes: the status transition table, the checks of a patch (status, assignee, tags,
 * severity, title), and applying one, each change on the timeline and in the audit log.
 */
import type { Queryable } from '../db/index.ts';
import { SEVERITIES } from '../detect/alerts/severity.ts';
import { InputError, VigilError } from '../lib/errors.ts';
import type { AuditLog } from '../users/index.ts';
import { INCIDENT_STATUSES, type Incident, type IncidentPatch, type IncidentStatus, MAX_TAGS, TAG } from './model.ts';
import { loadIncident, notFound, timelineAdd, toIncident, writePatch } from './repository.ts';

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

/** A status change refused by the transition table (answered 409 with the reason). */
export class InvalidTransitionError extends VigilError {
  constructor(from: IncidentStatus, to: IncidentStatus, reason: string) {
    super('invalid_transition', reason, { status: 409, details: { from, to } });
    this.name = 'InvalidTransitionError';
  }
}

/** The tags of a request, each once, or 400 bad_tags. */
export function checkTags(tags: unknown): string[] {
  if (!Array.isArray(tags) || tags.length > MAX_TAGS || !tags.every((t) => typeof t === 'string' && TAG.test(t))) {
    throw new InputError(
      'bad_tags',
      `tags: a list of at most ${MAX_TAGS} tags of 1 to 64 characters without spaces or commas`,
    );
  }
  return [...new Set(tags as string[])];
}

/** A patch with every given field checked (400 naming the field), or 400 empty_patch when it changes nothing. */
export function checkPatch(patch: IncidentPatch): IncidentPatch {
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

/**
 * Applies a checked patch inside `tx`; the incident row is locked so concurrent changes serialize. A refused
 * transition throws InvalidTransitionError; a patch that changes nothing writes nothing.
 */
export async function applyPatch(
  tx: Queryable,
  id: string,
  tenants: string[],
  patch: IncidentPatch,
  actor: string,
  audit?: AuditLog,
): Promise<Incident> {
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
  const updated = await writePatch(tx, row, patch, t);
  await audit?.record(actor, 'incident.update', `incident:${id}`, changes, { tenant: row.tenant, tx });
  return updated;
}
