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
    /**
     * Most Idempotency-Keys remembered (24 hours each, in memory and in `<data_dir>/ingest-keys`); past it
     * the oldest are forgotten, counted by `vigil_ingest_idempotency_keys_evicted_total`. About 150 bytes each.
     */
    idempotency_max_keys: z.number().int().min(1000).default(1000000),
    /**
     * Threads that split and normalize HTTP ingest requests (and build the store's rows of their events)
     * beside the event loop, one request at a time each; 0 does it on the event loop.
     */
    threads: z.number().int().min(0).max(16).default(0),
    /** Tenant of events sent with the admin token or a token without a tenant. */
    tenant: z.string().min(1).default('default'),
  })
  .strict();

export type HttpIntakeConfig = z.infer<typeof httpIntakeConfigSchema>;
