import type { CompiledQuery } from '../query/index.ts';
import { type EventRow, rowToEvent } from '../store/index.ts';

/** The answer of a search: events, or a table after stats/timechart. */
export type SearchAnswer =
  | { total: number; events: Record<string, unknown>[]; took_ms: number }
  | { columns: string[]; rows: unknown[][]; took_ms: number };

/** An events answer from the engine's rows: events as the API shows them, cut to a `fields` projection. */
export function eventsAnswer(
  compiled: Extract<CompiledQuery, { kind: 'events' }>,
  rows: EventRow[],
  total: number,
  startedMs: number,
): SearchAnswer {
  let events = rows.map(rowToEvent);
  if (compiled.fields) {
    const keep = compiled.fields;
    events = events.map((e) => Object.fromEntries(keep.filter((f) => f in e).map((f) => [f, e[f]])));
  }
  return { total, events, took_ms: Math.round(performance.now() - startedMs) };
}

/** A table answer from the engine's rows, cells in `columns` order. */
export function tableAnswer(
  compiled: Extract<CompiledQuery, { kind: 'table' }>,
  rows: Record<string, unknown>[],
  startedMs: number,
): SearchAnswer {
  return {
    columns: compiled.columns,
    rows: rows.map((r) => compiled.columns.map((c) => normalizeCell(r[c]))),
    took_ms: Math.round(performance.now() - startedMs),
  };
}

/** 64-bit counts come back as strings (precision-safe); small ones are numbers for the client. */
export function normalizeCell(v: unknown): unknown {
  if (typeof v === 'string' && /^-?\d{1,15}$/.test(v)) return Number(v);
  return v;
}

/** The count a `count() AS count` read answered (0 when it answered no row). */
export function countOf(rows: readonly Record<string, unknown>[]): number {
  return Number(Object.values(rows[0] ?? { total: 0 })[0]);
}

/**
 * The page of an events query, then its total: a page shorter than its limit holds every matching event,
 * so its length is the total and the count is not run. The engine runs a process's parameterized statements
 * one at a time, so the two never overlapped; under ingest each waits its turn for the cores, and a search of a
 * rare word (the common hunt) now pays for one.
 */
export async function pageAndTotal<T>(
  query: <R>(sql: string, params: Record<string, unknown>) => Promise<R[]>,
  q: { sql: string; countSql: string; params: Record<string, unknown>; limit: number },
): Promise<{ rows: T[]; total: number }> {
  const rows = await query<T>(q.sql, q.params);
  if (rows.length < q.limit) return { rows, total: rows.length };
  return { rows, total: countOf(await query<Record<string, unknown>>(q.countSql, q.params)) };
}
