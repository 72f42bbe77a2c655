/**
 * What the sharded fault tests read of a dev cluster: the shard map a node reports, whether it has settled,
 * and which event ids each node stores, with how many copies, counted over the nodes.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ShardAssignment } from '../../src/cluster/index.ts';
import type { TestDevCluster } from '../harness/dev-cluster.ts';

/** Rows one shard call may list: the tests read ids a few buckets at a time, far below it. */
const ID_PAGE = 10000;

/** Reads of one sharded dev cluster of `shards` shards of `replicas` copies. */
export interface ShardProbe {
  /** The shard map as `node` reports it (GET /admin/cluster/status), when it lists every shard. */
  mapOf(node: string): Promise<ShardAssignment[] | undefined>;
  /** The map when settled on `nodes`: R serving replicas per shard, each node between floor and ceil of S*R/N. */
  settledMap(asked: string, nodes: string[]): Promise<ShardAssignment[] | undefined>;
  /**
   * Each event id matching one of `queries` stored on `node`, with how many times: the node's own rows of
   * every shard, one shard call per shard (peer token, `stale_ok`: rows of a shard the node no longer serves
   * count too, since they must be gone), never fanned out. Several queries split the ids so that no answer
   * nears the row limit (a cut list would read as missing ids).
   */
  idsOn(node: string, queries: string[]): Promise<Map<string, number>>;
}

/** A probe of `dc`, whose peer token the dev cluster wrote to `<dir>/peer-token`; `user` names the test. */
export function createShardProbe(
  dc: TestDevCluster,
  o: { shards: number; replicas: number; user: string },
): ShardProbe {
  const peerToken = readFileSync(join(dc.dir, 'peer-token'), 'utf8').trim();
  const mapOf = async (node: string) => {
    const res = await dc.api(node, 'GET', '/admin/cluster/status');
    const shards = res.body?.shards as ShardAssignment[] | null;
    return Array.isArray(shards) && shards.length === o.shards ? shards : undefined;
  };
  return {
    mapOf,
    async settledMap(asked, nodes) {
      const map = await mapOf(asked);
      if (!map) return undefined;
      for (const a of map) {
        if (a.replicas.length !== o.replicas) return undefined;
        if (a.replicas.some((r) => r.state !== 'serving' || !nodes.includes(r.node))) return undefined;
      }
      const held = heldBy(map);
      const lo = Math.floor((o.shards * o.replicas) / nodes.length);
      const hi = Math.ceil((o.shards * o.replicas) / nodes.length);
      return nodes.every((n) => (held.get(n) ?? 0) >= lo && (held.get(n) ?? 0) <= hi) ? map : undefined;
    },
    async idsOn(node, queries) {
      const url = dc.nodes.find((n) => n.name === node)!.url;
      const out = new Map<string, number>();
      const now = Date.now();
      for (let shard = 0; shard < o.shards; shard++) {
        for (const q of queries) {
          const res = await fetch(`${url}/internal/v1/search/shard`, {
            method: 'POST',
            headers: { authorization: `Bearer ${peerToken}`, 'content-type': 'application/json' },
            body: JSON.stringify({
              q,
              from: now - 6 * 3600_000,
              to: now + 3600_000,
              limit: ID_PAGE,
              maxLimit: ID_PAGE,
              tenants: ['default'],
              now,
              user: o.user,
              shard,
              shards: o.shards,
              stale_ok: true,
            }),
            signal: AbortSignal.timeout(90000),
          });
          const body = (await res.json()) as { rows?: Record<string, unknown>[]; count?: number; node?: string };
          if (res.status !== 200)
            throw new Error(`${node} shard ${shard}: answered ${res.status}: ${JSON.stringify(body)}`);
          assert.equal(body.node, node, 'answered by the node asked');
          const rows = body.rows ?? [];
          assert.ok(rows.length < ID_PAGE, `${node} shard ${shard}: an id list reached the search limit`);
          assert.equal(rows.length, body.count, `${node} shard ${shard}: every matching event listed`);
          for (const row of rows) {
            const id = String(row.id);
            out.set(id, (out.get(id) ?? 0) + 1);
          }
        }
      }
      return out;
    },
  };
}

/** Replicas each node holds in `map`, any state. */
export function heldBy(map: readonly ShardAssignment[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const a of map) for (const r of a.replicas) out.set(r.node, (out.get(r.node) ?? 0) + 1);
  return out;
}

/** Queries of the load's events of `run` (see load.ts), `perQuery` buckets each, covering buckets 0..buckets-1. */
export function bucketQueries(run: string, buckets: number, perQuery: number): string[] {
  const out: string[] = [];
  for (let first = 0; first < buckets; first += perQuery) {
    const group = Array.from({ length: Math.min(perQuery, buckets - first) }, (_, i) => first + i).join(' OR ');
    out.push(`test.run:${run} AND test.bucket:(${group})`);
  }
  return out;
}

/** Copies of each id over the nodes: the sum of the nodes' id lists. */
export function copiesOver(lists: Iterable<Map<string, number>>): Map<string, number> {
  const total = new Map<string, number>();
  for (const ids of lists) for (const [id, n] of ids) total.set(id, (total.get(id) ?? 0) + n);
  return total;
}

/** The acknowledged ids not stored exactly `replicas` times, as `<id>x<copies>` (a failure message's sample). */
export function wrongCopies(acked: Iterable<string>, total: Map<string, number>, replicas: number): string[] {
  return [...acked].filter((id) => total.get(id) !== replicas).map((id) => `${id}x${total.get(id) ?? 0}`);
}
