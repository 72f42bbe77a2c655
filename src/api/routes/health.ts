import type { Registry } from 'prom-client';
import type { Component } from '../../lib/component.ts';
import { routeDocs } from '../schemas.ts';
import type { RouteGroup } from '../server.ts';

/** /health/live (the process answers), /health/ready (every component healthy) and /metrics. */
export function healthRoutes(deps: { components: () => Component[]; metrics: Registry }): RouteGroup {
  // Balancers and scrapers poll these every second or faster: their request lines would bury the node's
  // log at info level. They are counted in vigil_http_requests_total like every route.
  const quiet = { logLevel: 'warn' as const };
  return (app) => {
    app.get('/health/live', { ...routeDocs.live, ...quiet }, async () => ({ status: 'live' }));
    app.get('/health/ready', { ...routeDocs.ready, ...quiet }, async (_req, reply) => {
      const checks: Record<string, { ok: boolean; detail?: string }> = {};
      let ready = true;
      for (const c of deps.components()) {
        const h = c.health();
        checks[c.name] = h;
        ready &&= h.ok;
      }
      return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks });
    });
    app.get('/metrics', { ...routeDocs.metrics, ...quiet }, async (_req, reply) => {
      reply.header('Content-Type', deps.metrics.contentType);
      return deps.metrics.metrics();
    });
  };
}
