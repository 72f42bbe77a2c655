import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { COLLECTED_PATH } from '../intake/http/index.ts';
import { VigilError } from '../lib/errors.ts';
import type { CollectEndpointConfig } from './config.ts';

/** Largest answer read from a site: an ingest answer lists at most 1,000 rejections. */
const MAX_ANSWER_BYTES = 1024 * 1024;

/** How a site answered a batch. */
export type SendOutcome =
  /** Committed: the batch may leave the queue. `rejected` events were refused one by one (never storable). */
  | { kind: 'committed'; accepted: number; rejected: number; firstError?: string }
  /** The site cannot take it now (unreachable, timed out, 5xx, 401/403/404): another site may. */
  | { kind: 'unavailable'; reason: string }
  /** The site refused the batch as a whole (400, 413): no site will take it. */
  | { kind: 'refused'; reason: string }
  /** The site asked to wait (429): the same site, later. */
  | { kind: 'throttled'; retryAfterMs: number; reason: string };

/** One site endpoint: sends batches and probes readiness. Never logs or returns its token. */
export interface SiteClient {
  readonly name: string;
  send(body: Uint8Array, signal?: AbortSignal): Promise<SendOutcome>;
  /** Whether the site answers GET /health/ready with 200 within the timeout. */
  probe(signal?: AbortSignal): Promise<boolean>;
  close(): void;
}

/** A token or CA file could not be read at start. */
export class EndpointConfigError extends VigilError {
  constructor(message: string, cause?: unknown) {
    super('collect_endpoint_config', message, { status: 500, cause });
    this.name = 'EndpointConfigError';
  }
}

/** Creates the client of one endpoint; reads its token and CA files now (a missing file fails the start). */
export function createSiteClient(cfg: CollectEndpointConfig, opts: { timeoutMs: number }): SiteClient {
  const base = new URL(cfg.url);
  const name = cfg.name ?? base.host;
  let token = cfg.token;
  if (cfg.token_file !== undefined) {
    try {
      token = readFileSync(cfg.token_file, 'utf8').split('\n')[0].trim();
    } catch (err) {
      throw new EndpointConfigError(`endpoint ${name}: cannot read token_file ${cfg.token_file}`, err);
    }
  }
  let ca: Buffer | undefined;
  if (cfg.ca_file !== undefined) {
    try {
      ca = readFileSync(cfg.ca_file);
    } catch (err) {
      throw new EndpointConfigError(`endpoint ${name}: cannot read ca_file ${cfg.ca_file}`, err);
    }
  }
  const secure = base.protocol === 'https:';
  const agent = secure
    ? new https.Agent({ keepAlive: true, maxSockets: 2, ...(ca ? { ca } : {}) })
    : new http.Agent({ keepAlive: true, maxSockets: 2 });
  const prefix = base.pathname.replace(/\/$/, '');

  const request = (
    method: 'GET' | 'POST',
    path: string,
    body: Uint8Array | undefined,
    signal?: AbortSignal,
  ): Promise<{ status: number; text: string; retryAfter?: string }> =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = {};
      if (body) {
        headers['content-type'] = 'application/x-ndjson';
        headers['content-length'] = body.byteLength;
        headers.authorization = `Bearer ${token}`;
      }
      const req = (secure ? https : http).request(
        {
          protocol: base.protocol,
          hostname: base.hostname.replace(/^\[|\]$/g, ''),
          port: base.port || (secure ? 443 : 80),
          path: prefix + path,
          method,
          agent,
          headers,
          signal,
          timeout: opts.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size <= MAX_ANSWER_BYTES) chunks.push(c);
          });
          res.on('end', () => {
            const retryAfter = res.headers['retry-after'];
            resolve({
              status: res.statusCode ?? 0,
              text: Buffer.concat(chunks).toString('utf8'),
              retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined,
            });
          });
          res.on('error', reject);
        },
      );
      // The whole exchange is bounded, not only idle gaps: a site that trickles its answer is unreachable too.
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
      req.on('close', () => clearTimeout(timer));
      req.on('timeout', () => req.destroy(new Error(`no answer within ${opts.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });

  return {
    name,
    async send(body, signal) {
      let answer: Awaited<ReturnType<typeof request>>;
      try {
        answer = await request('POST', COLLECTED_PATH, body, signal);
      } catch (err) {
        return { kind: 'unavailable', reason: (err as Error).message };
      }
      const { status, text } = answer;
      if (status >= 200 && status < 300) {
        try {
          const parsed = JSON.parse(text) as {
            accepted?: unknown;
            rejected?: { error?: unknown }[];
            rejected_omitted?: unknown;
          };
          const listed = Array.isArray(parsed.rejected) ? parsed.rejected : [];
          const omitted = typeof parsed.rejected_omitted === 'number' ? parsed.rejected_omitted : 0;
          const first = listed[0]?.error;
          return {
            kind: 'committed',
            accepted: typeof parsed.accepted === 'number' ? parsed.accepted : 0,
            rejected: listed.length + omitted,
            ...(typeof first === 'string' ? { firstError: first } : {}),
          };
        } catch {
          // 2xx means committed, whatever the body says; an unreadable body only loses the counts.
          return { kind: 'committed', accepted: 0, rejected: 0 };
        }
      }
      const reason = `HTTP ${status}: ${errorCodeOf(text)}`;
      if (status === 429) {
        const seconds = Number(answer.retryAfter);
        return {
          kind: 'throttled',
          retryAfterMs: Number.isFinite(seconds) ? Math.min(seconds, 60) * 1000 : 1000,
          reason,
        };
      }
      if (status === 400 || status === 413) return { kind: 'refused', reason };
      return { kind: 'unavailable', reason };
    },
    async probe(signal) {
      try {
        return (await request('GET', '/health/ready', undefined, signal)).status === 200;
      } catch {
        return false;
      }
    },
    close: () => agent.destroy(),
  };
}

/** The error code and message of a Vigil error answer, short; the raw start of anything else. */
function errorCodeOf(text: string): string {
  try {
    const e = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
    if (e && typeof e.code === 'string') return `${e.code}: ${String(e.message ?? '').slice(0, 200)}`;
  } catch {
    // not JSON
  }
  return text.slice(0, 200);
}
