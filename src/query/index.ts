/**
 * The Vigil query language: a Lucene/KQL-style filter, then SPL-style pipes, compiled to parameterized
 * ClickHouse SQL over the events table. Syntax and semantics: README.md in this folder.
 */
export type {
  Aggregate,
  AggregateFn,
  Bound,
  FilterNode,
  Pipe,
  QueryAst,
  SortKey,
  Span,
  Value,
  ValuePart,
} from './ast.ts';
export type { CompiledQuery, CompileMode, CompileOptions, QueryParams } from './compiler.ts';
export {
  compileAst,
  compileAstFor,
  compileQuery,
  DEFAULT_MAX_LIMIT,
  EVENT_COLUMNS,
  MAX_SHARD_GROUPS,
  SHARD_ROWS_PARAM,
} from './compiler.ts';
export type { DistributedPlan, ShardQuery } from './distribute.ts';
export { gatheredRows, planDistributed } from './distribute.ts';
export { QuerySyntaxError } from './errors.ts';
export { MAX_QUERY_LENGTH, MAX_TERMS, PIPE_COMMANDS, parseQuery } from './parser.ts';
