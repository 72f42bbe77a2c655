import proxyaddr from '@fastify/proxy-addr';
import { z } from 'zod';

/** Settings of the HTTP server (`http:` in the config file). */
export const httpConfigSchema = z
  .object({
    /** host:port to listen on (VIGIL_HTTP_ADDR). */
    addr: z
      .string()
      .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port, for example 127.0.0.1:8080')
      .default('127.0.0.1:8080'),
    /** Largest request body accepted, in bytes. */
    max_body_bytes: z
      .number()
      .int()
      .min(1024)
      .default(64 * 1024 * 1024),
    /**
     * Requests handled at once; more are answered 429 with Retry-After. A request holds its slot from its
     * first byte until its answer is sent or its connection closes, whichever comes first.
     */
    max_inflight_requests: z.number().int().min(1).default(256),
    /**
     * Requests served without a token (the login, the console's files) handled at once, in a pool of their
     * own: however many anyone sends, they never take one of the `max_inflight_requests` slots, so they
     * cannot starve authenticated work. More get 429. /health/* and /metrics take no slot at all.
     */
    max_inflight_open_requests: z.number().int().min(1).default(32),
    /**
     * Of those, the most from one client address (the socket's, or the forwarded one when the socket's peer
     * is a trusted proxy). 8: a browser opens up to 6 connections to a host while it loads the console.
     */
    max_inflight_open_requests_per_address: z.number().int().min(1).default(8),
    /**
     * Bytes of ingest bodies in flight at once, from their Content-Length (a body without one counts as
     * `max_body_bytes`); a request past it is answered 503 `overloaded` with Retry-After before its body is
     * read. Bounds the memory that concurrent large ingest bodies take.
     */
    max_inflight_body_bytes: z
      .number()
      .int()
      .min(1024)
      .default(256 * 1024 * 1024),
    /**
     * Addresses or CIDR ranges of the balancers in front (HAProxy with `option forwardfor`): from these
     * peers only, the client address is read from X-Forwarded-For, so that per-address limits, the login
     * limiter and the audit log see clients rather than the balancer. Empty: the header is ignored (a client
     * could write it).
     */
    trusted_proxies: z
      .array(z.string().max(64))
      .max(64)
      .default([])
      .superRefine((list, ctx) => {
        try {
          proxyaddr.compile(list);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: `not an address or CIDR range: ${(err as Error).message}` });
        }
      }),
    /** Whether /metrics needs a token (health endpoints never do). */
    metrics_auth: z.boolean().default(false),
    /**
     * Time a client has to send a request's headers, from its first byte; past it the connection gets 408
     * and is closed (Node's `headersTimeout`). Ten seconds is ample for any client that is not stalling.
     */
    headers_timeout_ms: z.number().int().min(100).max(300_000).default(10_000),
    /**
     * Time a client has to send a whole request, headers and body, from its first byte; past it the
     * connection gets 408 and is closed (Node's `requestTimeout`). It ends when the body has arrived, so a
     * long search is not cut by it. 60 s moves a `max_body_bytes` body (64 MiB) at 9 Mbit/s.
     */
    request_timeout_ms: z.number().int().min(100).max(3_600_000).default(60_000),
    /**
     * How long an idle keep-alive connection is kept between requests. Longer than the 60 s idle timeout
     * of common load balancers, so that the balancer, not Vigil, closes an idle connection and never sends
     * a request on one Vigil is closing.
     */
    keep_alive_timeout_ms: z.number().int().min(100).max(600_000).default(72_000),
    /**
     * A connection on which nothing moves for this long (a client that stops reading its answer, a
     * handler that never answers) is closed. Longer than the slowest search (`store.query_timeout_ms`,
     * 30 s, plus its queue), so that only a stuck connection is cut.
     */
    idle_timeout_ms: z.number().int().min(100).max(3_600_000).default(120_000),
  })
  .strict()
  .refine((c) => c.headers_timeout_ms <= c.request_timeout_ms, {
    message: 'headers_timeout_ms must not be longer than request_timeout_ms',
    path: ['headers_timeout_ms'],
  });

export type HttpConfig = z.infer<typeof httpConfigSchema>;

/** Splits `host:port` (IPv6 in brackets) into its parts. */
export function splitAddr(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)) };
}
