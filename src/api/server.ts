import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import proxyaddr from '@fastify/proxy-addr';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { COLLECTED_PATH } from '../intake/http/index.ts';
import { intakeMetrics, type RejectReason } from '../intake/metrics.ts';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { InputError, OverloadError, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge, histogram } from '../lib/metrics.ts';
import type { Authenticator, Principal } from '../users/index.ts';
import { isCollectorKey } from '../users/access.ts';
import { readBodyText } from './body-text.ts';
import { type HttpConfig, splitAddr } from './config.ts';
import { VERSION } from '../lib/version.ts';
import { isConsolePath } from './routes/console.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** The route takes its body undecoded, as a BodyBytes (src/lib/body-bytes.ts), not as text. */
    bodyAsBytes?: boolean;
  }
}

/** A group of routes for one resource, mounted by the API server. */
export type RouteGroup = (app: FastifyInstance) => void;

/**
 * Turns off Fastify's validation and response serialization on `app`, as the API server has them: bodies
 * are text and query and path parameters strings that the routes parse with their own error codes, so the
 * declared schemas only document them (schemas.ts), and answers go out as routes build them, never
 * filtered by a response schema. For a test that mounts a route group on a bare Fastify.
 */
export function withoutSchemaChecks(app: FastifyInstance): void {
  app.setValidatorCompiler(() => () => true);
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
}

/** The HTTP server: authentication, error mapping, request limits; resources bring their routes. */
export interface ApiServer extends Component {
  /** The address actually bound (the port is real even when configured as 0). */
  address(): { host: string; port: number };
  readonly app: FastifyInstance;
  /** Every route mounted (method and URL), as Fastify registered them: the OpenAPI test compares. */
  routes(): { method: string; url: string }[];
}

/** Fastify's body refusals, as intake rejection reasons. */
const INGEST_REFUSALS: Record<string, RejectReason> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'request_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
};

/** Why a connection was cut before its request was answered (`vigil_http_requests_cut_total{reason}`). */
type CutReason = 'header_timeout' | 'body_timeout' | 'idle_timeout' | 'header_too_large' | 'malformed';

/** The API document (OpenAPI 3), made by @fastify/swagger from the schemas routes declare (schemas.ts). */
const OPENAPI_PATH = '/api/v1/openapi.json';

/** Paths served without a token. */
const OPEN_PATHS = new Set(['/health/live', '/health/ready', '/api/v1/auth/login', OPENAPI_PATH]);

const LOGIN_PATH = '/api/v1/auth/login';
const INGEST_PATH = '/api/v1/ingest';

/**
 * Largest login body: a username and a password fit in far less. A slow 100 kB login body would hold its
 * connection for minutes; this one is refused with 413 from its Content-Length, before a byte is read.
 */
const LOGIN_BODY_LIMIT = 8 * 1024;

/** Probes and scrapes: cheap, and must answer under attack, so they never wait for or take a slot. */
function unslotted(path: string): boolean {
  return path.startsWith('/health/') || path === '/metrics';
}

/** Node-to-node routes: authenticated with the cluster's peer token only, never with a client's. */
export const INTERNAL_PREFIX = '/internal/';

/**
 * The principal of a node-to-node call (peer token): it may call `/internal/` routes only, which take the
 * tenants and user from the calling node, which authenticated the client.
 */
export const CLUSTER_PEER: Principal = Object.freeze({
  name: 'cluster-peer',
  role: 'viewer',
  tenants: [],
}) as Principal;

/** Returns the authenticated principal of a request (set by the server's auth hook). */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new VigilError('unauthorized', 'not authenticated', { status: 401 });
  return req.principal;
}

