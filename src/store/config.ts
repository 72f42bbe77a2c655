import { z } from 'zod';
import { materializeConfigSchema } from './materialize/config.ts';

/** Settings of the event store (`store:` in the config file). */
export const storeConfigSchema = z
  .object({
    /** Events older than this many days are deleted by the engine (TTL by age). */
    retention_days: z.number().int().min(1).max(36500).default(30),
    /** fsync every inserted part and its directory before acknowledging (survives power loss, not only kill -9). */
    fsync: z.boolean().default(true),
    /** Longest a search may run before it is cancelled. */
    query_timeout_ms: z.number().int().min(100).default(30000),
    /** Cluster mode: how this node's replica follows the replicated log. */
    materialize: materializeConfigSchema.prefault({}),
  })
  .strict();

export type StoreConfig = z.infer<typeof storeConfigSchema>;
