import { compileQuery } from '../query/index.ts';
import type { EventRow, SearchScope } from '../store/index.ts';
import { countOf, eventsAnswer, type SearchAnswer, tableAnswer } from './answer.ts';

/**
 * Runs a query for a set of tenants within one admitted search (`EventStore.search`) on this node's own
 * replica; shared by the HTTP route, the shard endpoint's tests and other components (hunting).
 */
export async function runSearch(
  store: SearchScope,
  q: string,
  opts: { from: number; to: number; limit: number; tenants: string[] },
): Promise<SearchAnswer> {
  const started = performance.now();
  const compiled = compileQuery(q, opts);
  if (compiled.kind === 'events') {
    const [rows, counted] = await Promise.all([
      store.query<EventRow>(compiled.sql, compiled.params),
      store.query<Record<string, unknown>>(compiled.countSql, compiled.params),
    ]);
    return eventsAnswer(compiled, rows, countOf(counted), started);
  }
  const rows = await store.query<Record<string, unknown>>(compiled.sql, compiled.params);
  return tableAnswer(compiled, rows, started);
}
