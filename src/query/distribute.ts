import type { Pipe, QueryAst } from './ast.ts';
import {
  type CompiledQuery,
  type CompileOptions,
  compileAstFor,
  DEFAULT_MAX_LIMIT,
  MAX_SHARD_GROUPS,
  SENTINEL_COLUMN,
} from './compiler.ts';

/**
 * A search planned over shards, as ClickHouse's Distributed engine plans one: each shard runs `shard` on its
 * own events, the coordinating node gathers the rows and runs `merge` over them in its own engine (the rows
 * in a file whose path is bound as SHARD_ROWS_PARAM, see gatheredRows), and the merge's answer is the
 * single node's answer.
 *
 * - `stats`/`timechart` (no `head` before them): shards return one row per group with the aggregates as
 *   partial states (`countState`, `uniqExactArrayState`, `avgArrayState`, ...; base64 text), the merge groups
 *   them again with the `-Merge` combinators, then sorts, filters, limits and renames as a single node does.
 * - Events, and `head N | ...` before stats: shards return their first rows in the query's own order, up to
 *   the first `head` (or the page size) pushed down, which hold every row of the global first N; the merge
 *   runs the whole query again over the gathered rows (filters hold alike, so re-running them is harmless).
 */
export interface DistributedPlan {
  /**
   * What each shard runs; `sole`: the replica's table holds rows of this shard only, so no shard filter
   * (see CompileMode.shard).
   */
  shard: (index: number, count: number, sole?: boolean) => ShardQuery;
  /** What the coordinator runs over the gathered rows. */
  merge: CompiledQuery;
  /**
   * Where an events answer's `total` comes from: the sum of the shards' counts (`shards`), or the merge's
   * countSql over the gathered rows (`merge`, when a head already cut the events). None for a table.
   */
  total: 'shards' | 'merge' | 'none';
  /** The most rows a shard may return; a shard that returns more fails the search (too many groups). */
  maxShardRows: number;
}

/** One shard's part: its rows are gathered as they are; `countSql` (events) counts its matching events. */
export interface ShardQuery {
  sql: string;
  countSql?: string;
  params: Record<string, string | number | string[]>;
  /** The LIMIT of `sql` (events). */
  limit?: number;
}

/** Plans a parsed query over shards; throws QuerySyntaxError for a bad query, as compileAst does. */
export function planDistributed(ast: QueryAst, opts: CompileOptions): DistributedPlan {
  const aggregateAt = ast.pipes.findIndex((p) => p.type === 'stats' || p.type === 'timechart');
  const headAt = ast.pipes.findIndex((p) => p.type === 'head');
  const maxLimit = opts.maxLimit ?? DEFAULT_MAX_LIMIT;
  const gathered = { source: 'gathered', aggregate: 'final' } as const;

  if (aggregateAt >= 0 && (headAt < 0 || headAt > aggregateAt)) {
    const merge = compileAstFor(ast, opts, { source: 'table', aggregate: 'merge' });
    return {
      shard: (index, count, sole) =>
        strip(compileAstFor(ast, opts, { source: 'table', aggregate: 'state', shard: { index, count, sole } })),
      merge,
      total: 'none',
      maxShardRows: MAX_SHARD_GROUPS,
    };
  }

  // Events up to the first head (or all of an events query): each shard's first rows in the same order.
  const prefix: Pipe[] = headAt >= 0 ? ast.pipes.slice(0, headAt + 1) : ast.pipes;
  const shardAst: QueryAst = { filter: ast.filter, pipes: prefix };
  // Under a head the shard keeps the head's rows (up to maxLimit), not the page size.
  const shardOpts: CompileOptions = headAt >= 0 ? { ...opts, limit: maxLimit } : opts;
  const merge = compileAstFor(ast, opts, gathered);
  // The count ignores a final head; a `where` or `sort` after a head counts within the head's events, which
  // only the gathered rows hold. Otherwise every `where` is in the prefix, and the shards' counts add up.
  const countsHead = headAt >= 0 && ast.pipes.slice(headAt + 1).some((p) => p.type === 'where' || p.type === 'sort');
  const total = merge.kind === 'table' ? 'none' : countsHead ? 'merge' : 'shards';
  return {
    shard: (index, count, sole) =>
      strip(
        compileAstFor(shardAst, shardOpts, { source: 'table', aggregate: 'final', shard: { index, count, sole } }),
        total === 'shards',
      ),
    merge,
    total,
    maxShardRows: maxLimit,
  };
}

function strip(compiled: CompiledQuery, withCount = false): ShardQuery {
  if (compiled.kind === 'events' && withCount) {
    return { sql: compiled.sql, countSql: compiled.countSql, params: compiled.params, limit: compiled.limit };
  }
  return { sql: compiled.sql, params: compiled.params };
}

/**
 * The gathered rows of every shard as the text of the file the merge reads (SHARD_ROWS_PARAM): JSONEachRow,
 * ending with the sentinel row, which the merging query leaves out.
 */
export function gatheredRows(shards: readonly (readonly Record<string, unknown>[])[]): string {
  const lines: string[] = [];
  for (const rows of shards) for (const row of rows) lines.push(JSON.stringify(row));
  lines.push(JSON.stringify({ [SENTINEL_COLUMN]: 1 }));
  return lines.join('\n');
}
