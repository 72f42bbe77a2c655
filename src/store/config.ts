import { z } from 'zod';
import { rangeCopyConfigSchema } from './copy/config.ts';
import { materializeConfigSchema } from './materialize/config.ts';

/** Settings of the event store (`store:` in the config file). */
export const storeConfigSchema = z
  .object({
    /** Events older than this many days are deleted by the engine (TTL by age). */
    retention_days: z.number().int().min(1).max(36500).default(30),
    /** fsync every inserted part and its directory before acknowledging (survives power loss, not only kill -9). */
    fsync: z.boolean().default(true),
    /**
     * Longest a search may take, from its arrival to its answer: waiting for a place among the user's
     * searches and for the engine included. The engine stops the statement itself at the deadline
     * (max_execution_time), so a timed-out search costs nothing more; the answer is 503 `query_timeout`.
     * A retro-hunt, which reads page after page, has this long for each page.
     */
    query_timeout_ms: z.number().int().min(100).default(30000),
    /** Searches (and hunts) of one user that run at once; more wait in the user's queue. */
    search_concurrency_per_user: z.number().int().min(1).max(1000).default(8),
    /** Searches of one user that may wait for a place; beyond it a search answers 429 with Retry-After. */
    search_queue_per_user: z.number().int().min(0).max(10000).default(32),
    /** Longest a search waits in its user's queue before it answers 429 (bounded by query_timeout_ms too). */
    search_queue_timeout_ms: z.number().int().min(0).default(10000),
    /** Cluster mode: how this node's replica follows the replicated log. */
    materialize: materializeConfigSchema.prefault({}),
    /** Cluster mode: copies between replicas of what the event stream no longer holds. */
    copy: rangeCopyConfigSchema.prefault({}),
  })
  .strict();

export type StoreConfig = z.infer<typeof storeConfigSchema>;
