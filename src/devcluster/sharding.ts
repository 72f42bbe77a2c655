/**
 * `vigil dev-cluster up --shards S --replicas R`: the part of every node's configuration that shards the
 * events. Kept apart from the plan so the other dev-cluster options stay independent of it.
 */

/** What `--shards` and `--replicas` ask for; both optional (unset: one shard on every node, as before). */
export interface ShardingOptions {
  shards?: number;
  replicas?: number;
}

/**
 * The `store` settings of every node for `opts` on a cluster of `nodes` Vigil nodes, or undefined when
 * nothing is asked; throws a message (for a usage error) when the request cannot be met.
 */
export function shardingConfig(opts: ShardingOptions, nodes: number): Record<string, unknown> | undefined {
  const { shards, replicas } = opts;
  if (shards === undefined && replicas === undefined) return undefined;
  if (replicas !== undefined && replicas > nodes) {
    throw new Error(
      `--replicas ${replicas} is more than the ${nodes} Vigil nodes: each replica needs a node of its own`,
    );
  }
  if ((shards ?? 1) === 1 && replicas !== undefined) {
    throw new Error('--replicas needs --shards of 2 or more: with one shard every node keeps every event');
  }
  return {
    store: {
      shards: shards ?? 1,
      ...(replicas !== undefined ? { replicas } : {}),
      // A dev cluster is for trying failures: re-replicate a killed node's shards after 20 s, not 60.
      shard_grace_ms: 20000,
    },
  };
}
