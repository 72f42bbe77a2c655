import { ALERT_STATUSES, type AlertStatus, type AlertStore } from '../../detect/alerts/index.ts';
import { InputError, VigilError } from '../../lib/errors.ts';
import { parseJsonBody } from '../body.ts';
import { parseIntParam } from '../params.ts';
import { routeDocs } from '../schemas.ts';
import { principalOf, type RouteGroup } from '../server.ts';
import { parseTimeParam } from '../time.ts';

type Query = Record<string, string | undefined>;

/** GET /api/v1/alerts (filters: from, to, rule, level, host, status, limit), GET/PATCH /api/v1/alerts/:id. */
export function alertRoutes(deps: { alerts: AlertStore }): RouteGroup {
  return (app) => {
    app.get<{ Querystring: Query }>('/api/v1/alerts', routeDocs.alerts, async (req) => {
      const principal = principalOf(req);
      const q = req.query;
      const limit = q.limit === undefined ? 100 : parseIntParam(q.limit, 'limit', 1, 10000);
      if (q.status !== undefined && !ALERT_STATUSES.includes(q.status as AlertStatus)) {
        throw new InputError('bad_status', `status must be one of ${ALERT_STATUSES.join(', ')}`);
      }
      const alerts = await deps.alerts.list({
        tenants: principal.tenants,
        from: q.from === undefined ? undefined : parseTimeParam(q.from, 'from'),
        to: q.to === undefined ? undefined : parseTimeParam(q.to, 'to'),
        rule: q.rule,
        level: q.level,
        host: q.host,
        status: q.status,
        limit,
      });
      return { total: alerts.length, alerts };
    });
    app.get<{ Params: { id: string } }>('/api/v1/alerts/:id', routeDocs.alert, async (req) => {
      const alert = await deps.alerts.get(req.params.id, principalOf(req).tenants);
      if (!alert) throw new VigilError('not_found', `no alert ${req.params.id}`, { status: 404 });
      return alert;
    });
    app.patch<{ Params: { id: string }; Body: unknown }>('/api/v1/alerts/:id', routeDocs.alertPatch, async (req) => {
      const principal = principalOf(req);
      if (principal.role === 'viewer')
        throw new VigilError('forbidden', 'viewers cannot change alerts', { status: 403 });
      const body = parseJsonBody(req.body) as { status?: string };
      if (!body.status || !ALERT_STATUSES.includes(body.status as AlertStatus)) {
        throw new InputError('bad_status', `status must be one of ${ALERT_STATUSES.join(', ')}`);
      }
      return deps.alerts.setStatus(req.params.id, principal.tenants, body.status as AlertStatus);
    });
  };
}
