import type { Registry } from 'prom-client';
import type { HttpIntake } from '../../intake/http/index.ts';
import { InputError } from '../../lib/errors.ts';
import type { Logsource } from '../../lib/event.ts';
import { counter } from '../../lib/metrics.ts';
import { principalOf, type RouteGroup } from '../server.ts';

/** POST /api/v1/ingest: NDJSON or a JSON array; answers after the events are committed. */
export function ingestRoutes(deps: { intake: HttpIntake; metrics: Registry }): RouteGroup {
  const rejected = counter(deps.metrics, 'vigil_intake_events_rejected_total', 'Events refused.', ['source', 'reason']);
  return (app) => {
    app.post<{ Querystring: Record<string, string | undefined> }>(
      '/api/v1/ingest',
      {
        onError: async (_req, reply) => {
          // Refused before the body was read: too large, or not a JSON media type.
          if (reply.statusCode === 413) rejected.inc({ source: 'http', reason: 'request_too_large' });
          if (reply.statusCode === 415) rejected.inc({ source: 'http', reason: 'unsupported_media_type' });
        },
      },
      async (req) => {
        const principal = principalOf(req);
        if (principal.role === 'viewer') throw new InputError('forbidden', 'viewers cannot ingest events');
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
      },
    );
  };
}
