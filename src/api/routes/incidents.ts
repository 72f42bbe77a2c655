import { SEVERITIES, type Severity } from '../../detect/index.ts';
import {
  INCIDENT_SORTS,
  INCIDENT_STATUSES,
  type IncidentPatch,
  type IncidentService,
  type IncidentSort,
  type IncidentStatus,
} from '../../incidents/index.ts';
import { InputError, VigilError } from '../../lib/errors.ts';
import type { Notifier } from '../../notify/index.ts';
import { requireRole, requireTenant } from '../../users/index.ts';
import { onlyKeys, parseJsonBody } from '../body.ts';
import { parseIntParam } from '../params.ts';
import { routeDocs } from '../schemas.ts';
import { principalOf, type RouteGroup } from '../server.ts';
import { parseTimeParam } from '../time.ts';

type Query = Record<string, string | undefined>;

const PATCH_KEYS = ['status', 'assignee', 'tags', 'severity', 'title'];

/** An integer query parameter within bounds, or `fallback` when absent. */
export function intParam(q: Query, name: string, fallback: number, min: number, max: number): number {
  const raw = q[name];
  if (raw === undefined) return fallback;
  return parseIntParam(raw, name, min, max);
}

function listParam<T extends string>(q: Query, name: string, allowed: readonly T[]): T[] | undefined {
  const raw = q[name];
  if (raw === undefined) return undefined;
  const values = raw.split(',').map((s) => s.trim());
  const bad = values.filter((v) => !allowed.includes(v as T));
  if (bad.length > 0)
    throw new InputError(`bad_${name}`, `${name} must be among ${allowed.join(', ')} (comma-separated)`);
  return values as T[];
}

function patchOf(body: Record<string, unknown>): IncidentPatch {
  return {
    status: body.status as IncidentStatus | undefined,
    assignee: body.assignee as string | null | undefined,
    tags: body.tags as string[] | undefined,
    severity: body.severity as Severity | undefined,
    title: body.title as string | undefined,
  };
}

/**
 * Incidents: GET/POST /api/v1/incidents, GET/PATCH /api/v1/incidents/:id, POST .../:id/comments,
 * GET .../:id/timeline, POST /api/v1/incidents/bulk, GET /api/v1/incidents/rejected-alerts. Viewers
 * read; analysts and admins change. A principal sees only incidents of its tenants (others answer 404).
 */