/** Creates the API server; it listens on start() and closes (refusing new requests first) on stop(). */
export function createApiServer(
  config: HttpConfig,
  deps: {
    auth: Authenticator;
    metrics: Registry;
    logger: Logger;
    routes: RouteGroup[];
    /** Checks the peer token of a node-to-node call (`/internal/` routes); absent: those routes answer 401. */
    peerAuth?: (authorization: string | undefined) => boolean;
  },
): ApiServer {
  // Our pino is newer than Fastify's; the logger interface Fastify uses is the same.
  const loggerInstance = deps.logger.child({ component: 'http' }) as unknown as FastifyBaseLogger;
  // Node checks the header and request timeouts of every open connection once per interval, so a stalled
  // client is cut up to one interval late; a tenth of the shorter timeout, at most a second, keeps that small.
  const checkEveryMs = Math.min(1000, Math.max(50, Math.floor(config.headers_timeout_ms / 10)));
  // The client's address: the socket's, or the one a trusted balancer forwarded (the same rule as Fastify's
  // req.ip with trustProxy, so that the open pool, the login limiter and the logs agree).
  const trusted = config.trusted_proxies.length > 0 ? proxyaddr.compile(config.trusted_proxies) : undefined;
  const clientAddress = (raw: IncomingMessage): string =>
    (trusted ? proxyaddr(raw, trusted) : raw.socket.remoteAddress) ?? 'unknown';
  const app = Fastify({
    loggerInstance,
    trustProxy: trusted ?? false,
    bodyLimit: config.max_body_bytes,
    http: { headersTimeout: config.headers_timeout_ms, connectionsCheckingInterval: checkEveryMs },
    requestTimeout: config.request_timeout_ms,
    keepAliveTimeout: config.keep_alive_timeout_ms,
    connectionTimeout: config.idle_timeout_ms,
    clientErrorHandler: (err, socket) => onClientError(err as NodeJS.ErrnoException, socket),
  });
  const requests = counter(deps.metrics, 'vigil_http_requests_total', 'HTTP requests answered.', ['route', 'status']);
  const duration = histogram(
    deps.metrics,
    'vigil_http_request_duration_seconds',
    'Time from request to answer, by route (an ingest answer waits for the event log or the spool).',
    ['route'],
    [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );
  const refusedAuth = counter(deps.metrics, 'vigil_http_auth_failures_total', 'Requests refused for their token.');
  const cuts = counter(
    deps.metrics,
    'vigil_http_requests_cut_total',
    'Connections closed before their request was answered: headers or body not sent in time, idle, malformed.',
    ['reason'],
  );
  const inflightGauge = gauge(
    deps.metrics,
    'vigil_http_inflight_requests',
    `Requests holding one of the http.max_inflight_requests slots (${config.max_inflight_requests}).`,
  );
  const openGauge = gauge(
    deps.metrics,
    'vigil_http_inflight_open_requests',
    `Requests without a token (login, console files) holding one of the http.max_inflight_open_requests slots (${config.max_inflight_open_requests}).`,
  );
  const bodyBytesGauge = gauge(
    deps.metrics,
    'vigil_http_inflight_body_bytes',
    `Bytes of ingest bodies in flight, from their Content-Length (bound: http.max_inflight_body_bytes, ${config.max_inflight_body_bytes}).`,
  );
  const intake = intakeMetrics(deps.metrics);
  let inflight = 0;
  let inflightOpen = 0;
  /** Open requests in flight per client address; an address is removed when its count falls to 0. */
  const openByAddress = new Map<string, number>();
  let inflightBodyBytes = 0;
  /**
   * Slots held per connection. A request timeout on a busy connection is a body timeout (its headers were
   * read), and an idle timeout on one that holds none is only the keep-alive timeout.
   */
  const busy = new WeakMap<Socket, number>();

  /**
   * Takes an in-flight slot for a request, to be given back exactly once, on the first of: the answer is
   * sent or the response is abandoned (its 'close'), or the connection closes (a pipelined request whose
   * response never got the socket sees only this). A request refused for capacity never takes a slot, so
   * it gives none back.
   */
  const hold = (raw: IncomingMessage, res: ServerResponse, give: () => void): void => {
    const socket = raw.socket;
    busy.set(socket, (busy.get(socket) ?? 0) + 1);
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      give();
      busy.set(socket, (busy.get(socket) ?? 1) - 1);
      res.off('close', release);
      socket.off('close', release);
    };
    res.once('close', release);
    socket.once('close', release);
  };
  const takeSlot = (raw: IncomingMessage, res: ServerResponse): boolean => {
    if (inflight >= config.max_inflight_requests || raw.socket.destroyed) return false;
    inflight++;
    inflightGauge.set(inflight);
    hold(raw, res, () => {
      inflight--;
      inflightGauge.set(inflight);
    });
    return true;
  };
  /** A slot of the open pool, within both its total and its per-address bound; the refusal says which. */
  const takeOpenSlot = (raw: IncomingMessage, res: ServerResponse): string | undefined => {
    const address = clientAddress(raw);
    const mine = openByAddress.get(address) ?? 0;
    if (raw.socket.destroyed) return 'the connection is closed';
    if (inflightOpen >= config.max_inflight_open_requests) {
      return `more than ${config.max_inflight_open_requests} requests without a token in flight (http.max_inflight_open_requests)`;
    }
    if (mine >= config.max_inflight_open_requests_per_address) {
      return `more than ${config.max_inflight_open_requests_per_address} requests without a token in flight from ${address} (http.max_inflight_open_requests_per_address)`;
    }
    inflightOpen++;
    openByAddress.set(address, mine + 1);
    openGauge.set(inflightOpen);
    hold(raw, res, () => {
      inflightOpen--;
      openGauge.set(inflightOpen);
      const left = (openByAddress.get(address) ?? 1) - 1;
      if (left > 0) openByAddress.set(address, left);
      else openByAddress.delete(address);
    });
    return undefined;
  };
  /**
   * Reserves an ingest body's bytes (from Content-Length; without one, the largest body allowed) until its
   * answer is sent or its connection closes. False when they would pass http.max_inflight_body_bytes; one
   * body alone is always admitted, so a single body up to max_body_bytes is never refused for this.
   */
  const takeBodyBytes = (raw: IncomingMessage, res: ServerResponse): boolean => {
    const declared = Number(raw.headers['content-length']);
    const bytes =
      Number.isSafeInteger(declared) && declared >= 0
        ? Math.min(declared, config.max_body_bytes)
        : config.max_body_bytes;
    if (inflightBodyBytes > 0 && inflightBodyBytes + bytes > config.max_inflight_body_bytes) return false;
    inflightBodyBytes += bytes;
    bodyBytesGauge.set(inflightBodyBytes);
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      inflightBodyBytes -= bytes;
      bodyBytesGauge.set(inflightBodyBytes);
      res.off('close', release);
      raw.socket.off('close', release);
    };
    res.once('close', release);
    raw.socket.once('close', release);
    return true;
  };

  /** Node's refusals of a connection (timeouts, malformed requests): answered in our error shape and counted. */
  const onClientError = (err: NodeJS.ErrnoException, socket: Socket) => {
    // The client hung up: there is nobody to answer.
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    let status: number;
    let code: string;
    let message: string;
    let reason: CutReason;
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      status = 408;
      code = 'request_timeout';
      if (busy.get(socket)) {
        reason = 'body_timeout';
        message = `the request body did not arrive within http.request_timeout_ms (${config.request_timeout_ms} ms)`;
      } else {
        reason = 'header_timeout';
        message = `the request headers did not arrive within http.headers_timeout_ms (${config.headers_timeout_ms} ms)`;
      }
    } else if (err.code === 'HPE_HEADER_OVERFLOW') {
      status = 431;
      code = 'headers_too_large';
      message = 'the request headers are larger than 16 KiB';
      reason = 'header_too_large';
    } else {
      status = 400;
      code = 'malformed_request';
      message = 'the request is not valid HTTP/1.1';
      reason = 'malformed';
    }
    cuts.inc({ reason });
    deps.logger.debug({ reason, err: err.message, remote: socket.remoteAddress }, 'Closed a client connection.');
    // As Node does: answer only if no answer has begun on this connection, else the client would read a mix.
    const current = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && !current?.headersSent) {
      const body = JSON.stringify({ error: { code, message } });
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  };
  let listening = false;
  let bound = splitAddr(config.addr);

  app.removeAllContentTypeParsers();
  // Bodies stay text, or bytes for the ingest route, which splits NDJSON itself (a JSON object per line, not
  // one document) from the bytes (`bodyAsBytes`). Kept as their chunks and decoded at the end a mebibyte at
  // a time, taking turns of the event loop (body-text.ts), not in one call: that call stalled the event loop.
  app.addContentTypeParser(
    ['application/json', 'application/x-ndjson', 'application/ndjson', 'text/plain'],
    (req, payload, done) =>
      readBodyText(payload, req.routeOptions.bodyLimit, req.headers['content-length'], done, {
        asBytes: req.routeOptions.config.bodyAsBytes === true,
      }),
  );

  // A connection idle past idle_timeout_ms (or, holding no request, past keep_alive_timeout_ms: Node uses
  // the same event); with a listener here Node leaves the closing to us.
  app.server.on('timeout', (socket: Socket) => {
    if (busy.get(socket)) cuts.inc({ reason: 'idle_timeout' });
    socket.destroy();
  });

  // Every login route gets the small body limit, whoever registers it.
  app.addHook('onRoute', (route) => {
    if (route.url === LOGIN_PATH && route.bodyLimit === undefined) route.bodyLimit = LOGIN_BODY_LIMIT;
  });

  app.addHook('onRequest', async (req, reply) => {
    const path = req.url.split('?')[0];
    // The console's page and assets are open: the app itself signs in and sends a token with every call.
    const open = OPEN_PATHS.has(path) || isConsolePath(path);
    if (unslotted(path)) {
      // No slot: a probe must answer while every slot is held by slow clients.
    } else if (open) {
      // A pool of their own, bounded per address: anyone can send these, so they never take the slots that
      // authenticated work needs (256 slow login bodies used to make every route answer 429).
      const refusal = takeOpenSlot(req.raw, reply.raw);
      if (refusal !== undefined) {
        reply.header('Retry-After', '1');
        throw new VigilError('too_many_requests', refusal, { status: 429, retryable: true });
      }
    } else if (!takeSlot(req.raw, reply.raw)) {
      reply.header('Retry-After', '1');
      throw new VigilError('too_many_requests', `more than ${config.max_inflight_requests} requests in flight`, {
        status: 429,
        retryable: true,
      });
    }
    if (open || (path === '/metrics' && !config.metrics_auth)) return;
    if (path.startsWith(INTERNAL_PREFIX)) {
      if (!deps.peerAuth?.(req.headers.authorization)) {
        refusedAuth.inc();
        throw new VigilError('unauthorized', 'a node-to-node route needs the cluster peer token', { status: 401 });
      }
      req.principal = CLUSTER_PEER;
      return;
    }
    try {
      req.principal = await deps.auth.authenticate(req.headers.authorization);
    } catch (err) {
      refusedAuth.inc();
      throw err;
    }
    if (isCollectorKey(req.principal) && path !== COLLECTED_PATH) {
      throw new VigilError('collector_key', 'a collector key only forwards events (POST /api/v1/ingest/collected)', {
        status: 403,
      });
    }
    // After authentication, before the body is read: an ingest body's bytes are reserved from its
    // Content-Length, so concurrent large bodies are refused before they take memory.
    if (
      (path === INGEST_PATH || path === COLLECTED_PATH) &&
      req.method === 'POST' &&
      !takeBodyBytes(req.raw, reply.raw)
    ) {
      intake.rejected.inc({ source: 'http', reason: 'overloaded' });
      throw new OverloadError(
        `ingest bodies of more than ${config.max_inflight_body_bytes} bytes in flight (http.max_inflight_body_bytes); retry shortly`,
        1,
      );
    }
  });
  // Every route reads its query parameters as strings; the parser makes a repeated one an array (a
  // TypeError and a 500 in a route that splits it), so it is refused here, for all routes at once.
  app.addHook('preValidation', async (req) => {
    for (const [name, value] of Object.entries((req.query ?? {}) as Record<string, unknown>)) {
      if (Array.isArray(value)) {
        const shown = name.length > 64 ? `${name.slice(0, 64)}...` : name;
        throw new InputError('repeated_parameter', `the query parameter ${shown} is given more than once`, {
          parameter: shown,
        });
      }
    }
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    requests.inc({ route, status: String(reply.statusCode) });
    duration.observe({ route }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof OverloadError) reply.header('Retry-After', String(err.retryAfterSeconds));
    if (err instanceof VigilError) {
      // Overload and maintenance refusals are expected answers (counted by the intake), not failures.
      if (err.status >= 500 && !(err instanceof OverloadError)) {
        // A database error's statement is kept out of its message (answers show messages), logged here.
        const statement = (err as { statement?: string }).statement;
        req.log.error({ code: err.code, err: err.message, statement }, 'A request failed.');
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

  withoutSchemaChecks(app);
  const mounted: { method: string; url: string }[] = [];
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) if (method !== 'HEAD') mounted.push({ method, url: r.url });
  });
  app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Vigil API',
        version: VERSION,
        description: 'Vigil, a SIEM: ingest, search, detection, incidents.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  // Routes are mounted once the swagger plugin is loaded, so that it sees every one of them.
  app.register(async (scope) => {
    scope.get(OPENAPI_PATH, { schema: { tags: ['meta'], summary: 'This document (OpenAPI 3)', security: [] } }, () =>
      scope.swagger(),
    );
    for (const group of deps.routes) group(scope);
  });

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
    routes: () => mounted,
  };
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
};

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
