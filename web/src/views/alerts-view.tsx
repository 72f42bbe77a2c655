/**
 * Alerts: a list filtered by level, rule, host and status that polls for new alerts, and the detail of
 * one alert with its matched fields, links to its events, and acknowledge/close/reopen.
 */
import { type FormEvent, useEffect, useRef, useState } from 'react';
import { ReadOnlyNote, useAccess } from '../auth/access.tsx';
import { Badge, Empty, ErrorBox, Loading, NotAvailable } from '../components/feedback.tsx';
import { ApiError, api, describeError, qs } from '../lib/api.ts';
import { quoteValue } from '../lib/query.ts';
import { href, Link, type Location, navigate } from '../lib/router.tsx';
import { useSettings } from '../lib/settings.tsx';
import { age, formatTime } from '../lib/time.ts';
import { useApi } from '../lib/use-api.ts';
import { searchHref } from './search-view.tsx';

/** An alert as GET /api/v1/alerts answers it. */
export interface Alert {
  id: string;
  timestamp: number;
  created: number;
  tenant: string;
  kind: 'rule' | 'correlation';
  rule: { id: string; title: string; level: string; tags: string[] };
  host: string;
  status: 'new' | 'acknowledged' | 'closed';
  matched: Record<string, unknown>;
  eventIds: string[];
}

export const LEVELS = ['critical', 'high', 'medium', 'low', 'informational'];
const STATUSES = ['new', 'acknowledged', 'closed'];
const POLL_MS = 5000;
const FILTERS = ['level', 'rule', 'host', 'status'] as const;

