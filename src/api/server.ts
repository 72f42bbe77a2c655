import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { intakeMetrics, type RejectReason } from '../intake/metrics.ts';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { OverloadError, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, histogram } from '../lib/metrics.ts';
import type { Authenticator, Principal } from './auth.ts';
import { type HttpConfig, splitAddr } from './config.ts';
import { isConsolePath } from './routes/console.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** A group of routes for one resource, mounted by the API server. */
export type RouteGroup = (app: FastifyInstance) => void;

/** The HTTP server: authentication, error mapping, request limits; resources bring their routes. */
export interface ApiServer extends Component {
  /** The address actually bound (the port is real even when configured as 0). */
  address(): { host: string; port: number };
  readonly app: FastifyInstance;
}

/** Fastify's body refusals, as intake rejection reasons. */
const INGEST_REFUSALS: Record<string, RejectReason> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'request_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
};

/** Paths served without a token. */
const OPEN_PATHS = new Set(['/health/live', '/health/ready', '/api/v1/auth/login']);

/** Returns the authenticated principal of a request (set by the server's auth hook). */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new VigilError('unauthorized', 'not authenticated', { status: 401 });
  return req.principal;
}

/** Creates the API server; it listens on start() and closes (refusing new requests first) on stop(). */
export function createApiServer(
  config: HttpConfig,
  deps: { auth: Authenticator; metrics: Registry; logger: Logger; routes: RouteGroup[] },
): ApiServer {
  // Our pino is newer than Fastify's; the logger interface Fastify uses is the same.
  const loggerInstance = deps.logger.child({ component: 'http' }) as unknown as FastifyBaseLogger;
  const app = Fastify({ loggerInstance, bodyLimit: config.max_body_bytes });
  const requests = counter(deps.metrics, 'vigil_http_requests_total', 'HTTP requests answered.', ['route', 'status']);
  const duration = histogram(
    deps.metrics,
    'vigil_http_request_duration_seconds',
    'Time from request to answer, by route (an ingest answer waits for the event log or the spool).',
    ['route'],
    [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );
  const refusedAuth = counter(deps.metrics, 'vigil_http_auth_failures_total', 'Requests refused for their token.');
  const intake = intakeMetrics(deps.metrics);
  let inflight = 0;
  let listening = false;
  let bound = splitAddr(config.addr);

  app.removeAllContentTypeParsers();
  // Bodies stay text: the ingest route splits NDJSON itself (a JSON object per line, not one document).
  app.addContentTypeParser(
    ['application/json', 'application/x-ndjson', 'application/ndjson', 'text/plain'],
    { parseAs: 'string' },
    (_req, body, done) => done(null, body),
  );

  app.addHook('onRequest', async (req, reply) => {
    if (inflight >= config.max_inflight_requests) {
      reply.header('Retry-After', '1');
      throw new VigilError('too_many_requests', `more than ${config.max_inflight_requests} requests in flight`, {
        status: 429,
        retryable: true,
      });
    }
    inflight++;
    const path = req.url.split('?')[0];
    // The console's page and assets are open: the app itself signs in and sends a token with every call.
    if (OPEN_PATHS.has(path) || isConsolePath(path) || (path === '/metrics' && !config.metrics_auth)) return;
    try {
      req.principal = await deps.auth.authenticate(req.headers.authorization);
    } catch (err) {
      refusedAuth.inc();
      throw err;
    }
  });
  app.addHook('onResponse', async (req, reply) => {
    inflight--;
    const route = req.routeOptions.url ?? 'unknown';
    requests.inc({ route, status: String(reply.statusCode) });
    duration.observe({ route }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof OverloadError) reply.header('Retry-After', String(err.retryAfterSeconds));
    if (err instanceof VigilError) {
      // Overload and maintenance refusals are expected answers (counted by the intake), not failures.
      if (err.status >= 500 && !(err instanceof OverloadError)) {
        req.log.error({ code: err.code, err: err.message }, 'A request failed.');
      }
      return reply
        .status(err.status)
        .send({ error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) } });
    }
    const fe = err as { statusCode?: number; code?: string; message: string };
    const refusal = INGEST_REFUSALS[fe.code ?? ''];
    // Refused before any route code ran; still an intake rejection to count.
    if (refusal && req.url.startsWith('/api/v1/ingest')) intake.rejected.inc({ source: 'http', reason: refusal });
    if (fe.statusCode && fe.statusCode < 500) {
      return reply.status(fe.statusCode).send({ error: { code: fastifyCode(fe.code), message: fe.message } });
    }
    req.log.error({ err }, 'A request failed unexpectedly.');
    return reply.status(500).send({ error: { code: 'internal', message: 'internal error' } });
  });
  app.setNotFoundHandler((req, reply) => {
    reply
      .status(404)
      .send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });

  for (const group of deps.routes) group(app);

  return {
    name: 'api',
    app,
    async start() {
      const { host, port } = splitAddr(config.addr);
      await app.listen({ host, port });
      const addr = app.server.address();
      if (addr && typeof addr === 'object') bound = { host: addr.address, port: addr.port };
      listening = true;
    },
    async stop(deadline) {
      listening = false;
      // close() refuses new requests and waits for those in flight; at the deadline, whatever is still open
      // (a slow client, a keep-alive connection mid-request) is cut so that shutdown stays bounded. Half of the
      // budget: the components behind the API (bus, store) need the rest to flush.
      const cutAt = Date.now() + Math.max(0, deadline - Date.now()) / 2;
      let timer: NodeJS.Timeout | undefined;
      const cut = new Promise<void>((resolve) => {
        timer = setTimeout(
          () => {
            deps.logger.warn({ inflight }, 'Closing the HTTP connections still open at the stop deadline.');
            app.server.closeAllConnections();
            resolve();
          },
          Math.max(0, cutAt - Date.now()),
        );
      });
      try {
        await Promise.race([app.close(), cut]);
      } finally {
        clearTimeout(timer);
      }
    },
    health(): ComponentHealth {
      return listening ? { ok: true } : { ok: false, detail: 'not listening' };
    },
    address: () => bound,
  };
}

function fastifyCode(code: string | undefined): string {
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'request_too_large';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'unsupported_media_type';
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'empty_body';
    default:
      return (code ?? 'bad_request').replace(/^FST_ERR_/, '').toLowerCase();
  }
}
