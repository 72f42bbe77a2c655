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
  /**
   * For a `catching_up` replica: the map revision it was added after. Only a lag report of a consumer the
   * node started from a later map counts, so a report left from an earlier stint of the node on the shard
   * never makes it serve.
   */
  added_after_revision?: number;
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

/**
 * MurmurHash3 x86 32-bit, seed 0, over the UTF-8 bytes: the same function as the engine's `murmurHash3_32`,
 * so a store node can select or delete one shard's rows in SQL (`shardPredicate`) without a shard column,
 * and stable across processes, versions and platforms, which a shard key must be.
 */
export function murmur3(s: string): number {
  const data = Buffer.from(s, 'utf8');
  const n = data.length;
  const blocks = n & ~3;
  let h = 0;
  for (let i = 0; i < blocks; i += 4) {
    let k = data.readUInt32LE(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  switch (n & 3) {
    // biome-ignore lint/suspicious/noFallthroughSwitchClause: the reference algorithm falls through
    case 3:
      k ^= data[blocks + 2] << 16;
    // biome-ignore lint/suspicious/noFallthroughSwitchClause: as above
    case 2:
      k ^= data[blocks + 1] << 8;
    case 1:
      k ^= data[blocks];
      k = Math.imul(k, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, 0x1b873593);
      h ^= k;
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The shard (0 .. shards-1) of an event: a stable hash of its id, so a replayed or re-sent event lands in
 * the same shard and is stored once.
 */
export function shardOf(eventId: string, shards: number): number {
  if (shards <= 1) return 0;
  return murmur3(eventId) % shards;
}

/**
 * The SQL condition selecting shard `shard` of `shards` on a store node's events table (`id` column): what
 * `shardOf` computes, in the engine. Both numbers are checked integers, never text from a client.
 */
export function shardPredicate(shard: number, shards: number, idColumn = 'id'): string {
  if (!Number.isInteger(shard) || !Number.isInteger(shards) || shards < 1 || shard < 0 || shard >= shards) {
    throw new RangeError(`shard ${shard} of ${shards} is not a shard`);
  }
  if (shards === 1) return '1';
  return `murmurHash3_32(${idColumn}) % ${shards} = ${shard}`;
}
