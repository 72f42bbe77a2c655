import { InputError } from '../lib/errors.ts';
import { OMITTED_MARK_SQL, rawPath } from '../store/original-fields.ts';
import { COLUMN_FIELDS, EVENTS_TABLE, FULL_TEXT_COLUMN, PROMOTED_FIELDS, STORED_COLUMNS } from '../store/schema.ts';
import type { Aggregate, Bound, FilterNode, Pipe, QueryAst, SortKey, Value } from './ast.ts';
import { QuerySyntaxError } from './errors.ts';
import { isFieldName, parseQuery } from './parser.ts';
import { fullTextTokens, isNumberText, likePattern, MAX_QUERY_NUMBER, parseNumber, parseTime } from './values.ts';

/** The columns of an `events` result, in order: the stored columns of the events table. */
export const EVENT_COLUMNS = STORED_COLUMNS;

const EVENT_SELECT = EVENT_COLUMNS.join(', ');

/** An events SELECT that another one wraps also passes on the promoted columns, which filters outside read. */
const WRAPPED_EVENT_SELECT = [...EVENT_COLUMNS, ...Object.values(PROMOTED_FIELDS)].join(', ');

/** The events table as compiled queries read it. */
const TABLE_SOURCE = `${EVENTS_TABLE} FINAL`;
const FROM_CONDITION = 'ts >= fromUnixTimestamp64Milli({from:Int64})';
const TO_CONDITION = 'ts < fromUnixTimestamp64Milli({to:Int64})';

const DAY_MS = 86_400_000;
/**
 * The last day a `Date` holds (2149-06-06). Later times are never stored (MAX_EVENT_TIME_MS): `toDate` wraps
 * them onto earlier days here, whose whole-day branch would then count them.
 */
const LAST_DATE_DAY = 65_535;

/**
 * Settings of every compiled query. With FINAL the engine by default widens what a skip index selects to
 * every granule that could hold another version of a selected row (exact mode), which here meant reading
 * all of `raw` for a token search: 3.8 s instead of 0.8 s over 10M events. The copies of one row (same
 * tenant, ts, id and content_hash) are the same received text, so an index on `raw` or `host` decides alike
 * for all of them. (Before schema 3 the key had no content_hash: the same id with other text replaced the
 * row, and a word of the first text still found the first version, which a search by id no longer showed.)
 */
const QUERY_SETTINGS = '\nSETTINGS use_skip_indexes_if_final_exact_mode = 0';

/** The cap on `limit` (and on `head N`) when the caller gives no `maxLimit`. */
export const DEFAULT_MAX_LIMIT = 10_000;

/** The most distinct values `values(f)` keeps per row. */
export const MAX_VALUES = 1_000;

/** Timechart buckets aimed at when the query names no span (the span is the first nice width that fits). */
const TARGET_BUCKETS = 100;
const NICE_SPANS_S = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 10_800, 43_200, 86_400, 604_800];
const DEFAULT_SPAN_S = 3600;

export interface CompileOptions {
  /** Start of the time range (inclusive), epoch ms; none means unbounded. */
  from?: number;
  /** End of the time range (exclusive), epoch ms; none means unbounded. */
  to?: number;
  /** The most rows to return; capped by `maxLimit` and by `head N`. */
  limit: number;
  /** The tenants the caller may read; an empty list matches nothing. */
  tenants: string[];
  /** Default DEFAULT_MAX_LIMIT (10,000). */
  maxLimit?: number;
  /** The instant `now` in relative times (`now-15m`) means, epoch ms; default Date.now(). */
  now?: number;
}

/** Bound parameter values, by name, for `queryBind`: strings, numbers and arrays of strings. */
export type QueryParams = Record<string, string | number | string[]>;

/**
 * A compiled query. `events`: whole events (EVENT_COLUMNS), newest first unless sorted, and `countSql`
 * counting every event the filter matches; `fields` is the projection a `fields` pipe asked for (the SQL
 * still returns whole events). `table`: rows keyed by `columns` (from `stats` or `timechart`).
 */
export type CompiledQuery =
  | {
      kind: 'events';
      sql: string;
      countSql: string;
      params: QueryParams;
      /** The page's LIMIT: a page shorter than it holds every matching event. */
      limit: number;
      fields?: string[];
    }
  | { kind: 'table'; sql: string; params: QueryParams; columns: string[] };

/**
 * Compiles query text to parameterized ClickHouse SQL over the events table (`FROM vigil.events FINAL`),
 * always restricted to `opts.tenants` and the time range. Throws QuerySyntaxError for a bad query.
 */
export function compileQuery(text: string, opts: CompileOptions): CompiledQuery {
  return compileAst(parseQuery(text), opts);
}

/** Compiles an already parsed query; see compileQuery. */
export function compileAst(ast: QueryAst, opts: CompileOptions): CompiledQuery {
  return new Compiler(opts).compile(ast);
}

/**
 * How a query is compiled for a search spread over shards (see distribute.ts): `source` is where events
 * come from (the events table, or the shards' gathered event rows bound as SHARD_ROWS_PARAM); `aggregate`
 * says whether `stats`/`timechart` give final values, partial states (a shard's part, as base64 text), or
 * merge gathered states. `shard` restricts the events table to one shard of `count`, unless `sole` says the
 * table holds rows of that shard only (ShardReplicas.holdsOnly), when the restriction would select every row.
 */
