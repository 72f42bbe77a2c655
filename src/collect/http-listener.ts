import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { splitAddr } from '../api/config.ts';
import type { HttpIntake } from '../intake/http/index.ts';
import { intakeMetrics } from '../intake/metrics.ts';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage, OverloadError, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { CollectConfig } from './config.ts';

/** The path senders post NDJSON to: the same as a node's, so a sender moves between the two unchanged. */
export const COLLECT_INGEST_PATH = '/api/v1/ingest';

/** The collector's HTTP listener: NDJSON in through the node's HTTP intake, health probes. */
export interface HttpListener extends Component {
  /** The port bound, once started. */
  port(): number | undefined;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Creates the listener (Fastify, as the node's API): bodies bounded by `max_body_bytes`, requests in flight
 * by `max_inflight_requests` (429 past it), whole requests by `request_timeout_ms`; a bearer token when
 * `token_file` is set; HTTPS (and client certificates with `tls_ca_file`) as the node's syslog TLS.
 */
export function createHttpListener(
  config: CollectConfig['http'],
  deps: { intake: HttpIntake; tenant: string; metrics: Registry; logger: Logger; health: () => ComponentHealth },
): HttpListener {
  let app: FastifyInstance | undefined;
  let bound: number | undefined;
  const tokenDigest = config.token_file === undefined ? undefined : digest(readFirstLine(config.token_file));
  const { rejected } = intakeMetrics(deps.metrics);
  let inflight = 0;

  const build = () => {
    const https =
      config.tls_cert_file !== undefined && config.tls_key_file !== undefined
        ? {
            cert: readFileSync(config.tls_cert_file),
            key: readFileSync(config.tls_key_file),
            ...(config.tls_ca_file !== undefined
              ? { ca: readFileSync(config.tls_ca_file), requestCert: true, rejectUnauthorized: true }
              : {}),
          }
        : null;
    const f = Fastify({
      bodyLimit: config.max_body_bytes,
      requestTimeout: config.request_timeout_ms,
      logger: false,
      ...(https ? { https } : {}),
    }) as unknown as FastifyInstance;
    f.addContentTypeParser(
      ['application/json', 'application/x-ndjson', 'application/ndjson', 'text/plain'],
      { parseAs: 'string' },
      (_req, body, done) => done(null, body),
    );
    f.addHook('onRequest', async (req, reply) => {
      if (req.url.startsWith('/health/')) return;
      if (inflight >= config.max_inflight_requests) {
        reply.header('Retry-After', '1');
        throw new VigilError('too_many_requests', `more than ${config.max_inflight_requests} requests in flight`, {
          status: 429,
          retryable: true,
        });
      }
      inflight++;
      reply.raw.once('close', () => inflight--);
      if (tokenDigest !== undefined) {
        const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
        if (!m || !timingSafeEqual(digest(m[1]), tokenDigest)) {
          throw new VigilError('unauthorized', 'missing or wrong bearer token', { status: 401 });
        }
      }
    });
    f.setErrorHandler((err, _req, reply) => {
      if (err instanceof OverloadError) reply.header('Retry-After', String(err.retryAfterSeconds));
      if (err instanceof VigilError) {
        return reply.status(err.status).send({ error: { code: err.code, message: err.message } });
      }
      const status = (err as { statusCode?: number }).statusCode;
      if (status === 413) rejected.inc({ source: 'http', reason: 'request_too_large' });
      if (status !== undefined && status >= 400 && status < 500) {
        return reply.status(status).send({ error: { code: 'bad_request', message: errorMessage(err) } });
      }
      deps.logger.error({ err: errorMessage(err) }, 'The collector HTTP listener failed a request.');
      return reply.status(500).send({ error: { code: 'internal', message: 'internal error' } });
    });
    f.get('/health/live', async () => ({ status: 'live' }));
    f.get('/health/ready', async (_req, reply) => {
      const h = deps.health();
      return reply.status(h.ok ? 200 : 503).send({ status: h.ok ? 'ready' : 'not_ready', detail: h.detail });
    });
    f.post(COLLECT_INGEST_PATH, async (req) => {
      if (typeof req.body !== 'string') {
        rejected.inc({ source: 'http', reason: 'empty' });
        throw new VigilError('empty_body', 'the request has no body: send NDJSON lines or a JSON array', {
          status: 400,
        });
      }
      const key = req.headers['idempotency-key'];
      return deps.intake.ingest({
        body: req.body,
        tenant: deps.tenant,
        idempotencyKey: typeof key === 'string' ? key : undefined,
      });
    });
    return f;
  };

  return {
    name: 'collect-http',
    async start() {
      if (!config.enabled) return;
      await deps.intake.start();
      app = build();
      const { host, port } = splitAddr(config.addr);
      await app.listen({ host, port });
      const a = app.server.address();
      bound = a && typeof a === 'object' ? a.port : undefined;
    },
    async stop() {
      await app?.close();
      app = undefined;
      if (config.enabled) await deps.intake.stop(Date.now());
    },
    health: () => (!config.enabled || app ? { ok: true } : { ok: false, detail: 'not listening' }),
    port: () => bound,
  };
}

function readFirstLine(file: string): string {
  const token = readFileSync(file, 'utf8').split('\n')[0].trim();
  if (token.length < 16) {
    throw new VigilError('collect_token_short', `the token in ${file} is shorter than 16 characters`);
  }
  return token;
}
