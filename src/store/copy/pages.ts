import { shardPredicate } from '../../cluster/shards/index.ts';
import type { EventStore } from '../index.ts';
import { EVENTS_TABLE, STORED_COLUMNS } from '../schema.ts';

/** The last row of a page: the next page starts after it (the order of {@link readPage}). */
export interface Cursor {
  ingested: number;
  tenant: string;
  ts: number;
  id: string;
  content_hash: string;
}

/** One shard of `count` (`murmurHash3_32(id) % count = index`): what a shard copy reads. */
export interface ShardFilter {
  index: number;
  count: number;
}

/** A page asked of a peer: rows ingested in from..to (epoch ms, both included) after `after`. */
export interface PageRequest {
  from_ingested: number;
  to_ingested: number;
  after: Cursor | null;
  max_events: number;
  /** Only the rows of this shard (a new replica of one shard); every row when absent. */
  shard?: ShardFilter;
}

/** A page: rows as JSONEachRow lines, and the cursor of the next page (null: the last one). */
export interface PageAnswer {
  rows?: string[];
  next?: Cursor | null;
  error?: string;
}

/** A shard filter from a peer's request: two checked integers, or a RangeError (never text in SQL). */
function shardCondition(shard: ShardFilter | undefined): string {
  if (shard === undefined) return '1';
  return shardPredicate(Number(shard.index), Number(shard.count));
}

/**
 * Reads one page of rows in (ingested, tenant, ts, id, content_hash) order, at most `limits.page_max_events`
 * (and the request's max_events) and `limits.page_max_bytes` of row text (a single larger row goes alone).
 * With `req.shard`, only that shard's rows: the engine's `murmurHash3_32(id) % S`, which is `shardOf`.
 */
export async function readPage(
  store: EventStore,
  limits: { page_max_events: number; page_max_bytes: number },
  req: PageRequest,
): Promise<PageAnswer> {
  const max = Math.max(1, Math.min(limits.page_max_events, Math.trunc(req.max_events)));
  const after = req.after ?? { ingested: req.from_ingested - 1, tenant: '', ts: 0, id: '', content_hash: '' };
  const rows = await store.query<Record<string, unknown> & { i_ms: string; t_ms: string }>(
    `SELECT ${STORED_COLUMNS.join(', ')}, content_hash,
            toString(toUnixTimestamp64Milli(ingested)) AS i_ms, toString(toUnixTimestamp64Milli(ts)) AS t_ms
       FROM ${EVENTS_TABLE}
      WHERE ingested >= fromUnixTimestamp64Milli({from:Int64}) AND ingested <= fromUnixTimestamp64Milli({to:Int64})
        AND (ingested, tenant, ts, id, content_hash) > (fromUnixTimestamp64Milli({a_i:Int64}), {a_tenant:String},
             fromUnixTimestamp64Milli({a_ts:Int64}), {a_id:String}, {a_hash:String})
        AND ${shardCondition(req.shard)}
      ORDER BY ingested, tenant, ts, id, content_hash
      LIMIT {max:UInt32}`,
    {
      from: req.from_ingested,
      to: req.to_ingested,
      a_i: after.ingested,
      a_tenant: after.tenant,
      a_ts: after.ts,
      a_id: after.id,
      a_hash: after.content_hash,
      max,
    },
  );
  const out: string[] = [];
  let bytes = 0;
  let last: Cursor | null = null;
  for (const r of rows) {
    const { i_ms, t_ms, ...row } = r;
    const line = JSON.stringify(row);
    if (out.length > 0 && bytes + line.length > limits.page_max_bytes) break;
    out.push(line);
    bytes += line.length;
    last = {
      ingested: Number(i_ms),
      tenant: String(row.tenant),
      ts: Number(t_ms),
      id: String(row.id),
      content_hash: String(row.content_hash),
    };
  }
  const more = out.length < rows.length || rows.length === max;
  return { rows: out, next: more ? last : null };
}

/**
 * The ingestion times (epoch ms) of the rows of one shard this replica holds now: the range a shard copy
 * pages through. Null when it holds none.
 */
export async function shardExtent(
  store: EventStore,
  shard: ShardFilter,
): Promise<{ fromIngested: number | null; toIngested: number | null }> {
  const [row] = await store.query<{ n: string; lo: string; hi: string }>(
    `SELECT toString(count()) AS n, toString(toUnixTimestamp64Milli(min(ingested))) AS lo,
            toString(toUnixTimestamp64Milli(max(ingested))) AS hi
       FROM ${EVENTS_TABLE} WHERE ${shardCondition(shard)}`,
    {},
  );
  if (!row || Number(row.n) === 0) return { fromIngested: null, toIngested: null };
  return { fromIngested: Number(row.lo), toIngested: Number(row.hi) };
}
