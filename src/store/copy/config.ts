import { z } from 'zod';

/** Settings of the range copy between store replicas (`store.copy` in the config file). */
export const rangeCopyConfigSchema = z
  .object({
    /** Serve this replica's events to peers, and copy from peers what the stream no longer holds. */
    enabled: z.boolean().default(true),
    /** Most events in one page of a copy. */
    page_max_events: z.number().int().min(1).max(10000).default(1000),
    /** Most bytes of rows in one page (before gzip); a single larger event goes alone. Below NATS's max_payload once compressed. */
    page_max_bytes: z
      .number()
      .int()
      .min(1024)
      .max(8 * 1024 * 1024)
      .default(512 * 1024),
    /** Copy rate limit of the receiving replica, all its copies together, in events per second (0: no limit). */
    max_events_per_second: z.number().int().min(0).default(20000),
    /**
     * Copy rate limit of the receiving replica, all its copies together, in bytes of rows per second (JSON,
     * before gzip; 0: no limit): a new replica of a shard copies the shard's whole history, so this bounds
     * what that takes of the peer's disk and the network.
     */
    max_bytes_per_second: z.number().int().min(0).default(0),
    /** Longest wait for a peer's answer to one offer or page request. */
    request_timeout_ms: z.number().int().min(100).default(5000),
    /** How often a missing range is asked for again while no peer can serve it. */
    retry_interval_ms: z.number().int().min(100).default(30000),
  })
  .strict();

export type RangeCopyConfig = z.infer<typeof rangeCopyConfigSchema>;