export function incidentRoutes(deps: { incidents: IncidentService }): RouteGroup {
  const { incidents } = deps;
  return (app) => {
    app.get<{ Querystring: Query }>('/api/v1/incidents', routeDocs.incidents, async (req) => {
      const p = principalOf(req);
      const q = req.query;
      const sortRaw = q.sort ?? '-created_at';
      const sort = sortRaw.replace(/^[-+]/, '') as IncidentSort;
      if (!INCIDENT_SORTS.includes(sort)) {
        throw new InputError('bad_sort', `sort must be one of ${INCIDENT_SORTS.join(', ')}, with - for descending`);
      }
      if (q.cursor !== undefined && q.offset !== undefined) {
        throw new InputError('bad_page', 'give either offset or cursor, not both');
      }
      const page = await incidents.list({
        tenants: p.tenants,
        status: listParam(q, 'status', INCIDENT_STATUSES),
        severity: listParam(q, 'severity', SEVERITIES),
        assignee: q.assignee,
        tag: q.tag,
        rule: q.rule,
        host: q.host,
        from: q.from === undefined ? undefined : parseTimeParam(q.from, 'from'),
        to: q.to === undefined ? undefined : parseTimeParam(q.to, 'to'),
        sort,
        descending: sortRaw.startsWith('-'),
        limit: intParam(q, 'limit', 50, 1, 1000),
        offset: intParam(q, 'offset', 0, 0, 1_000_000),
        cursor: q.cursor,
      });
      return { total: page.total, incidents: page.incidents, nextCursor: page.nextCursor };
    });

    app.post<{ Body: unknown }>('/api/v1/incidents', routeDocs.incidentCreate, async (req, reply) => {
      const p = principalOf(req);
      requireRole(p, 'analyst');
      const body = parseJsonBody(req.body);
      onlyKeys(body, ['tenant', 'title', 'severity', 'assignee', 'tags', 'alertIds', 'eventIds']);
      const tenant = body.tenant ?? (p.tenants.length === 1 ? p.tenants[0] : undefined);
      if (typeof tenant !== 'string') {
        throw new InputError('bad_tenant', `tenant is needed: one of ${p.tenants.join(', ')}`);
      }
      requireTenant(p, tenant);
      const incident = await incidents.create(
        {
          tenant,
          title: body.title as string,
          severity: (body.severity ?? 'medium') as Severity,
          assignee: body.assignee as string | null | undefined,
          tags: body.tags as string[] | undefined,
          alertIds: body.alertIds as string[] | undefined,
          eventIds: body.eventIds as string[] | undefined,
        },
        p.name,
      );
      return reply.status(201).send(incident);
    });

    app.post<{ Body: unknown }>('/api/v1/incidents/bulk', async (req) => {
      const p = principalOf(req);
      requireRole(p, 'analyst');
      const body = parseJsonBody(req.body);
      onlyKeys(body, ['ids', ...PATCH_KEYS]);
      const ids = body.ids;
      if (!Array.isArray(ids) || ids.length === 0 || ids.length > 1000 || !ids.every((i) => typeof i === 'string')) {
        throw new InputError('bad_ids', 'ids: a list of 1 to 1000 incident ids');
      }
      const results = await incidents.bulk(ids as string[], p.tenants, patchOf(body), p.name);
      const updated = results.filter((r) => r.ok).length;
      return { updated, failed: results.length - updated, results };
    });

    app.get<{ Querystring: Query }>('/api/v1/incidents/rejected-alerts', async (req) => {
      const p = principalOf(req);
      const rejected = await incidents.rejectedAlerts(p.tenants, intParam(req.query, 'limit', 100, 1, 10000));
      return { total: rejected.length, rejected };
    });

    app.get<{ Params: { id: string } }>('/api/v1/incidents/:id', routeDocs.incident, async (req) => {
      const incident = await incidents.get(req.params.id, principalOf(req).tenants);
      if (!incident) throw new VigilError('not_found', `no incident ${req.params.id}`, { status: 404 });
      return incident;
    });

    app.patch<{ Params: { id: string }; Body: unknown }>(
      '/api/v1/incidents/:id',
      routeDocs.incidentPatch,
      async (req) => {
        const p = principalOf(req);
        requireRole(p, 'analyst');
        const body = parseJsonBody(req.body);
        onlyKeys(body, PATCH_KEYS);
        return incidents.update(req.params.id, p.tenants, patchOf(body), p.name);
      },
    );

    app.post<{ Params: { id: string }; Body: unknown }>(
      '/api/v1/incidents/:id/comments',
      routeDocs.incidentComment,
      async (req, reply) => {
        const p = principalOf(req);
        requireRole(p, 'analyst');
        const body = parseJsonBody(req.body);
        onlyKeys(body, ['body']);
        return reply
          .status(201)
          .send(await incidents.addComment(req.params.id, p.tenants, body.body as string, p.name));
      },
    );

    app.get<{ Params: { id: string } }>('/api/v1/incidents/:id/timeline', async (req) => {
      const timeline = await incidents.timeline(req.params.id, principalOf(req).tenants);
      return { total: timeline.length, timeline };
    });
  };
}

/**
 * Notification dead letters (admins): GET /api/v1/notifications/dead-letters,
 * POST /api/v1/notifications/dead-letters/:id/replay, and GET /api/v1/notifications/deliveries/:id
 * (analysts). Kept here because this file and users.ts are the route files of the incidents work; it
 * can move to its own routes/notifications.ts unchanged.
 */
export function notificationRoutes(deps: { notifier: Notifier }): RouteGroup {
  const { notifier } = deps;
  return (app) => {
    app.get<{ Querystring: Query }>('/api/v1/notifications/dead-letters', async (req) => {
      const p = principalOf(req);
      requireRole(p, 'admin');
      const dead = await notifier.deadLetters(p.tenants, intParam(req.query, 'limit', 100, 1, 10000));
      return { total: dead.length, deliveries: dead };
    });
    app.post<{ Params: { id: string } }>('/api/v1/notifications/dead-letters/:id/replay', async (req, reply) => {
      const p = principalOf(req);
      requireRole(p, 'admin');
      return reply.status(202).send(await notifier.replay(req.params.id, p.tenants, p.name));
    });
    app.get<{ Params: { id: string } }>('/api/v1/notifications/deliveries/:id', async (req) => {
      const p = principalOf(req);
      requireRole(p, 'analyst');
      const d = await notifier.get(req.params.id, p.tenants);
      if (!d) throw new VigilError('not_found', `no delivery ${req.params.id}`, { status: 404 });
      return d;
    });
  };
}
