/**
 * Search: the query bar and time picker, a histogram that zooms, the field sidebar, and the results, a
 * virtualized table of events or, after stats/timechart, a chart and a table. All state is in the URL.
 */
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { EventDetail, fieldText } from '../components/event-detail.tsx';
import { Empty, ErrorBox, Loading } from '../components/feedback.tsx';
import { FieldSidebar } from '../components/field-sidebar.tsx';
import { type Bucket, Histogram } from '../components/histogram.tsx';
import { type QueryError, QueryBar } from '../components/query-bar.tsx';
import { ResultChart } from '../components/result-chart.tsx';
import { TimePicker } from '../components/time-picker.tsx';
import { VirtualList } from '../components/virtual-list.tsx';
import { ApiError, api, qs } from '../lib/api.ts';
import { download, eventsToCsv, exportName, toCsv, toNdjson } from '../lib/export.ts';
import { addFilterTerm, histogramQuery, isTableQuery, isTimeOrdered } from '../lib/query.ts';
import { href, type Location, navigate } from '../lib/router.tsx';
import { useSettings } from '../lib/settings.tsx';
import {
  chooseSpan,
  DEFAULT_RANGE,
  describeRange,
  formatTime,
  parseEngineTime,
  resolveRange,
  type TimeRange,
} from '../lib/time.ts';

type EventRecord = Record<string, unknown>;

/** The first page is small so rows show at once; the next ones use the API's largest limit. */
const FIRST_PAGE = 1000;
const PAGE = 10000;
const ROW_HEIGHT = 32;
const TABLE_ROWS_SHOWN = 1000;

type Results =
  | { kind: 'events'; events: EventRecord[]; total: number; tookMs: number; complete: boolean }
  | { kind: 'table'; columns: string[]; rows: unknown[][]; tookMs: number };

interface HistogramState {
  buckets: Bucket[];
  spanMs: number;
  fromMs: number;
  toMs: number;
}

/** The search URL for a query and range (used by links from alerts and rules too). */
export function searchHref(q: string, range: TimeRange = DEFAULT_RANGE): string {
  return href('/ui/search', { q, from: range.from, to: range.to });
}