export interface CompileMode {
  source: 'table' | 'gathered';
  aggregate: 'final' | 'state' | 'merge';
  shard?: { index: number; count: number; sole?: boolean };
}

/**
 * The parameter that carries, to a merging query, the path of a file of the shards' gathered rows
 * (JSONEachRow): see SearchScope.queryOverRows for why a file and not the text itself.
 */
export const SHARD_ROWS_PARAM = 'shard_rows';

/** Most groups one shard may return for a partial aggregate; past it the search fails, never answers less. */
export const MAX_SHARD_GROUPS = 100_000;

/**
 * A column every gathered row lacks (so 0) and one extra row carries (1): the gathered rows are never empty
 * (the engine could not read an empty JSONEachRow text when they were bound as one), so they always end
 * with this row, which the merging query leaves out.
 */
export const SENTINEL_COLUMN = '$sentinel';

/**
 * A partial state as text that JSON carries: its bytes in base64 (a third over the bytes; hex doubled them:
 * a `dc()` over 50 groups of 8,000 values each was 21 MB of hex and base64 states together).
 */
function stateText(state: string): string {
  return `base64Encode(CAST(${state}, 'String'))`;
}

/** Compiles for one part of a distributed search; see CompileMode. */
export function compileAstFor(ast: QueryAst, opts: CompileOptions, mode: CompileMode): CompiledQuery {
  return new Compiler(opts, mode).compile(ast);
}

