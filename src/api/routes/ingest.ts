import type { Registry } from 'prom-client';
import { COLLECTED_PATH, type HttpIntake } from '../../intake/http/index.ts';
import { BodyBytes } from '../../lib/body-bytes.ts';
import { InputError, VigilError } from '../../lib/errors.ts';
import type { Logsource } from '../../lib/event.ts';
import { intakeMetrics } from '../../intake/metrics.ts';
import { userPrincipal } from '../../users/access.ts';
import { routeDocs } from '../schemas.ts';
import { principalOf, type RouteGroup } from '../server.ts';

/** POST /api/v1/ingest: NDJSON or a JSON array; answers after the events are committed. */
export function ingestRoutes(deps: { intake: HttpIntake; metrics: Registry }): RouteGroup {
  const { rejected } = intakeMetrics(deps.metrics);
  return (app) => {
    // The body comes as its bytes: NDJSON is split from them without a text of the whole body (json-bytes.ts).
    const options = { ...routeDocs.ingest, config: { bodyAsBytes: true } };
    app.post<{ Querystring: Record<string, string | undefined> }>('/api/v1/ingest', options, async (req) => {
      const principal = principalOf(req);
      if (principal.role === 'viewer') {
        throw new VigilError('forbidden', 'viewers cannot ingest events', { status: 403 });
      }
      const body = req.body;
      if (typeof body !== 'string' && !(body instanceof BodyBytes)) {
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
    // Only a key with the collector scope: it chooses event ids and receipt times, which no other client may
    // (the store never lets a chosen id replace a stored event, but it would let a client shape its rows).
    app.post(COLLECTED_PATH, routeDocs.ingestCollected, async (req) => {
      const principal = principalOf(req);
      if (!userPrincipal(principal)?.scopes?.includes('collector')) {
        throw new VigilError(
          'collector_scope_required',
          'only an API key with the collector scope forwards collected events',
          {
            status: 403,
          },
        );
      }
      const body = req.body;
      if (typeof body !== 'string') {
        rejected.inc({ source: 'collector', reason: 'empty' });
        throw new InputError('empty_body', 'the request has no body: send NDJSON lines of collected events');
      }
      return deps.intake.ingestCollected({ body, tenant: principal.tenants[0] });
    });
  };
}
