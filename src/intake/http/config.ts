import { z } from 'zod';

/** Settings of the HTTP event intake (`ingest:` in the config file). */
export const httpIntakeConfigSchema = z
  .object({
    /** Largest single event (one NDJSON line or array element), in bytes. */
    max_event_bytes: z
      .number()
      .int()
      .min(256)
      .default(1024 * 1024),
    /** Most events in one request. */
    max_events_per_request: z.number().int().min(1).default(100000),
    /** Tenant of events sent with the admin token or a token without a tenant. */
    tenant: z.string().min(1).default('default'),
  })
  .strict();

export type HttpIntakeConfig = z.infer<typeof httpIntakeConfigSchema>;
