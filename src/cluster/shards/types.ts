/**
 * The shard map: which store nodes hold a replica of which shard of the events, and in what state. Written
 * by one coordinator (the holder of `<prefix>shards/coordinator`) at `<prefix>shards/map`, read and watched
 * by every node. The search fan-out reads it to pick one serving replica per shard.
 *
 * This file is the interface shared with the search fan-out: keep it small and stable.
 */

/** A replica's state. Only `serving` replicas answer searches for the shard. */
export type ReplicaState = 'serving' | 'catching_up' | 'draining';

/** One store node's copy of a shard. */
export interface ShardReplica {
  /** The store node's id (`cluster.node_id`). */
  node: string;
  /**
   * `catching_up`: a new replica still reading the shard's history (not complete: never searched).
   * `serving`: complete up to `lag_messages` behind the stream. `draining`: an old replica kept until its
   * successor serves, then dropped; still complete and searchable.
   */
  state: ReplicaState;
  /** Messages of the shard's subject this replica has not yet committed (as last reported by the node). */
  lag_messages: number;
}

/** The replicas of one shard. */
export interface ShardAssignment {
  shard: number;
  replicas: ShardReplica[];
}

/** The whole map, as stored in etcd and shown by `GET /admin/cluster/status` (`shards`). */
export interface ShardMap {
  /** etcd mod revision of the map's key: grows with every change; 0 before any map was written. */
  revision: number;
  /** S: number of shards (`store.shards`). */
  shards: number;
  /** R: wanted replicas per shard (`store.replicas`, capped by the number of store nodes). */
  replicas: number;
  /** One entry per shard, 0 .. shards-1, in order. */
  assignment: ShardAssignment[];
}

/** FNV-1a, 32 bits, over UTF-8: stable across processes, versions and platforms, which a shard key must be. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * The shard (0 .. shards-1) of an event: a stable hash of its id, so a replayed or re-sent event lands in
 * the same shard and is stored once.
 */
export function shardOf(eventId: string, shards: number): number {
  if (shards <= 1) return 0;
  return fnv1a(eventId) % shards;
}
