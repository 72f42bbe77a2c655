import type { Registry } from 'prom-client';
import type { HttpIntake } from '../../intake/http/index.ts';
import { InputError, VigilError } from '../../lib/errors.ts';
import type { Logsource } from '../../lib/event.ts';
import { intakeMetrics } from '../../intake/metrics.ts';
import { routeDocs } from '../schemas.ts';
import { principalOf, type RouteGroup } from '../server.ts';

/** POST /api/v1/ingest: NDJSON or a JSON array; answers after the events are committed. */
export function ingestRoutes(deps: { intake: HttpIntake; metrics: Registry }): RouteGroup {
  const { rejected } = intakeMetrics(deps.metrics);
  return (app) => {
    app.post<{ Querystring: Record<string, string | undefined> }>('/api/v1/ingest', routeDocs.ingest, async (req) => {
      const principal = principalOf(req);
      if (principal.role === 'viewer') {
        throw new VigilError('forbidden', 'viewers cannot ingest events', { status: 403 });
      }
      const body = req.body;
      if (typeof body !== 'string') {
        rejected.inc({ source: 'http', reason: 'empty' });
        throw new InputError('empty_body', 'the request has no body: send NDJSON lines or a JSON array');
      }
      const q = req.query;
      const logsource: Logsource = {};
      for (const k of ['product', 'service', 'category'] as const) {
        const v = q[k];
        if (v !== undefined) {
          if (!/^[a-z0-9_-]{1,64}$/i.test(v)) throw new InputError('bad_logsource', `${k}: expected a Sigma name`);
          logsource[k] = v;
        }
      }
      const key = req.headers['idempotency-key'];
      return deps.intake.ingest({
        body,
        tenant: principal.tenants[0],
        logsource: Object.keys(logsource).length > 0 ? logsource : undefined,
        idempotencyKey: typeof key === 'string' ? key : undefined,
      });
    });
  };
}