export function AlertsView({ location, id }: { location: Location; id?: string }) {
  const { utc } = useSettings();
  const filters = Object.fromEntries(FILTERS.map((f) => [f, location.params.get(f) ?? ''])) as Record<
    (typeof FILTERS)[number],
    string
  >;
  const list = useApi<{ total: number; alerts: Alert[] }>(`/api/v1/alerts${qs({ ...filters, limit: 500 })}`, {
    pollMs: POLL_MS,
  });
  const known = useRef<Set<string> | null>(null);
  const [fresh, setFresh] = useState<Set<string>>(() => new Set());
  const [announce, setAnnounce] = useState('');
  const filterKey = FILTERS.map((f) => filters[f]).join('|');

  useEffect(() => {
    document.title = 'Alerts · Vigil';
  }, []);

  // a new filter starts a new "known" set.
  useEffect(() => {
    known.current = null;
    setFresh(new Set());
  }, [filterKey]);

  // Alerts that arrive while the page is open are marked and announced.
  useEffect(() => {
    const alerts = list.data?.alerts;
    if (!alerts) return;
    if (known.current === null) {
      known.current = new Set(alerts.map((a) => a.id));
      return;
    }
    const added = alerts.filter((a) => !known.current!.has(a.id));
    if (added.length === 0) return;
    for (const a of added) known.current.add(a.id);
    setFresh((s) => new Set([...s, ...added.map((a) => a.id)]));
    setAnnounce(`${added.length} new alert${added.length === 1 ? '' : 's'}.`);
  }, [list.data]);

  const setFilter = (name: string, value: string) => {
    const p = Object.fromEntries(FILTERS.map((f) => [f, f === name ? value : filters[f]]));
    navigate(href(id ? `/ui/alerts/${encodeURIComponent(id)}` : '/ui/alerts', p), { replace: true });
  };
  const submitText = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const fd = new FormData(e.currentTarget);
    const p = Object.fromEntries(FILTERS.map((f) => [f, String(fd.get(f) ?? filters[f]).trim()]));
    navigate(href(id ? `/ui/alerts/${encodeURIComponent(id)}` : '/ui/alerts', p), { replace: true });
  };

  const missing = list.error instanceof ApiError && list.error.missingRoute;
  const listParams = Object.fromEntries(FILTERS.map((f) => [f, filters[f]]));

  return (
    <section className="view alerts-view" aria-labelledby="alerts-heading">
      <div className="view-head">
        <h1 id="alerts-heading">Alerts</h1>
        <p className="muted small" aria-live="polite">
          {announce} {list.updated && `Updated every ${POLL_MS / 1000} s; last ${formatTime(list.updated, utc)}.`}
        </p>
      </div>
      <form className="filters" onSubmit={submitText} aria-label="Filter alerts">
        <label>
          Level
          <select value={filters.level} onChange={(e) => setFilter('level', e.target.value)}>
            <option value="">Any</option>
            {LEVELS.map((l) => (
              <option key={l}>{l}</option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select value={filters.status} onChange={(e) => setFilter('status', e.target.value)}>
            <option value="">Any</option>
            {STATUSES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Rule id
          <input name="rule" defaultValue={filters.rule} key={`r${filters.rule}`} placeholder="rule id" />
        </label>
        <label>
          Host
          <input name="host" defaultValue={filters.host} key={`h${filters.host}`} placeholder="host.name" />
        </label>
        <button type="submit">Apply</button>
        {FILTERS.some((f) => filters[f]) && (
          <Link href={id ? `/ui/alerts/${encodeURIComponent(id)}` : '/ui/alerts'} className="link-button">
            Clear filters
          </Link>
        )}
      </form>
      {missing ? (
        <NotAvailable feature="Alerts">
          <p>Alerts come from the detect role; this node does not run it.</p>
        </NotAvailable>
      ) : (
        <div className={`split${id ? ' has-detail' : ''}`}>
          <div className="split-main">
            {list.error !== null && list.data && (
              <p className="notice notice-warn" role="status">
                Showing the last answer: {describeError(list.error).title.toLowerCase()}. Retrying every{' '}
                {POLL_MS / 1000} s.
              </p>
            )}
            {list.error !== null && !list.data && <ErrorBox error={list.error} onRetry={list.reload} />}
            {!list.data && list.loading && <Loading label="Loading alerts…" />}
            {list.data && list.data.alerts.length === 0 && (
              <Empty>
                No alerts{FILTERS.some((f) => filters[f]) ? ' match these filters' : ' yet'}. New ones appear here
                without reloading.
              </Empty>
            )}
            {list.data && list.data.alerts.length > 0 && (
              <div className="table-wrap">
                <table className="data-table alerts-table">
                  <caption className="visually-hidden">
                    {list.data.total} alerts, newest first{fresh.size ? `; ${fresh.size} arrived while open` : ''}
                  </caption>
                  <thead>
                    <tr>
                      <th scope="col">Time</th>
                      <th scope="col">Level</th>
                      <th scope="col">Rule</th>
                      <th scope="col">Host</th>
                      <th scope="col">Status</th>
                    </tr>
                  </thead>
                  <tbody>
                    {list.data.alerts.map((a) => (
                      <tr
                        key={a.id}
                        className={`${fresh.has(a.id) ? 'fresh' : ''}${a.id === id ? ' current' : ''}`}
                        aria-current={a.id === id ? 'true' : undefined}
                      >
                        <td className="nowrap" title={formatTime(a.timestamp, utc, true)}>
                          {formatTime(a.timestamp, utc)}
                          {fresh.has(a.id) && <span className="new-tag">new</span>}
                        </td>
                        <td>
                          <Badge kind={a.rule.level}>{a.rule.level}</Badge>
                        </td>
                        <td>
                          <Link href={href(`/ui/alerts/${encodeURIComponent(a.id)}`, listParams)}>{a.rule.title}</Link>
                          {a.kind === 'correlation' && <span className="muted small"> · correlation</span>}
                        </td>
                        <td>{a.host || <span className="muted">—</span>}</td>
                        <td>
                          <Badge kind={a.status}>{a.status}</Badge>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </div>
          {id && (
            <AlertDetail
              id={id}
              closeHref={href('/ui/alerts', listParams)}
              onChanged={(a) => {
                if (list.data)
                  list.setData({ ...list.data, alerts: list.data.alerts.map((x) => (x.id === a.id ? a : x)) });
              }}
            />
          )}
        </div>
      )}
    </section>
  );
}

function AlertDetail({ id, closeHref, onChanged }: { id: string; closeHref: string; onChanged(a: Alert): void }) {
  const { utc } = useSettings();
  const { can } = useAccess();
  const detail = useApi<Alert>(`/api/v1/alerts/${encodeURIComponent(id)}`);
  const [saving, setSaving] = useState(false);
  const [actionError, setActionError] = useState<unknown>(null);
  const [status, setStatus] = useState('');
  const headingRef = useRef<HTMLHeadingElement>(null);

  // Opening an alert moves focus to it, so keyboard and screen reader users land on what they opened.
  useEffect(() => {
    if (detail.data) headingRef.current?.focus();
  }, [detail.data?.id]);

  const setAlertStatus = async (next: Alert['status']) => {
    setSaving(true);
    setActionError(null);
    try {
      const a = await api<Alert>(`/api/v1/alerts/${encodeURIComponent(id)}`, {
        method: 'PATCH',
        body: { status: next },
      });
      detail.setData(a);
      onChanged(a);
      setStatus(`Alert ${next === 'new' ? 'reopened' : next}.`);
    } catch (err) {
      setActionError(err);
    } finally {
      setSaving(false);
    }
  };

  const a = detail.data;
  return (
    <article className="split-detail card" aria-labelledby="alert-title">
      <div className="card-head">
        <Link href={closeHref} className="link-button">
          ← All alerts
        </Link>
      </div>
      {detail.error !== null && <ErrorBox error={detail.error} onRetry={detail.reload} />}
      {!a && detail.loading && <Loading label="Loading the alert…" />}
      {a && (
        <>
          <h2 id="alert-title" ref={headingRef} tabIndex={-1}>
            {a.rule.title}
          </h2>
          <p>
            <Badge kind={a.rule.level}>{a.rule.level}</Badge> <Badge kind={a.status}>{a.status}</Badge>{' '}
            <span className="muted small">{a.kind}</span>
          </p>
          <dl className="facts">
            <dt>Time</dt>
            <dd>
              {formatTime(a.timestamp, utc, true)} <span className="muted">({age(a.timestamp)})</span>
            </dd>
            <dt>Host</dt>
            <dd>{a.host || '—'}</dd>
            <dt>Rule</dt>
            <dd>
              <Link href={`/ui/rules/${encodeURIComponent(a.rule.id)}`}>{a.rule.id}</Link>
            </dd>
            {a.rule.tags.length > 0 && (
              <>
                <dt>Tags</dt>
                <dd>{a.rule.tags.join(', ')}</dd>
              </>
            )}
            <dt>Alert id</dt>
            <dd className="mono">{a.id}</dd>
          </dl>
          <ReadOnlyNote action="alerts.change" what="acknowledging and closing alerts" />
          {can('alerts.change') && (
            <fieldset className="actions">
              <legend className="visually-hidden">Change the status</legend>
              {a.status === 'new' && (
                <button
                  type="button"
                  className="primary"
                  disabled={saving}
                  onClick={() => setAlertStatus('acknowledged')}
                >
                  Acknowledge
                </button>
              )}
              {a.status !== 'closed' && (
                <button type="button" disabled={saving} onClick={() => setAlertStatus('closed')}>
                  Close alert
                </button>
              )}
              {a.status !== 'new' && (
                <button type="button" disabled={saving} onClick={() => setAlertStatus('new')}>
                  Reopen alert
                </button>
              )}
              <span role="status" className="muted small">
                {status}
              </span>
            </fieldset>
          )}
          {actionError !== null && <ErrorBox error={actionError} title="The status was not changed" />}
          <h3>Matched fields</h3>
          {Object.keys(a.matched).length === 0 ? (
            <p className="muted">The rule recorded no fields.</p>
          ) : (
            <table className="kv">
              <tbody>
                {Object.entries(a.matched).map(([k, v]) => (
                  <tr key={k}>
                    <th scope="row" className="kv-key">
                      {k}
                    </th>
                    <td>{typeof v === 'string' ? v : JSON.stringify(v)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <h3>Triggering events</h3>
          <EventLinks alert={a} />
        </>
      )}
    </article>
  );
}

/** Links to a search for each triggering event, around the alert's time. */
function EventLinks({ alert }: { alert: Alert }) {
  // Correlations fire on the last event of a window: look back far enough for its first one.
  const range = {
    from: new Date(alert.timestamp - 7 * 86400e3).toISOString(),
    to: new Date(alert.timestamp + 3600e3).toISOString(),
  };
  if (alert.eventIds.length === 0) return <p className="muted">No event ids were recorded.</p>;
  return (
    <>
      {alert.eventIds.length > 1 && (
        <p>
          <Link href={searchHref(`event.id:(${alert.eventIds.map(quoteValue).join(' OR ')})`, range)}>
            Search all {alert.eventIds.length} events
          </Link>
        </p>
      )}
      <ul className="event-links">
        {alert.eventIds.map((e) => (
          <li key={e}>
            <Link href={searchHref(`event.id:${quoteValue(e)}`, range)} className="mono">
              {e}
            </Link>
          </li>
        ))}
      </ul>
    </>
  );
}