/** A SQL string literal of compiler-made text (structures, type names): never text from a client. */
function literal(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** The engine types of the stored columns a search reads, as in the events table (schema.ts). */
const EVENT_COLUMN_TYPES: Record<(typeof EVENT_COLUMNS)[number], string> = {
  ts: "DateTime64(3, 'UTC')",
  ingested: "DateTime64(3, 'UTC')",
  id: 'String',
  tenant: 'LowCardinality(String)',
  source: 'LowCardinality(String)',
  layout: 'LowCardinality(String)',
  host: 'LowCardinality(String)',
  message: 'String',
  raw: 'String',
  parse_error: 'String',
  fields: 'Map(LowCardinality(String), String)',
};

/** A table expression reading gathered rows of `structure` (name type, ...), the sentinel row left out. */
function gathered(structure: string[], columns: string): string {
  const all = [...structure, `\`${SENTINEL_COLUMN}\` UInt8`].join(', ');
  return (
    `(SELECT ${columns} FROM file({${SHARD_ROWS_PARAM}:String}, JSONEachRow, ${literal(all)}) ` +
    `WHERE \`${SENTINEL_COLUMN}\` = 0)`
  );
}

/** Gathered events with their promoted columns computed as the table computes them at insert. */
function gatheredEvents(): string {
  const promoted = Object.entries(PROMOTED_FIELDS).map(
    ([field, column]) =>
      `CAST(if(mapContains(fields, ${literal(field)}), fields[${literal(field)}], NULL), 'LowCardinality(Nullable(String))') AS ${column}`,
  );
  return gathered(
    EVENT_COLUMNS.map((c) => `${c} ${EVENT_COLUMN_TYPES[c]}`),
    [...EVENT_COLUMNS, ...promoted].join(', '),
  );
}

/**
 * What a field name resolves to. `string` is a non-null String where '' means missing; `json` is a stored
 * field (a key of the `fields` map, or its promoted column): `has` is true when the event has the field,
 * `str` its String ('' when missing), whose text may be a JSON array; `number` may be NULL; `array` is
 * Array(String).
 */
type Operand =
  | { kind: 'time'; sql: string }
  | { kind: 'string'; sql: string }
  | { kind: 'json'; has: string; str: string }
  | { kind: 'number'; sql: string }
  | { kind: 'array'; sql: string };

/** Resolves a field name at a position of the query to an operand, or throws. */
type Resolver = (name: string, position: number) => Operand;

/** A column of a table result: its name for the client, and its internal alias as an operand. */
interface OutputColumn {
  name: string;
  operand: Operand;
}

/** A stats/timechart SELECT; `partial` is the grouping SELECT and `stateColumns` its columns in state mode. */
interface AggregateSelect {
  select: Select;
  columns: OutputColumn[];
  partial: Select;
  stateColumns: string[];
}

/** One SELECT being built. */
class Select {
  columns = '*';
  where: string[] = [];
  groupBy: string[] = [];
  orderBy: string[] = [];
  /** Rows kept by `head N`, bound to a placeholder in `limit` when the SELECT is wrapped or finished. */
  head?: number;
  limit?: string;
  fill?: string;

  constructor(readonly from: string) {}

  toSql(): string {
    const lines = [`SELECT ${this.columns}`, `FROM ${this.from}`];
    if (this.where.length > 0) lines.push(`WHERE ${this.where.join('\n  AND ')}`);
    if (this.groupBy.length > 0) lines.push(`GROUP BY ${this.groupBy.join(', ')}`);
    if (this.orderBy.length > 0) lines.push(`ORDER BY ${this.orderBy.join(', ')}${this.fill ?? ''}`);
    if (this.limit !== undefined) lines.push(`LIMIT ${this.limit}`);
    return lines.join('\n');
  }

  /** A new SELECT over this one (whose LIMIT must be bound already), for a pipe that runs after it. */
  wrap(): Select {
    return new Select(`(\n${indent(this.toSql())}\n)`);
  }
}

class Compiler {
  private readonly params: QueryParams = {};
  private paramCount = 0;
  private readonly paths = new Map<string, string>();
  private readonly limit: number;
  private readonly maxLimit: number;
  private readonly now: number;
  /** The leading conditions of every scan of the table: tenants, shard and time range (see scanOf). */
  private scope: string[] = [];

  constructor(
    private readonly opts: CompileOptions,
    private readonly mode: CompileMode = { source: 'table', aggregate: 'final' },
  ) {
    const maxLimit = opts.maxLimit ?? DEFAULT_MAX_LIMIT;
    if (!Number.isFinite(opts.limit) || !Number.isFinite(maxLimit)) {
      throw new InputError('query_options', 'limit and maxLimit must be numbers', { limit: opts.limit, maxLimit });
    }
    for (const [key, v] of [
      ['from', opts.from],
      ['to', opts.to],
    ] as const) {
      if (v !== undefined && !Number.isFinite(v)) {
        throw new InputError('query_options', `${key} must be epoch milliseconds`, { [key]: v });
      }
      if (v !== undefined && Math.abs(v) > MAX_QUERY_NUMBER) {
        throw new InputError('query_options', `${key} ${v} is out of range (epoch milliseconds)`, { [key]: v });
      }
    }
    if (!Array.isArray(opts.tenants) || opts.tenants.some((t) => typeof t !== 'string')) {
      throw new InputError('query_options', 'tenants must be a list of strings');
    }
    this.maxLimit = Math.max(1, Math.trunc(maxLimit));
    this.limit = Math.max(1, Math.min(Math.trunc(opts.limit), this.maxLimit));
    this.now = opts.now ?? Date.now();
  }

  compile(ast: QueryAst): CompiledQuery {
    let events = new Select(this.mode.source === 'table' ? TABLE_SOURCE : gatheredEvents());
    events.columns = EVENT_SELECT;
    this.params.tenants = [...this.opts.tenants];
    events.where.push('tenant IN {tenants:Array(String)}');
    const shard = this.mode.shard;
    if (shard !== undefined) {
      if (
        !Number.isInteger(shard.index) ||
        !Number.isInteger(shard.count) ||
        shard.index < 0 ||
        shard.index >= shard.count
      ) {
        throw new InputError('query_options', `shard ${shard.index} of ${shard.count} is not a shard`);
      }
      // The shard of an event is murmurHash3_32(id) % count (src/cluster/shards): a node holding several
      // shards answers for the one asked only.
      if (shard.count > 1 && shard.sole !== true)
        events.where.push(
          `murmurHash3_32(id) % ${this.param(shard.count, 'UInt32')} = ${this.param(shard.index, 'UInt32')}`,
        );
    }
    if (this.opts.from !== undefined) {
      this.params.from = Math.trunc(this.opts.from);
      events.where.push(FROM_CONDITION);
    }
    if (this.opts.to !== undefined) {
      this.params.to = Math.trunc(this.opts.to);
      events.where.push(TO_CONDITION);
    }
    this.scope = [...events.where];
    const eventField: Resolver = (name, position) => this.eventField(name, position);
    if (ast.filter !== null && ast.filter.type !== 'all') events.where.push(this.filter(ast.filter, eventField, true));

    let projection: string[] | undefined;
    let table: AggregateSelect | undefined;
    for (const pipe of ast.pipes) {
      if (table !== undefined) {
        // A shard's partial states: what follows stats runs on the merging node.
        if (this.mode.aggregate !== 'state') this.tablePipe(pipe, table);
        continue;
      }
      switch (pipe.type) {
        case 'where':
          if (events.head !== undefined) events = this.wrapEvents(events);
          events.where.push(this.filter(pipe.filter, eventField, true));
          break;
        case 'sort':
          if (events.head !== undefined) events = this.wrapEvents(events);
          events.orderBy = [...pipe.keys.flatMap((k) => this.eventSortKey(k)), 'ts DESC'];
          break;
        case 'head':
          this.applyHead(events, pipe.count);
          break;
        case 'fields':
          pipe.fields.forEach((f, i) => {
            this.eventField(f, pipe.fieldPositions[i]);
          });
          projection = pipe.fields;
          break;
        case 'stats':
        case 'timechart':
          table = this.aggregate(pipe, events);
          break;
      }
    }

    if (table !== undefined && this.mode.aggregate === 'state') {
      // A shard's part: every group with its states; the pipes after stats run where the parts are merged.
      const { partial, stateColumns } = table;
      partial.limit = this.param(MAX_SHARD_GROUPS + 1, 'UInt32');
      return { kind: 'table', sql: partial.toSql() + QUERY_SETTINGS, params: this.params, columns: stateColumns };
    }
    if (table !== undefined) {
      const { select, columns } = table;
      select.columns = columns.map((c) => `${sqlOf(c.operand)} AS ${quote(c.name)}`).join(', ');
      this.finishLimit(select);
      return {
        kind: 'table',
        sql: select.toSql() + QUERY_SETTINGS,
        params: this.params,
        columns: columns.map((c) => c.name),
      };
    }
    if (events.orderBy.length === 0) events.orderBy = ['ts DESC'];
    const count = this.scanOf(events);
    count.columns = 'count() AS count';
    this.finishLimit(events);
    const compiled: CompiledQuery = {
      kind: 'events',
      sql: events.toSql() + QUERY_SETTINGS,
      countSql: count.toSql() + QUERY_SETTINGS,
      params: this.params,
      limit: Number(this.params.limit),
    };
    if (projection !== undefined) compiled.fields = projection;
    return compiled;
  }

  // ---- pipes ----

  private wrapEvents(events: Select): Select {
    const outer = this.wrap(events);
    outer.columns = EVENT_SELECT;
    return outer;
  }

  /**
   * Binds the `head` of a SELECT (events newest first unless sorted) and selects from it. An inner head is
   * capped by maxLimit, not by the page size: `head 500 | sort x` sorts 500 events.
   */
  private wrap(select: Select): Select {
    if (select.head !== undefined) select.limit = this.param(Math.min(select.head, this.maxLimit), 'UInt32');
    if (select.head !== undefined && select.orderBy.length === 0 && select.groupBy.length === 0) {
      select.orderBy = ['ts DESC'];
    }
    if (select.columns === EVENT_SELECT) select.columns = WRAPPED_EVENT_SELECT;
    return select.wrap();
  }

  /**
   * A new SELECT over what `events` selects, for a count or an aggregate (not for events themselves). Days
   * wholly inside the time range are read without the time condition: the engine otherwise reads `ts` for
   * every row of them (80 MB over 10M events) only to find each inside. They are the partitions (one a UTC
   * day, `toDate(ts)`) between two `_partition_id`s, which select parts without reading a row; the days at
   * the range's ends keep the condition, in a second branch of a UNION ALL. Copies of a row have the same
   * `ts`, so FINAL still sees them together. Measured over 10M events (30 days, best of 7 interleaved
   * passes): `stats count() by Channel` 204 -> 181 CPU-ms, a token's count 51 -> 41. Rows are not split:
   * newest first with a limit, the engine reads whole events for only the rows it keeps from one scan, and
   * over a UNION it read them all (10 times slower).
   */
  private scanOf(events: Select): Select {
    const plain = (): Select => {
      const select = new Select(events.from);
      select.where = [...events.where];
      return select;
    };
    const days = this.wholeDays();
    const scope = this.scope;
    // Whole days imply both ends of the range, so the scope holds both time conditions.
    if (days === undefined || events.from !== TABLE_SOURCE || scope.some((c, i) => events.where[i] !== c)) {
      return plain();
    }
    this.params.day_first = days.first;
    this.params.day_last = days.last;
    const owned = scope.filter((c) => c !== FROM_CONDITION && c !== TO_CONDITION);
    const branch = (where: string[]) => {
      const select = new Select(TABLE_SOURCE);
      select.columns = WRAPPED_EVENT_SELECT;
      select.where = where;
      return indent(select.toSql());
    };
    const whole = branch([...owned, '_partition_id >= {day_first:String}', '_partition_id <= {day_last:String}']);
    const ends = branch([...scope, '(_partition_id < {day_first:String} OR _partition_id > {day_last:String})']);
    const select = new Select(`(\n${whole}\n  UNION ALL\n${ends}\n)`);
    select.where = events.where.slice(scope.length);
    return select;
  }

  /** The partition ids (YYYYMMDD) of the first and last UTC day wholly inside [from, to), if there is one. */
  private wholeDays(): { first: string; last: string } | undefined {
    const { from, to } = this.opts;
    if (from === undefined || to === undefined) return undefined;
    const first = Math.ceil(Math.trunc(from) / DAY_MS);
    const last = Math.floor(Math.trunc(to) / DAY_MS) - 1;
    // Day 0 (1970-01-01) and the last day are left to the time condition, as edges, whatever is stored there.
    if (first > last || first < 1 || last >= LAST_DATE_DAY) return undefined;
    const id = (day: number) => new Date(day * DAY_MS).toISOString().slice(0, 10).replaceAll('-', '');
    return { first: id(first), last: id(last) };
  }

  private applyHead(select: Select, count: number): void {
    select.head = Math.min(count, select.head ?? count);
  }

  private finishLimit(select: Select): void {
    this.params.limit = Math.min(this.limit, select.head ?? this.limit);
    select.limit = '{limit:UInt32}';
  }

  private aggregate(pipe: Extract<Pipe, { type: 'stats' | 'timechart' }>, events: Select): AggregateSelect {
    const partial = this.mode.aggregate;
    let agg: Select;
    if (partial !== 'final' && events.head !== undefined) {
      // distribute.ts runs `head N | stats` over gathered events, never as states.
      throw new Error('internal: partial aggregates of a head');
    }
    if (partial === 'merge') {
      agg = new Select(gathered(this.stateStructure(pipe), '*'));
    } else if (events.head !== undefined) {
      // `head N | stats ...` aggregates the first N events only.
      agg = this.wrap(events);
    } else {
      agg = this.scanOf(events);
    }
    const columns: OutputColumn[] = [];
    const selectList: string[] = [];
    const keys: string[] = [];
    const add = (name: string, position: number, sql: string, operand: Operand) => {
      if (columns.some((c) => c.name === name)) throw new QuerySyntaxError(`duplicate column name '${name}'`, position);
      columns.push({ name, operand });
      selectList.push(`${sql} AS ${sqlOf(operand)}`);
    };
    const stateColumns: string[] = [];
    const byFields = pipe.by.map((name, i) => this.eventField(name, pipe.byPositions[i]));
    // A stored field may be multi-valued, so its groups come from arrayJoin over its values. Made per event,
    // those arrays cost more than the rest of the query (10M events: 0.8 s of a `stats count() by Channel`):
    // the events are grouped by the stored text first, with aggregate states, and only those few groups are
    // expanded and merged.
    const expand = partial !== 'merge' && byFields.some((f) => f.kind !== 'time' && f.kind !== 'string');
    const inner: string[] = [];
    const innerKeys: string[] = [];

    const spanSeconds = pipe.type === 'timechart' ? (pipe.span?.seconds ?? this.defaultSpan()) : 0;
    const span = pipe.type === 'timechart' ? this.param(spanSeconds, 'UInt32') : '';
    if (pipe.type === 'timechart') {
      const bucket = `toDateTime64(toStartOfInterval(ts, toIntervalSecond(${span})), 3, 'UTC')`;
      if (expand) {
        inner.push(`${bucket} AS \`$rt\``);
        innerKeys.push('`$rt`');
      }
      add('_time', pipe.position, partial === 'merge' ? '`$t`' : expand ? '`$rt`' : bucket, {
        kind: 'time',
        sql: '`$t`',
      });
      keys.push('`$t`');
      stateColumns.push('$t');
    }
    pipe.by.forEach((name, i) => {
      const position = pipe.byPositions[i];
      const field = byFields[i];
      const alias = `\`$g${i}\``;
      stateColumns.push(`$g${i}`);
      if (partial === 'merge') {
        // The shards grouped already: the key is final text (or time).
        add(
          name,
          position,
          alias,
          field.kind === 'time' ? { kind: 'time', sql: alias } : { kind: 'string', sql: alias },
        );
        keys.push(alias);
        return;
      }
      // Splunk drops events without the by-field; an empty typed column is a missing field.
      agg.where.push(this.exists(field));
      let sql = field.kind === 'time' ? field.sql : field.kind === 'string' ? `toString(${field.sql})` : sqlOf(field);
      if (expand) {
        const stored = `\`$r${i}\``;
        inner.push(`${sql} AS ${stored}`);
        innerKeys.push(stored);
        sql = stored;
      }
      if (field.kind !== 'time' && field.kind !== 'string') {
        // One row per value of a multi-valued field, as Splunk and Elasticsearch terms do.
        sql = `arrayJoin(${this.valuesOf({ kind: 'json', has: '1', str: sql })})`;
      }
      add(name, position, sql, field.kind === 'time' ? { kind: 'time', sql: alias } : { kind: 'string', sql: alias });
      keys.push(alias);
    });
    pipe.aggregates.forEach((a, i) => {
      const { fn, params, args: plainArgs, wrap, kind, argType } = this.aggregateSql(a);
      // A state crosses the network: its arguments get fixed types, so the merging node names its type.
      const args =
        partial === 'final' || argType === undefined || plainArgs === ''
          ? plainArgs
          : `CAST(${plainArgs}, ${literal(argType)})`;
      const alias = `\`$a${i}\``;
      stateColumns.push(`$a${i}`);
      let sql = `${fn}${params}(${args})`;
      if (partial === 'merge') {
        const type = literal(`AggregateFunction(${fn}${params}${argType ? `, ${argType}` : ''})`);
        sql = `${fn}Merge${params}(CAST(base64Decode(${alias}), ${type}))`;
      } else if (expand) {
        const state = `\`$s${i}\``;
        inner.push(`${fn}State${params}(${args}) AS ${state}`);
        sql = partial === 'state' ? stateText(`${fn}MergeState${params}(${state})`) : `${fn}Merge${params}(${state})`;
      } else if (partial === 'state') {
        sql = stateText(`${fn}State${params}(${args})`);
      }
      add(a.name, a.position, wrap && partial !== 'state' ? `${wrap}(${sql})` : sql, { kind, sql: alias });
    });

    if (expand) {
      agg.columns = inner.join(', ');
      agg.groupBy = innerKeys;
      agg = agg.wrap();
    }
    agg.columns = selectList.join(', ');
    agg.groupBy = keys;
    if (partial === 'state') return { select: agg, columns, partial: agg, stateColumns };
    const table = agg.wrap();
    table.orderBy = [...keys];
    const { from, to } = this.opts;
    // Empty buckets come back as zero rows so a chart has no holes; not when that would be a flood of rows.
    if (
      pipe.type === 'timechart' &&
      pipe.by.length === 0 &&
      from !== undefined &&
      to !== undefined &&
      to > from &&
      (to - from) / 1000 / spanSeconds <= this.maxLimit
    ) {
      table.fill =
        ` WITH FILL FROM toDateTime64(toStartOfInterval(fromUnixTimestamp64Milli({from:Int64}), toIntervalSecond(${span})), 3, 'UTC')` +
        ` TO fromUnixTimestamp64Milli({to:Int64}) STEP toIntervalSecond(${span})`;
    }
    return { select: table, columns, partial: agg, stateColumns };
  }

  /** The gathered partial states' columns (see aggregate): keys as final values, states as base64 text. */
  private stateStructure(pipe: Extract<Pipe, { type: 'stats' | 'timechart' }>): string[] {
    const time = "DateTime64(3, 'UTC')";
    const out: string[] = [];
    if (pipe.type === 'timechart') out.push(`\`$t\` ${time}`);
    pipe.by.forEach((name, i) => {
      const field = this.eventField(name, pipe.byPositions[i]);
      out.push(`\`$g${i}\` ${field.kind === 'time' ? time : 'String'}`);
    });
    pipe.aggregates.forEach((_, i) => {
      out.push(`\`$a${i}\` String`);
    });
    return out;
  }

  /** An aggregate as `fn params (args)`, wrapped in `wrap` when given; `fn` takes -State and -Merge. */
  private aggregateSql(a: Aggregate): {
    fn: string;
    params: string;
    args: string;
    wrap?: string;
    kind: 'number' | 'time' | 'array';
    /** The type of `args`, which names the state's type (AggregateFunction(fn, argType)). */
    argType?: string;
  } {
    const call = (
      fn: string,
      args: string,
      argType: string | undefined,
      kind: 'number' | 'time' | 'array',
      params = '',
      wrap?: string,
    ) => ({ fn, params, args, wrap, kind, argType });
    if (a.field === undefined) return call('count', '', undefined, 'number');
    const field = this.eventField(a.field, a.position);
    const values = this.valuesOf(field);
    const numbers = `arrayMap(__v -> toFloat64OrNull(__v), ${values})`;
    // Every state below is exact: uniqExact (not uniq's sketch), and sums, counts, minima and maxima.
    switch (a.fn) {
      case 'count':
        return call('countIf', this.exists(field), 'UInt8', 'number');
      case 'dc':
        return call('uniqExactArray', values, 'Array(String)', 'number');
      case 'values':
        return call('groupUniqArrayArray', values, 'Array(String)', 'array', `(${MAX_VALUES})`, 'arraySort');
      case 'min':
      case 'max':
        if (field.kind === 'time') return call(a.fn, field.sql, "DateTime64(3, 'UTC')", 'time');
        return call(`${a.fn}Array`, numbers, 'Array(Nullable(Float64))', 'number');
      case 'sum':
      case 'avg':
        return call(`${a.fn}Array`, numbers, 'Array(Nullable(Float64))', 'number');
    }
  }

  private tablePipe(pipe: Pipe, table: { select: Select; columns: OutputColumn[] }): void {
    const resolve: Resolver = (name, position) => {
      const column = table.columns.find((c) => c.name === name);
      if (column === undefined) {
        const names = table.columns.map((c) => c.name).join(', ');
        throw new QuerySyntaxError(`unknown column '${name}' after stats, expected one of ${names}`, position);
      }
      return column.operand;
    };
    const rewrap = () => {
      if (table.select.head !== undefined) table.select = this.wrap(table.select);
      table.select.fill = undefined;
    };
    switch (pipe.type) {
      case 'where':
        rewrap();
        table.select.where.push(this.filter(pipe.filter, resolve, false));
        break;
      case 'sort':
        rewrap();
        table.select.orderBy = pipe.keys.map((k) => `${sqlOf(resolve(k.field, k.position))} ${dir(k)}`);
        break;
      case 'head':
        this.applyHead(table.select, pipe.count);
        break;
      case 'fields':
        table.columns = pipe.fields.map((name, i) => {
          resolve(name, pipe.fieldPositions[i]);
          return table.columns.find((c) => c.name === name)!;
        });
        break;
      case 'stats':
      case 'timechart':
        throw new QuerySyntaxError('only one stats or timechart per query', pipe.position);
    }
  }

  private defaultSpan(): number {
    const { from, to } = this.opts;
    if (from === undefined || to === undefined || to <= from) return DEFAULT_SPAN_S;
    const seconds = (to - from) / 1000;
    return NICE_SPANS_S.find((s) => seconds / s <= TARGET_BUCKETS) ?? NICE_SPANS_S[NICE_SPANS_S.length - 1];
  }

  private eventSortKey(key: SortKey): string[] {
    const field = this.eventField(key.field, key.position);
    const d = dir(key);
    if (field.kind !== 'json') return [`${field.sql} ${d}`];
    // Missing last, numbers numerically, then text: how Splunk's sort orders mixed values.
    return [`NOT ${field.has}`, `toFloat64OrNull(${field.str}) ${d} NULLS LAST`, `${field.str} ${d}`];
  }

  // ---- fields ----

  private eventField(name: string, position: number): Operand {
    const column = COLUMN_FIELDS[name];
    if (column !== undefined) {
      return column.type === 'time' ? { kind: 'time', sql: column.column } : { kind: 'string', sql: column.column };
    }
    if (!isFieldName(name)) throw new QuerySyntaxError(`'${name}' is not a field name`, position);
    const promoted = PROMOTED_FIELDS[name];
    // A promoted column is NULL exactly when the map has no such key: reading it spares reading the map.
    if (promoted !== undefined) return { kind: 'json', has: `isNotNull(${promoted})`, str: `ifNull(${promoted}, '')` };
    let key = this.paths.get(name);
    if (key === undefined) {
      key = this.param(name, 'String');
      this.paths.set(name, key);
    }
    const path = rawPath(name);
    if (path === undefined) return { kind: 'json', has: `mapContains(fields, ${key})`, str: `fields[${key}]` };
    // A string field may be stored in `raw` only, in a row whose map carries the mark (original-fields.ts):
    // its value is then the string at its path there (any other JSON value there is no such field).
    const text = `JSONExtractRaw(${FULL_TEXT_COLUMN}, ${path.map((p) => this.param(p, 'String')).join(', ')})`;
    const inRaw = `(mapContains(fields, ${OMITTED_MARK_SQL}) AND startsWith(${text}, '"'))`;
    return {
      kind: 'json',
      has: `(mapContains(fields, ${key}) OR ${inRaw})`,
      str: `if(mapContains(fields, ${key}), fields[${key}], if(${inRaw}, JSONExtractString(${text}), ''))`,
    };
  }

  /** Every value of a field as Array(String): empty when missing, the elements of a JSON array. */
  private valuesOf(field: Operand): string {
    switch (field.kind) {
      case 'time':
      case 'number':
        return `[toString(${field.sql})]`;
      case 'string':
        return `if(${field.sql} = '', [], [toString(${field.sql})])`;
      case 'array':
        return field.sql;
      case 'json':
        return (
          `if(NOT ${field.has}, [], if(startsWith(${field.str}, '[') AND isValidJSON(${field.str}), ` +
          `JSONExtract(${field.str}, 'Array(String)'), [${field.str}]))`
        );
    }
  }

  private exists(field: Operand): string {
    switch (field.kind) {
      case 'time':
        return '1';
      case 'string':
        return `${field.sql} != ''`;
      case 'json':
        return field.has;
      case 'number':
        return `isNotNull(${field.sql})`;
      case 'array':
        return `notEmpty(${field.sql})`;
    }
  }

  // ---- filter ----

  /**
   * A filter as a SQL boolean that is never NULL (so NOT keeps events whose field is missing, as in
   * Elasticsearch). `fullText` says whether bare words may search event.original.
   */
  private filter(node: FilterNode, resolve: Resolver, fullText: boolean): string {
    switch (node.type) {
      case 'and':
      case 'or':
        return `(${node.children.map((c) => this.filter(c, resolve, fullText)).join(node.type === 'and' ? ' AND ' : ' OR ')})`;
      case 'not':
        return `NOT ${this.filter(node.child, resolve, fullText)}`;
      case 'all':
        return '1';
      case 'text':
        if (!fullText) {
          throw new QuerySyntaxError('full-text search is not available after stats; name a column', node.position);
        }
        return this.fullText(node.value);
      case 'exists':
        return `(${this.exists(resolve(node.field, node.position))})`;
      case 'match':
        return this.match(resolve(node.field, node.position), node.value, node.field, node.position);
      case 'range':
        return this.range(resolve(node.field, node.position), node.lower, node.upper, node.position);
      case 'cidr': {
        const field = resolve(node.field, node.position);
        if (field.kind === 'time' || field.kind === 'number') {
          throw new QuerySyntaxError(`'${node.field}' holds no IP addresses`, node.position);
        }
        const cidr = this.param(node.cidr, 'String');
        // isIPAddressInRange throws on a value that is not an address (even ''): feed it '::' instead,
        // which is in no IPv4 range, and require a valid address as well.
        return this.anyValue(field, (x) => {
          const isIp = `(isIPv4String(${x}) OR isIPv6String(${x}))`;
          return `(${isIp} AND isIPAddressInRange(if(${isIp}, ${x}, '::'), ${cidr}))`;
        });
      }
    }
  }

  private fullText(value: Value): string {
    const raw = FULL_TEXT_COLUMN;
    const clauses: string[] = [];
    const tokens = new Set<string>();
    if (value.parts !== undefined) {
      for (const p of value.parts) if ('text' in p) for (const t of fullTextTokens(p.text, true)) tokens.add(t);
    } else {
      for (const t of fullTextTokens(value.text)) tokens.add(t);
    }
    // hasToken on lower(raw) is answered by the text index; the second clause decides exactly.
    for (const t of tokens) clauses.push(`hasToken(lower(${raw}), ${this.param(t, 'String')})`);
    if (value.parts !== undefined) clauses.push(`${raw} ILIKE ${this.param(likePattern(value, true), 'String')}`);
    else if (!/^[A-Za-z0-9]+$/.test(value.text) || tokens.size !== 1) {
      // One ASCII word is its own token: hasToken on the lowered text already implies the substring, and
      // without the second clause a search needs no more than the index has.
      clauses.push(`positionCaseInsensitiveUTF8(${raw}, ${this.param(value.text, 'String')}) > 0`);
    }
    return `(${clauses.join(' AND ')})`;
  }

  private match(field: Operand, value: Value, name: string, position: number): string {
    if (field.kind === 'time') {
      if (value.parts !== undefined) {
        throw new QuerySyntaxError(`wildcards are not supported on time field '${name}'`, position);
      }
      const t = this.time(value.text, position);
      if (t.durationMs === 1) return `(${field.sql} = ${this.ms(t.ms)})`;
      return `(${field.sql} >= ${this.ms(t.ms)} AND ${field.sql} < ${this.ms(t.ms + t.durationMs)})`;
    }
    if (field.kind === 'number' && value.parts === undefined) {
      const n = this.number(value.text, position);
      if (n !== undefined) return `ifNull(${field.sql} = ${this.param(n, 'Float64')}, 0)`;
    }
    if (value.parts !== undefined) {
      const pattern = this.param(likePattern(value), 'String');
      return this.anyValue(field, (x) => `${x} ILIKE ${pattern}`);
    }
    const p = this.param(value.text, 'String');
    return this.anyValue(field, (x) => `lowerUTF8(${x}) = lowerUTF8(${p})`);
  }

  private range(field: Operand, lower: Bound | undefined, upper: Bound | undefined, position: number): string {
    if (field.kind === 'time') {
      const parts: string[] = [];
      // A date alone spans its day: [2024-01-01 TO 2024-01-31] includes all of the 31st.
      if (lower?.value !== undefined) {
        const t = this.time(lower.value, position);
        parts.push(`${field.sql} >= ${this.ms(lower.inclusive ? t.ms : t.ms + t.durationMs)}`);
      }
      if (upper?.value !== undefined) {
        const t = this.time(upper.value, position);
        parts.push(`${field.sql} < ${this.ms(upper.inclusive ? t.ms + t.durationMs : t.ms)}`);
      }
      return `(${parts.join(' AND ')})`;
    }
    const ends = [
      { bound: lower, op: lower?.inclusive ? '>=' : '>' },
      { bound: upper, op: upper?.inclusive ? '<=' : '<' },
    ].flatMap(({ bound, op }) => (bound?.value === undefined ? [] : [{ value: bound.value, op }]));
    const numbers = ends.map((e) => this.number(e.value, position));
    if (numbers.every((n) => n !== undefined)) {
      const ps = ends.map((e, i) => ({ op: e.op, p: this.param(numbers[i]!, 'Float64') }));
      const conds = (x: string) => ps.map((e) => `${x} ${e.op} ${e.p}`).join(' AND ');
      if (field.kind === 'number') return `ifNull(${conds(field.sql)}, 0)`;
      return this.anyValue(field, (x) => `ifNull(${conds(`toFloat64OrNull(${x})`)}, 0)`);
    }
    // Not numbers: compare as text, case-insensitively like every other string match.
    const ps = ends.map((e) => ({ op: e.op, p: this.param(e.value, 'String') }));
    return this.anyValue(field, (x) => ps.map((e) => `lowerUTF8(${x}) ${e.op} lowerUTF8(${e.p})`).join(' AND '));
  }

  /** `pred` holds for the field's value or, for a multi-valued field, for any of its values; never NULL. */
  private anyValue(field: Operand, pred: (x: string) => string): string {
    switch (field.kind) {
      case 'string':
        return `(${pred(field.sql)})`;
      case 'number':
        return `(${pred(`ifNull(toString(${field.sql}), '')`)})`;
      case 'time':
        return `(${pred(`toString(${field.sql})`)})`;
      case 'array':
        return `arrayExists(__v -> ${pred('__v')}, ${field.sql})`;
      case 'json':
        return (
          `(${field.has} AND (${pred(field.str)} OR (startsWith(${field.str}, '[') AND ` +
          `arrayExists(__v -> ${pred('__v')}, JSONExtract(${field.str}, 'Array(String)')))))`
        );
    }
  }

  private time(text: string, position: number): { ms: number; durationMs: number } {
    const t = parseTime(text, this.now);
    if (t === undefined) {
      throw new QuerySyntaxError(
        `invalid time '${text}', expected an ISO 8601 date, epoch milliseconds or now-15m`,
        position,
      );
    }
    if (Math.abs(t.ms) + t.durationMs > MAX_QUERY_NUMBER) {
      throw new QuerySyntaxError(`time '${text}' is out of range`, position);
    }
    return t;
  }

  /**
   * The number a value spells, for a numeric comparison; undefined when it is not spelled as a number (it
   * is then compared as text). A number beyond ±MAX_QUERY_NUMBER (or beyond a double, `1e400`) is refused
   * by name: the engine could not be given it exactly.
   */
  private number(text: string, position: number): number | undefined {
    if (!isNumberText(text)) return undefined;
    const n = parseNumber(text);
    if (n === undefined || Math.abs(n) > MAX_QUERY_NUMBER) {
      throw new QuerySyntaxError(
        `number '${text}' is out of range: numbers compared lie within ±${MAX_QUERY_NUMBER}`,
        position,
      );
    }
    return n;
  }

  private ms(value: number): string {
    return `fromUnixTimestamp64Milli(${this.param(value, 'Int64')})`;
  }

  private param(value: string | number, type: string): string {
    const name = `p${this.paramCount++}`;
    this.params[name] = value;
    return `{${name}:${type}}`;
  }
}

function sqlOf(operand: Operand): string {
  return operand.kind === 'json' ? operand.str : operand.sql;
}

function dir(key: SortKey): string {
  return key.descending ? 'DESC' : 'ASC';
}

/**
 * An output column name as a SQL identifier. Safe without escaping: names come from the field grammar
 * (no backtick, no backslash) or from `fn(field)`; the check guards that promise against future edits.
 */
function quote(name: string): string {
  if (!/^[A-Za-z0-9_@#.()-]+$/.test(name)) throw new Error(`unsafe column name ${JSON.stringify(name)}`);
  return `\`${name}\``;
}

function indent(sql: string): string {
  return sql.replace(/^/gm, '  ');
}
