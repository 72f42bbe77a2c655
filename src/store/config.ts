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
     * OS nice value (0-19) of the engine's threads while they insert events (and rows of other components)
     * and merge parts; a search's threads run at -1, the event loop at 0 (the store's own reads set none: a pool thread an INSERT
     * left niced may run one at this value). Under
     * load the kernel then runs a search before ingest work, and ingest still gets the CPU searches leave
     * (never stopped by them: at 10 it has about a twelfth of a search's share of a contended core, all of
     * it alone). 0 (the default) turns it off, searches then at 0 too: measured on a loaded 2-core machine it
     * did not lower the bench's p99 beyond the noise and took ingest's share of the CPU while searches ran.
     * Needs CAP_SYS_NICE (root has it); without it the engine leaves every thread as it is. See
     * docs/adr/0011-searches-first-on-the-cpu.md.
     */
    ingest_nice: z.number().int().min(0).max(19).default(0),
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
    /**
     * Cluster mode: shards of the events (S). Each event goes to shard murmurHash3_32(event id) % S and each
     * shard is kept by `replicas` store nodes. 1: every store node keeps every event (no shard map). Every
     * node of a cluster must agree on it, and it cannot change once events are stored.
     */
    shards: z.number().int().min(1).max(1024).default(1),
    /** Cluster mode: store nodes that keep each shard (R); 0 means every store node. */
    replicas: z.number().int().min(0).max(16).default(0),
    /**
     * Cluster mode, S > 1: how long a store node may be gone (its lease expired) before its shards are placed
     * on other nodes. Shorter re-replicates sooner after a crash; longer spares a copy on a quick restart.
     */
    shard_grace_ms: z.number().int().min(0).default(60000),
    /** Cluster mode, S > 1: a new replica serves searches once it is at most this many messages behind. */
    shard_serve_lag_messages: z.number().int().min(0).default(10),
    /**
     * Cluster mode, S > 1: most replicas catching up at once in the cluster when shards move (a node joins,
     * drains or died): each copies its shard's history from a serving replica (store.copy) and reads what the
     * stream holds of it, so more at once slows every node.
     */
    shard_max_catching_up: z.number().int().min(1).max(1024).default(4),
    /** Cluster mode: how this node's replica follows the replicated log. */
    materialize: materializeConfigSchema.prefault({}),
    /** Cluster mode: copies between replicas of what the event stream no longer holds. */
    copy: rangeCopyConfigSchema.prefault({}),
  })
  .strict();

export type StoreConfig = z.infer<typeof storeConfigSchema>;
