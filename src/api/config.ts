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
    /** Requests handled at once; more are answered 429 with Retry-After. */
    max_inflight_requests: z.number().int().min(1).default(256),
    /** Whether /metrics needs a token (health endpoints never do). */
    metrics_auth: z.boolean().default(false),
  })
  .strict();

export type HttpConfig = z.infer<typeof httpConfigSchema>;

/** Splits `host:port` (IPv6 in brackets) into its parts. */
export function splitAddr(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)) };
}
