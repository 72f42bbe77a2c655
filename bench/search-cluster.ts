/**
 * A sharded dev cluster whose nodes start on pre-filled store folders, for the search benchmark: loading
 * 10M events through ingest would take hours on this machine, so each node's `data/events` is a copy of a
 * shard folder the builder made (search-data.ts: the rows of the shards that node holds, as `shardOf`
 * routes them), placed before the node first starts. How the nodes then leave those rows alone:
 * - the shard map is written into etcd by this module before any Vigil node starts (the JSON the shard
 *   coordinator keeps at `<prefix>shards/map`), placing shard k on node k % N with R = 1. The first
 *   coordinator to start reads it and keeps every placement: the nodes of the map are within
 *   `store.shard_grace_ms` (set long here) until they register, and a balanced map needs no move. Without
 *   it, the first node up would take every shard, and the later moves would delete the moved rows
 *   (`ALTER TABLE ... DELETE WHERE <shard>` on the old replica, which drops a shard after its successor
 *   caught up from a stream that never held them);
 * - each node's materializer starts a durable consumer per shard of its own on an empty stream: lag 0, its
 *   replicas serve at once, and nothing is written to the events table;
 * - a node drops only shards it has a position row for (`vigil.positions`) and no longer holds: a pre-filled
 *   folder has none.
 * The benchmark checks the outcome rather than trusting it: every sharded answer must equal the single
 * node's over the same events, and no answer may be partial.
 */
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { type DevCluster, createDevCluster } from '../src/devcluster/index.ts';
import { progress } from './common.ts';

/** A running sharded cluster for the benchmark. */
export interface ShardedCluster {
  cluster: DevCluster;
  /** Base URLs of the Vigil nodes by name (vigil-1 ...). */
  urls: Map<string, string>;
  token: string;
  /** PID of a Vigil node. */
  pid(node: string): number;
  /** Stops every member (SIGTERM, then SIGKILL after its grace period) and removes the folder. */
  close(): Promise<void>;
}

/** The key prefix every Vigil node of the dev cluster writes under (cluster.key_prefix's default). */
const KEY_PREFIX = 'vigil/';

/**
 * Creates a dev cluster of `nodes` nodes with `shards` shards and one replica each in `dir`, copies shard
 * k's folder (`shardDirs[k]/events`) into node k % nodes before any node starts, writes the shard map, and
 * starts everything.
 */
export async function startShardedCluster(opts: {
  dir: string;
  nodes: number;
  shards: number;
  shardDirs: readonly string[];
  readyTimeoutMs?: number;
}): Promise<ShardedCluster> {
  const { nodes, shards } = opts;
  if (shards % nodes !== 0)
    throw new Error(`--shards ${shards} must be a multiple of --nodes ${nodes} (one folder a node)`);
  if (shards !== nodes) throw new Error('a node holds one shard folder: --shards must equal --nodes');
  rmSync(opts.dir, { recursive: true, force: true });
  const cluster = await createDevCluster({
    dir: opts.dir,
    nodes,
    logLevel: 'warn',
    vigilConfig: {
      store: { shards, replicas: 1, shard_grace_ms: 3_600_000 },
      // Only the pre-filled events: no rules firing, no health events of the nodes' own.
      detect: { starter_rules: false },
      selfmon: { enabled: false },
    },
  });
  const closeAll = async () => {
    await cluster.stop(undefined).catch((err: unknown) => progress(`stopping the dev cluster: ${String(err)}`));
    rmSync(opts.dir, { recursive: true, force: true });
  };
  try {
    const members = cluster.state().members;
    const vigils = members.filter((m) => m.kind === 'vigil');
    const started = performance.now();
    for (let k = 0; k < shards; k++) {
      const node = vigils[k % nodes];
      const data = node.files.data;
      if (data === undefined) throw new Error(`${node.name} has no data folder in the plan`);
      // A plain copy: new modification times, so the parts are as young as the build left them.
      cpSync(join(opts.shardDirs[k], 'events'), join(data, 'events'), { recursive: true });
    }
    progress(`shard folders copied into the nodes in ${Math.round((performance.now() - started) / 100) / 10} s`);
    const servers = members.filter((m) => m.kind === 'nats' || m.kind === 'etcd').map((m) => m.name);
    await cluster.start(servers, { readyTimeoutMs: opts.readyTimeoutMs });
    const etcd = new Etcd3({ hosts: members.filter((m) => m.kind === 'etcd').map((m) => m.addresses.client) });
    try {
      const assignment = Array.from({ length: shards }, (_, k) => ({
        shard: k,
        replicas: [{ node: vigils[k % nodes].name, state: 'serving', lag_messages: 0 }],
      }));
      await etcd.put(`${KEY_PREFIX}shards/map`).value(JSON.stringify({ shards, replicas: 1, assignment }));
    } finally {
      etcd.close();
    }
    await cluster.start(
      vigils.map((m) => m.name),
      { readyTimeoutMs: opts.readyTimeoutMs },
    );
    const urls = new Map(vigils.map((m) => [m.name, m.addresses.http]));
    return {
      cluster,
      urls,
      token: cluster.adminToken(),
      pid(node) {
        const pid = cluster.member(node).pid;
        if (pid === null) throw new Error(`${node} is not running`);
        return pid;
      },
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
