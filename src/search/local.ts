import { compileQuery } from '../query/index.ts';
import type { EventRow, SearchScope } from '../store/index.ts';
import { eventsAnswer, pageAndTotal, type SearchAnswer, tableAnswer } from './answer.ts';

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
    const { rows, total } = await pageAndTotal<EventRow>((sql, params) => store.query(sql, params), compiled);
    return eventsAnswer(compiled, rows, total, started);
  }
  const rows = await store.query<Record<string, unknown>>(compiled.sql, compiled.params);
  return tableAnswer(compiled, rows, started);
}
