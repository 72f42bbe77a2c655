/**
 * The syntax tree of a Vigil query: a filter, then pipes. Every node carries `position`, the 1-based column
 * of its first character, so the compiler can point at the culprit too.
 */

/** One piece of a value: literal text, or an unescaped `*` (any run) or `?` (any one character). */
export type ValuePart = { text: string } | { wildcard: '*' | '?' };

/** A value as written: `text` is unescaped; `parts` is set only when it has unescaped wildcards. */
export interface Value {
  text: string;
  quoted: boolean;
  parts?: ValuePart[];
}

/** One end of a range; `value` undefined is an open end (`*`). */
export interface Bound {
  value?: string;
  inclusive: boolean;
}

export type FilterNode =
  | { type: 'and'; children: FilterNode[]; position: number }
  | { type: 'or'; children: FilterNode[]; position: number }
  | { type: 'not'; child: FilterNode; position: number }
  /** Matches every event: a lone `*` or `*:*`. */
  | { type: 'all'; position: number }
  /** A bare word or "quoted phrase": full-text search of `event.original`. */
  | { type: 'text'; value: Value; position: number }
  /** `field:value`, `field="value"`, `field:wild*`. */
  | { type: 'match'; field: string; value: Value; position: number }
  /** `field:*`. */
  | { type: 'exists'; field: string; position: number }
  /** `field:[a TO b]`, `field:{a TO b}`, `field>=a`, `field < b`. */
  | { type: 'range'; field: string; lower?: Bound; upper?: Bound; position: number }
  /** `field:10.0.0.0/8`, `field:"2001:db8::/32"`. */
  | { type: 'cidr'; field: string; cidr: string; position: number };

export type AggregateFn = 'count' | 'dc' | 'sum' | 'avg' | 'min' | 'max' | 'values';

/** One aggregation of `stats`/`timechart`; `name` is its output column (the `as` name or e.g. `dc(user)`). */
export interface Aggregate {
  fn: AggregateFn;
  field?: string;
  name: string;
  position: number;
}

export interface SortKey {
  field: string;
  descending: boolean;
  position: number;
}

/** A timechart bucket width. */
export interface Span {
  count: number;
  unit: 's' | 'm' | 'h' | 'd';
  seconds: number;
}

export type Pipe =
  | { type: 'stats'; aggregates: Aggregate[]; by: string[]; byPositions: number[]; position: number }
  | {
      type: 'timechart';
      span?: Span;
      aggregates: Aggregate[];
      by: string[];
      byPositions: number[];
      position: number;
    }
  | { type: 'where'; filter: FilterNode; position: number }
  | { type: 'sort'; keys: SortKey[]; position: number }
  | { type: 'head'; count: number; position: number }
  | { type: 'fields'; fields: string[]; fieldPositions: number[]; position: number };

/** A parsed query; `filter` is null when the query has no filter (`| stats count`, or an empty query). */
export interface QueryAst {
  filter: FilterNode | null;
  pipes: Pipe[];
}