export function SearchView({ location }: { location: Location }) {
  const { utc } = useSettings();
  const q = location.params.get('q') ?? '*';
  const range: TimeRange = {
    from: location.params.get('from') ?? DEFAULT_RANGE.from,
    to: location.params.get('to') ?? DEFAULT_RANGE.to,
  };
  const [runId, setRunId] = useState(0);
  const [results, setResults] = useState<Results | null>(null);
  const [histogram, setHistogram] = useState<HistogramState | null>(null);
  const [histError, setHistError] = useState<unknown>(null);
  const [queryError, setQueryError] = useState<QueryError | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [loadingMore, setLoadingMore] = useState(false);
  const [expanded, setExpanded] = useState<Set<string>>(() => new Set());
  // Kept here so the sidebar remembers what is open while results come and go.
  const [openFields, setOpenFields] = useState<Set<string>>(() => new Set(['host.name']));
  const [status, setStatus] = useState('');
  const run = useRef<{ abort: AbortController; fromMs: number; toMs: number; seen: Set<string> } | null>(null);

  useEffect(() => {
    document.title = 'Search · Vigil';
  }, []);

  // "/" jumps to the query, as in many consoles.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement;
      if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey) return;
      if (t.closest('input, textarea, select, [contenteditable="true"]')) return;
      e.preventDefault();
      document.getElementById('query-input')?.focus();
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, []);

  // runId re-runs the same URL on demand.
  useEffect(() => {
    run.current?.abort.abort();
    const abort = new AbortController();
    const { fromMs, toMs } = resolveRange(range);
    run.current = { abort, fromMs, toMs, seen: new Set() };
    setBusy(true);
    setError(null);
    setQueryError(null);
    setExpanded(new Set());
    setStatus('');
    if (!Number.isFinite(fromMs) || !Number.isFinite(toMs) || fromMs >= toMs) {
      setBusy(false);
      setResults(null);
      setError(new ApiError(400, 'bad_time_range', `cannot read the range ${range.from} to ${range.to}`));
      return;
    }
    const table = isTableQuery(q);
    // A query that cannot be paged by time gets the API's largest page at once.
    const pageable = isTimeOrdered(q);
    const firstLimit = pageable ? FIRST_PAGE : PAGE;
    const main = api<{
      total?: number;
      events?: EventRecord[];
      columns?: string[];
      rows?: unknown[][];
      took_ms: number;
    }>(`/api/v1/search${qs({ q, from: fromMs, to: toMs, limit: table ? undefined : firstLimit })}`, {
      signal: abort.signal,
    })
      .then((a) => {
        if (abort.signal.aborted) return;
        if (a.columns && a.rows) {
          setResults({ kind: 'table', columns: a.columns, rows: a.rows, tookMs: a.took_ms });
          return;
        }
        const events = a.events ?? [];
        for (const e of events) run.current?.seen.add(String(e['event.id'] ?? ''));
        const total = a.total ?? events.length;
        setResults({
          kind: 'events',
          events,
          total,
          tookMs: a.took_ms,
          complete: events.length >= total || !pageable || events.length < firstLimit,
        });
      })
      .catch((err) => {
        if (abort.signal.aborted) return;
        setResults(null);
        if (err instanceof ApiError && err.code === 'query_syntax' && err.details) {
          setQueryError({
            query: q,
            position: Number(err.details.position ?? 1),
            hint: String(err.details.hint ?? err.message),
            message: err.message,
          });
        } else setError(err);
      });

    setHistError(null);
    // The last query's histogram must not pass for this one's while it loads.
    setHistogram(null);
    if (!table) {
      const span = chooseSpan(toMs - fromMs);
      api<{ columns: string[]; rows: unknown[][] }>(
        `/api/v1/search${qs({ q: histogramQuery(q, span.text), from: fromMs, to: toMs })}`,
        { signal: abort.signal },
      )
        .then((a) => {
          if (abort.signal.aborted) return;
          const ti = a.columns.indexOf('_time');
          const ci = a.columns.indexOf('count');
          setHistogram({
            buckets: a.rows.map((r) => ({ t: parseEngineTime(r[ti]), count: Number(r[ci] ?? 0) })),
            spanMs: span.ms,
            fromMs,
            toMs,
          });
        })
        .catch((err) => {
          if (abort.signal.aborted) return;
          setHistogram(null);
          // A syntax error is reported once, by the main query.
          if (!(err instanceof ApiError && err.code === 'query_syntax')) setHistError(err);
        });
    }

    main.finally(() => {
      if (!abort.signal.aborted) setBusy(false);
    });
    return () => abort.abort();
  }, [q, range.from, range.to, runId]);

  const loadMore = useCallback(async () => {
    const r = run.current;
    if (!r || !results || results.kind !== 'events' || results.complete || loadingMore) return;
    const oldest = results.events[results.events.length - 1];
    const oldestMs = Date.parse(String(oldest?.['@timestamp']));
    if (!Number.isFinite(oldestMs)) {
      setResults({ ...results, complete: true });
      return;
    }
    setLoadingMore(true);
    try {
      // The API has no offset: the next page ends at the oldest loaded time (inclusive: events in the same
      // millisecond may not all have come), and events already loaded are skipped by id.
      const a = await api<{ events: EventRecord[] }>(
        `/api/v1/search${qs({ q, from: r.fromMs, to: oldestMs + 1, limit: PAGE })}`,
        { signal: r.abort.signal },
      );
      if (run.current !== r) return;
      const fresh = a.events.filter((e) => !r.seen.has(String(e['event.id'] ?? '')));
      for (const e of fresh) r.seen.add(String(e['event.id'] ?? ''));
      const events = results.events.concat(fresh);
      setResults({
        ...results,
        events,
        complete: fresh.length === 0 || events.length >= results.total || a.events.length < PAGE,
      });
    } catch (err) {
      if (run.current === r && !r.abort.signal.aborted) setError(err);
    } finally {
      if (run.current === r) setLoadingMore(false);
    }
  }, [q, results, loadingMore]);

  const go = (next: { q?: string; range?: TimeRange }) => {
    const nq = next.q ?? q;
    const nr = next.range ?? range;
    // The same search again (a refresh) does not change the URL: run it anyway.
    if (nq === q && nr.from === range.from && nr.to === range.to) setRunId((n) => n + 1);
    else navigate(searchHref(nq, nr));
  };

  const onFilter = (field: string, value: unknown, exclude: boolean) =>
    go({ q: addFilterTerm(q, field, value, exclude) });

  const events = results?.kind === 'events' ? results.events : [];
  const rowKey = useCallback((i: number) => String(events[i]?.['event.id'] ?? i), [events]);
  const isExpanded = useCallback((i: number) => expanded.has(rowKey(i)), [expanded, rowKey]);
  const toggle = useCallback(
    (i: number) =>
      setExpanded((s) => {
        const n = new Set(s);
        const k = rowKey(i);
        if (n.has(k)) n.delete(k);
        else n.add(k);
        return n;
      }),
    [rowKey],
  );

  const columns = useMemo(
    () => [
      { id: 'expand', header: <span className="visually-hidden">Expand</span>, className: 'cell-expand' },
      { id: 'time', header: `Time${utc ? ' (UTC)' : ''}`, className: 'cell-time' },
      { id: 'host', header: 'Host', className: 'cell-host' },
      { id: 'source', header: 'Source', className: 'cell-source' },
      { id: 'event', header: 'Event', className: 'cell-summary' },
    ],
    [utc],
  );

  const copyLink = async () => {
    try {
      await navigator.clipboard.writeText(window.location.href);
      setStatus('Link copied.');
    } catch {
      setStatus(`Copy this link: ${window.location.href}`);
    }
  };

  const exportResults = (format: 'csv' | 'ndjson') => {
    if (!results) return;
    if (results.kind === 'events') {
      if (format === 'csv') download(exportName('search', 'csv'), eventsToCsv(results.events), 'text/csv');
      else download(exportName('search', 'ndjson'), toNdjson(results.events), 'application/x-ndjson');
    } else if (format === 'csv') {
      download(exportName('stats', 'csv'), toCsv(results.columns, results.rows), 'text/csv');
    } else {
      const objs = results.rows.map((r) => Object.fromEntries(results.columns.map((c, i) => [c, r[i]])));
      download(exportName('stats', 'ndjson'), toNdjson(objs), 'application/x-ndjson');
    }
    setStatus(
      `Exported ${results.kind === 'events' ? results.events.length : results.rows.length} rows as ${format.toUpperCase()}.`,
    );
  };

  const zoomOut = () => {
    const { fromMs, toMs } = resolveRange(range);
    const w = toMs - fromMs;
    const to = Math.min(Date.now(), toMs + w / 2);
    go({ range: { from: new Date(to - 2 * w).toISOString(), to: new Date(to).toISOString() } });
  };

  return (
    <section className="view search-view" aria-labelledby="search-heading">
      <h1 id="search-heading" className="visually-hidden">
        Search
      </h1>
      <QueryBar value={q} onSubmit={(text) => go({ q: text })} error={queryError} busy={busy}>
        <TimePicker range={range} onChange={(r) => go({ range: r })} />
      </QueryBar>
      <div className="search-body">
        {results?.kind === 'events' && results.events.length > 0 && (
          <FieldSidebar events={results.events} onFilter={onFilter} open={openFields} onOpenChange={setOpenFields} />
        )}
        <div className="search-main">
          {results?.kind !== 'table' && !queryError && (
            <div className="card histogram-card">
              <div className="card-head">
                <h2>Events over time</h2>
                <span className="muted small">{describeRange(range, utc)}</span>
                <button type="button" className="link-button" onClick={zoomOut}>
                  Zoom out
                </button>
              </div>
              {histogram ? (
                <Histogram
                  {...histogram}
                  utc={utc}
                  onSelect={(a, b) => go({ range: { from: new Date(a).toISOString(), to: new Date(b).toISOString() } })}
                />
              ) : histError ? (
                <ErrorBox error={histError} title="The histogram could not be drawn" />
              ) : (
                <div className="histogram-placeholder" aria-hidden="true" />
              )}
            </div>
          )}
          {error !== null && <ErrorBox error={error} onRetry={() => setRunId((n) => n + 1)} />}
          {queryError && <p className="muted">Fix the query above and search again.</p>}
          {busy && !results && <Loading label="Searching…" />}
          {results && (
            <div className="results">
              <div className="results-head">
                <p className="results-summary" aria-live="polite">
                  {results.kind === 'events' ? (
                    <>
                      <strong>{results.total.toLocaleString()}</strong> matching event{results.total === 1 ? '' : 's'}
                      {results.events.length < results.total && <> · {results.events.length.toLocaleString()} loaded</>}{' '}
                      · {results.tookMs} ms
                    </>
                  ) : (
                    <>
                      <strong>{results.rows.length.toLocaleString()}</strong> row{results.rows.length === 1 ? '' : 's'}{' '}
                      · {results.tookMs} ms
                    </>
                  )}
                </p>
                <div className="results-actions">
                  <button type="button" onClick={copyLink}>
                    Copy link
                  </button>
                  <button type="button" onClick={() => exportResults('csv')}>
                    Export CSV
                  </button>
                  <button type="button" onClick={() => exportResults('ndjson')}>
                    Export NDJSON
                  </button>
                </div>
              </div>
              <p className="status-line" role="status">
                {status}
              </p>
              {results.kind === 'events' ? (
                results.events.length === 0 ? (
                  <Empty>
                    No events match in {describeRange(range, utc).toLowerCase()}. Widen the time range or loosen the
                    query.
                  </Empty>
                ) : (
                  <>
                    <VirtualList
                      className="events-table"
                      label="Events"
                      count={results.events.length}
                      rowHeight={ROW_HEIGHT}
                      rowKey={rowKey}
                      isExpanded={isExpanded}
                      onToggle={toggle}
                      onEndReached={results.complete ? undefined : loadMore}
                      columns={columns}
                      renderCell={(i, col) => {
                        const e = results.events[i];
                        switch (col) {
                          case 'expand':
                            return <span aria-hidden="true">{expanded.has(rowKey(i)) ? '▾' : '▸'}</span>;
                          case 'time':
                            return formatTime(Date.parse(String(e['@timestamp'])), utc, true);
                          case 'host':
                            return fieldText(e['host.name']);
                          case 'source':
                            return fieldText(e['input.type']);
                          default:
                            return summary(e);
                        }
                      }}
                      renderDetail={(i) => <EventDetail event={results.events[i]} onFilter={onFilter} />}
                    />
                    <p className="muted small" role="status">
                      {loadingMore
                        ? 'Loading more events…'
                        : results.complete
                          ? results.events.length < results.total
                            ? `Showing the first ${results.events.length.toLocaleString()} (this query cannot be paged by time).`
                            : 'All matching events are loaded.'
                          : 'Scroll to the end to load more.'}
                    </p>
                  </>
                )
              ) : (
                <TableResult columns={results.columns} rows={results.rows} utc={utc} />
              )}
            </div>
          )}
        </div>
      </div>
    </section>
  );
}

