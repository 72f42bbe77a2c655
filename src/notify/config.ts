import { z } from 'zod';
// The model module only (not the incidents index): loading the config must not load the database drivers.
import { SEVERITIES } from '../detect/alerts/severity.ts';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** What every destination has: a unique name and which alerts it takes. */
const selection = {
  /** Unique name; part of each delivery id, so renaming a destination re-sends nothing and dedupes nothing. */
  name: z.string().regex(NAME, 'letters, digits, dot, dash, underscore; at most 64'),
  /** Alerts at or above this level (informational < low < medium < high < critical). */
  min_level: z.enum(SEVERITIES).optional(),
  /** Alerts whose rule has one of these tags (`attack.*` matches a prefix). */
  tags: z.array(z.string().min(1)).default([]),
  /** With both min_level and tags: `all` needs both to hold, `any` either. Neither set: every alert. */
  match: z.enum(['all', 'any']).default('all'),
};

/** A JSON POST per alert, signed with HMAC-SHA256 (X-Vigil-Signature: sha256=<hex>) under `secret`. */
export const webhookDestinationSchema = z
  .object({
    ...selection,
    type: z.literal('webhook'),
    url: z.string().regex(/^https?:\/\/\S+$/, 'expected an http:// or https:// URL'),
    /** Key of the body's HMAC signature; share it with the receiver. */
    secret: z.string().min(16, 'must be at least 16 characters'),
    /** Longest wait for the receiver's answer. */
    timeout_ms: z.number().int().min(100).default(10000),
    /** Extra request headers (authorization for the receiver, for example). */
    headers: z.record(z.string(), z.string()).default({}),
  })
  .strict();

/** An RFC 5424 syslog message with a CEF payload per alert, over UDP or TCP (octet-counted framing). */
export const syslogDestinationSchema = z
  .object({
    ...selection,
    type: z.literal('syslog'),
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    protocol: z.enum(['udp', 'tcp']).default('udp'),
    /** Syslog facility number (13: log audit, 10: security/authorization). */
    facility: z.number().int().min(0).max(23).default(13),
    /** Longest wait to connect and write (TCP). */
    timeout_ms: z.number().int().min(100).default(10000),
  })
  .strict();

export const destinationSchema = z.discriminatedUnion('type', [webhookDestinationSchema, syslogDestinationSchema]);

/** Settings of notifications (`notify:` in the config file). */
export const notifyConfigSchema = z
  .object({
    /** Run the delivery worker on this node (deliveries are still recorded when false). */
    worker_enabled: z.boolean().default(true),
    destinations: z
      .array(destinationSchema)
      .default([])
      .refine((list) => new Set(list.map((d) => d.name)).size === list.length, 'destination names must be unique'),
    /** How often the worker looks for due deliveries (it also wakes when alerts are queued). */
    poll_interval_ms: z.number().int().min(10).default(1000),
    /** Deliveries claimed at once. */
    batch_size: z.number().int().min(1).max(10000).default(100),
    /** Deliveries sent at once. */
    concurrency: z.number().int().min(1).max(1000).default(8),
    /** Attempts before a delivery goes to the dead-letter list. */
    max_attempts: z.number().int().min(1).default(8),
    /** Wait before the second attempt; doubles each attempt, with jitter. */
    backoff_initial_ms: z.number().int().min(1).default(1000),
    /** Longest wait between attempts. */
    backoff_max_ms: z.number().int().min(1).default(600_000),
    /** A claimed delivery whose worker died is claimed again after this long (must exceed timeouts). */
    lease_ms: z.number().int().min(1000).default(60_000),
  })
  .strict();

export type NotifyConfig = z.infer<typeof notifyConfigSchema>;
export type Destination = z.infer<typeof destinationSchema>;
export type WebhookDestination = z.infer<typeof webhookDestinationSchema>;
export type SyslogDestination = z.infer<typeof syslogDestinationSchema>;
