import { z } from 'zod';
import { httpIntakeConfigSchema } from '../intake/http/config.ts';
import { syslogConfigSchema } from '../intake/syslog/config.ts';
import { parseConfigSchema } from '../parse/config.ts';

const addr = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port, for example 127.0.0.1:8090');

/** One site the collector forwards to: its load balancer (or one node) and the collector key of that site. */
const endpointSchema = z
  .strictObject({
    /** Base URL of the site's API (`https://siem-a.example:8080`); events go to `<url>/api/v1/ingest/collected`. */
    url: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//.test(u), 'expected an http:// or https:// URL')
      .refine((u) => new URL(u).username === '' && new URL(u).password === '', 'no credentials in the URL: use token'),
    /** An API key of that site with the `collector` scope (`vgk_...`). */
    token: z.string().min(16).optional(),
    /** A file holding the key instead (first line), kept out of the config file. */
    token_file: z.string().min(1).optional(),
    /** PEM CA bundle that signs the site's certificate (https); the system's CAs otherwise. */
    ca_file: z.string().min(1).optional(),
    /** A name for logs and metrics; the URL's host:port by default. */
    name: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/)
      .optional(),
  })
  .superRefine((e, ctx) => {
    if ((e.token === undefined) === (e.token_file === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['token'], message: 'give exactly one of token and token_file' });
    }
  });

/** The HTTP NDJSON listener: the same body as a node's POST /api/v1/ingest, on `<addr>/api/v1/ingest`. */
const httpSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** host:port to listen on. */
    addr: addr.default('127.0.0.1:8090'),
    /** When set, senders must present this token (`Authorization: Bearer <token>`): a file holding it. */
    token_file: z.string().min(1).optional(),
    /** PEM certificate and key: the listener speaks HTTPS when both are set. */
    tls_cert_file: z.string().min(1).optional(),
    tls_key_file: z.string().min(1).optional(),
    /** PEM CA bundle: when set, HTTPS clients must present a certificate signed by it. */
    tls_ca_file: z.string().min(1).optional(),
    /** Largest request body, in bytes. */
    max_body_bytes: z
      .number()
      .int()
      .min(1024)
      .max(256 * 1024 * 1024)
      .default(16 * 1024 * 1024),
    /** Requests handled at once; more are answered 429. */
    max_inflight_requests: z.number().int().min(1).default(64),
    /** Time a client has to send a whole request, in milliseconds. */
    request_timeout_ms: z.number().int().min(100).max(3_600_000).default(60_000),
    /** Largest single event (one NDJSON line), in bytes. */
    max_event_bytes: httpIntakeConfigSchema.shape.max_event_bytes,
    /** Most events in one request. */
    max_events_per_request: z.number().int().min(1).max(1_000_000).default(100_000),
    /** Most Idempotency-Keys remembered (24 hours each). */
    idempotency_max_keys: httpIntakeConfigSchema.shape.idempotency_max_keys,
  })
  .superRefine((c, ctx) => {
    if ((c.tls_cert_file === undefined) !== (c.tls_key_file === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['tls_cert_file'], message: 'tls_cert_file and tls_key_file go together' });
    }
    if (c.tls_ca_file !== undefined && c.tls_cert_file === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls_ca_file'], message: 'needs tls_cert_file and tls_key_file' });
    }
  });

/** The local retention queue: every event is here, fsynced, from its acknowledgement until a site has it. */
const queueSchema = z.strictObject({
  /** Bytes held at most; past it new events are refused (TCP senders slowed, UDP datagrams dropped, counted). */
  max_bytes: z
    .number()
    .int()
    .min(1024 * 1024)
    .default(1024 * 1024 * 1024),
  /** Events older than this are purged unforwarded (counted and logged): the retention of the queue. */
  max_age_seconds: z
    .number()
    .int()
    .min(60)
    .default(7 * 86400),
  /** A segment file is closed past this size; forwarded segments are deleted whole. */
  segment_bytes: z
    .number()
    .int()
    .min(64 * 1024)
    .default(64 * 1024 * 1024),
  /** fdatasync each append before the sender is acknowledged (survives power loss, not only kill -9). */
  fsync: z.boolean().default(true),
});

/** How events leave: the sites in order of preference, and the size of what is sent at once. */
const forwardSchema = z.strictObject({
  /** Sites in order of preference: the first reachable one gets the events; back to an earlier one when it answers again. */
  endpoints: z.array(endpointSchema).min(1).max(16),
  /** Most events in one request to a site. */
  batch_max_events: z.number().int().min(1).max(100_000).default(1000),
  /** Largest request to a site, in bytes (a batch is cut before it; one event alone may pass it). */
  batch_max_bytes: z
    .number()
    .int()
    .min(64 * 1024)
    .max(64 * 1024 * 1024)
    .default(4 * 1024 * 1024),
  /** One request to a site, from connect to answer, in milliseconds; past it the site counts as unreachable. */
  request_timeout_ms: z.number().int().min(100).max(600_000).default(30_000),
  /** How often a site that failed is probed (GET /health/ready) to go back to it, in milliseconds. */
  probe_interval_ms: z.number().int().min(100).max(600_000).default(5000),
  /** Wait before retrying when every site failed, growing to retry_max_ms, in milliseconds. */
  retry_initial_ms: z.number().int().min(10).default(500),
  retry_max_ms: z.number().int().min(10).default(10_000),
});

/** The metrics listener (Prometheus text at `/metrics`); off when no address is given. */
const metricsSchema = z.strictObject({
  addr: addr.optional(),
});

/** The configuration file of `vigil collect`: its own schema, unknown keys refused at every level. */
export const collectConfigSchema = z
  .strictObject({
    /** Folder of the queue, the Idempotency-Keys and the lock; one collector per folder. */
    data_dir: z.string().min(1).default('./collect-data'),
    log: z
      .strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') })
      .default({
        level: 'info',
      }),
    /** The syslog listeners, with every setting of a node's `syslog:` section (UDP, TCP, TLS, RELP). */
    syslog: syslogConfigSchema.default(syslogConfigSchema.parse({})),
    http: httpSchema.default(httpSchema.parse({})),
    /** The normalizer's limits, as a node's `parse:` section. */
    parse: parseConfigSchema.default(parseConfigSchema.parse({})),
    queue: queueSchema.default(queueSchema.parse({})),
    forward: forwardSchema,
    metrics: metricsSchema.default({}),
  })
  .superRefine((c, ctx) => {
    if (c.forward.retry_initial_ms > c.forward.retry_max_ms) {
      ctx.addIssue({ code: 'custom', path: ['forward', 'retry_initial_ms'], message: 'must not exceed retry_max_ms' });
    }
  });

/** The validated collector settings, defaults applied. */
export type CollectConfig = z.infer<typeof collectConfigSchema>;
export type CollectEndpointConfig = CollectConfig['forward']['endpoints'][number];
