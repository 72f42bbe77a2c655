import { VigilError } from '../lib/errors.ts';
import {
  type CompileOptions,
  type DistributedPlan,
  gatheredRows,
  parseQuery,
  planDistributed,
  SHARD_ROWS_PARAM,
} from '../query/index.ts';
import type { EventRow, SearchScope } from '../store/index.ts';
import { countOf, eventsAnswer, pageAndTotal, type SearchAnswer, tableAnswer } from './answer.ts';

/** What one shard answered: its rows as the engine gave them, and its count of matching events (events). */
export interface ShardResult {
  rows: Record<string, unknown>[];
  count?: number;
}

/** A search's options as the coordinator fixes them for every shard (`now` included, for `now-15m`). */
export interface ShardSearchOptions extends CompileOptions {
  now: number;
}

/** A shard returned more rows than the plan allows (a partial aggregate with too many groups). */
export class TooManyGroupsError extends VigilError {
  constructor(limit: number) {
    super(
      'too_many_groups',
      `the search has more than ${limit} groups on one shard; narrow it or group by fewer values`,
      { status: 400, details: { limit } },
    );
    this.name = 'TooManyGroupsError';
  }
}

/** Plans query text over shards (parse errors are the client's 400). */
export function planSearch(q: string, opts: ShardSearchOptions): DistributedPlan {
  return planDistributed(parseQuery(q), opts);
}

/**
 * Runs one shard's part of a planned search on this node's store (the shard side of a fan-out); `sole`:
 * the store holds rows of this shard only (no shard filter).
 */
export async function runShard(
  scope: SearchScope,
  plan: DistributedPlan,
  shard: number,
  shards: number,
  sole = false,
): Promise<ShardResult> {
  const part = plan.shard(shard, shards, sole);
  const { countSql, limit } = part;
  if (countSql === undefined || limit === undefined) {
    const rows = await scope.query<Record<string, unknown>>(part.sql, part.params);
    if (rows.length > plan.maxShardRows) throw new TooManyGroupsError(plan.maxShardRows);
    return { rows };
  }
  const { rows, total } = await pageAndTotal<Record<string, unknown>>((sql, params) => scope.query(sql, params), {
    ...part,
    countSql,
    limit,
  });
  if (rows.length > plan.maxShardRows) throw new TooManyGroupsError(plan.maxShardRows);
  return { rows, count: total };
}

/**
 * Merges the shards' results of a planned search in this node's engine (`scope`) into the answer a single
 * node holding every event would give.
 */
export async function mergeShards(
  scope: SearchScope,
  plan: DistributedPlan,
  results: readonly ShardResult[],
  startedMs: number,
): Promise<SearchAnswer> {
  for (const r of results) if (r.rows.length > plan.maxShardRows) throw new TooManyGroupsError(plan.maxShardRows);
  const gathered = { fileParam: SHARD_ROWS_PARAM, text: gatheredRows(results.map((r) => r.rows)) };
  const merge = plan.merge;
  if (merge.kind === 'table') {
    return tableAnswer(
      merge,
      await scope.queryOverRows<Record<string, unknown>>(merge.sql, merge.params, gathered),
      startedMs,
    );
  }
  const [rows, counted] = await Promise.all([
    scope.queryOverRows<EventRow>(merge.sql, merge.params, gathered),
    plan.total === 'merge'
      ? scope.queryOverRows<Record<string, unknown>>(merge.countSql, merge.params, gathered)
      : undefined,
  ]);
  const total = counted !== undefined ? countOf(counted) : results.reduce((n, r) => n + (r.count ?? 0), 0);
  return eventsAnswer(merge, rows, total, startedMs);
}
