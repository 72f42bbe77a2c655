import { z } from 'zod';

/**
 * Settings of searches spread over shards (`search:` in the config file): used only when the store is split
 * into shards (S > 1); with one shard a search is answered as before, with no extra hop.
 */
export const searchConfigSchema = z
  .object({
    /** Longest one node-to-node shard call may take before the next replica of the shard is asked. */
    shard_call_timeout_ms: z.number().int().min(100).default(30000),
    /** A shard whose replica has not answered after this long is also asked of its next replica (hedge). */
    hedge_after_ms: z.number().int().min(1).default(2000),
    /**
     * Most bytes of shard answers one search gathers on the coordinating node; past it the search fails
     * (400 `search_too_large`) instead of taking the memory. States are small and event pages are cut to
     * the limit on every shard, so only very wide pages come near.
     */
    max_gathered_bytes: z
      .number()
      .int()
      .min(1024)
      .default(256 * 1024 * 1024),
  })
  .strict();

export type SearchConfig = z.infer<typeof searchConfigSchema>;