/** One line for the Event column: the message, else the raw text, else the fields. */
function summary(e: EventRecord): string {
  const m = e.message ?? e['event.original'];
  if (m !== undefined) return fieldText(m).slice(0, 500);
  return Object.entries(e)
    .filter(([k]) => !['@timestamp', 'host.name', 'input.type'].includes(k))
    .map(([k, v]) => `${k}=${fieldText(v)}`)
    .join(' ')
    .slice(0, 500);
}

function TableResult({ columns, rows, utc }: { columns: string[]; rows: unknown[][]; utc: boolean }) {
  const shown = useMemo(() => rows.slice(0, TABLE_ROWS_SHOWN), [rows]);
  if (rows.length === 0) return <Empty>No rows: nothing matched in this range.</Empty>;
  return (
    <>
      <ResultChart columns={columns} rows={rows} utc={utc} />
      <div className="table-wrap">
        <table className="data-table">
          <thead>
            <tr>
              {columns.map((c) => (
                <th key={c} scope="col">
                  {c}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {shown.map((r, i) => (
              <tr key={i}>
                {r.map((v, j) => (
                  <td key={columns[j]} className={typeof v === 'number' ? 'num' : undefined}>
                    {typeof v === 'number' ? v.toLocaleString() : fieldText(v)}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {rows.length > TABLE_ROWS_SHOWN && (
        <p className="muted small">
          The first {TABLE_ROWS_SHOWN.toLocaleString()} of {rows.length.toLocaleString()} rows are shown; the export has
          them all.
        </p>
      )}
    </>
  );
}
