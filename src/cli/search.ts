import { apiGet, apiTarget } from './client.ts';

export const SEARCH_USAGE = `Usage: vigil search '<query>' [--from TIME] [--to TIME] [--limit N] [--json] [--url URL] [--token T]

Runs a search on a Vigil node, like GET /api/v1/search. TIME is now, now-15m, epoch ms or ISO 8601;
--from defaults to now-24h. Prints a table (or the raw JSON answer with --json).

Examples:
  vigil search 'user.name:bob AND event.outcome:failure' --from now-1h
  vigil search 'sshd | stats count() by host.name | sort -count'
`;

/** `vigil search`: prints events or a stats table. */
export async function searchCommand(
  query: string | undefined,
  opts: { from?: string; to?: string; limit?: string; json?: boolean; url?: string; token?: string },
): Promise<number> {
  if (!query) {
    process.stderr.write(SEARCH_USAGE);
    return 2;
  }
  const params = new URLSearchParams({ q: query });
  if (opts.from) params.set('from', opts.from);
  if (opts.to) params.set('to', opts.to);
  if (opts.limit) params.set('limit', opts.limit);
  const answer = (await apiGet(apiTarget(opts), `/api/v1/search?${params}`)) as {
    total?: number;
    events?: Record<string, unknown>[];
    columns?: string[];
    rows?: unknown[][];
    took_ms: number;
  };
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
    return 0;
  }
  if (answer.columns && answer.rows) {
    printTable(answer.columns, answer.rows);
    process.stderr.write(`${answer.rows.length} rows in ${answer.took_ms} ms\n`);
  } else {
    for (const e of answer.events ?? []) {
      const text = (e.message as string) || (e['event.original'] as string);
      process.stdout.write(`${e['@timestamp']}  ${e['host.name'] ?? '-'}  ${text}\n`);
    }
    process.stderr.write(`${answer.events?.length ?? 0} of ${answer.total} events in ${answer.took_ms} ms\n`);
  }
  return 0;
}

/** Prints rows as aligned columns. */
export function printTable(columns: string[], rows: unknown[][]): void {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'string' ? c : JSON.stringify(c))));
  const widths = columns.map((c, i) => Math.min(60, Math.max(c.length, ...cells.map((r) => r[i]?.length ?? 0))));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.slice(0, 60).padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  process.stdout.write(`${line(columns)}\n`);
  for (const r of cells) process.stdout.write(`${line(r)}\n`);
}
