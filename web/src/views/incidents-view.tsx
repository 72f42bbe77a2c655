/**
 * Incidents: the queue, one incident with its alerts, events and comments, status and assignee changes and
 * new comments, against /api/v1/incidents (src/incidents is its model). Until the server has the routes,
 * the view says so. The contract assumed, from src/incidents/model.ts and service.ts:
 *   GET   /api/v1/incidents?status=            -> {incidents, total, nextCursor}
 *   GET   /api/v1/incidents/:id                -> incident + alertIds, eventIds, comments [{author, body, createdAt}]
 *   PATCH /api/v1/incidents/:id {status|assignee} -> the incident (409 invalid_transition says why not)
 *   POST  /api/v1/incidents/:id/comments {body} -> the comment
 * Field names are read tolerantly (createdAt|created_at, ...), so small changes there do not break it.
 */
import { type FormEvent, useEffect, useRef, useState } from 'react';
import { Badge, Empty, ErrorBox, Loading, NotAvailable } from '../components/feedback.tsx';
import { ApiError, api, qs } from '../lib/api.ts';
import { href, Link, type Location, navigate } from '../lib/router.tsx';
import { useSettings } from '../lib/settings.tsx';
import { quoteValue } from '../lib/query.ts';
import { formatTime, parseEngineTime } from '../lib/time.ts';
import { useApi } from '../lib/use-api.ts';
import { searchHref } from './search-view.tsx';

type Obj = Record<string, unknown>;

/** Statuses of src/incidents/model.ts; an incident never goes back to `new`. */
const STATUSES = ['new', 'acknowledged', 'in_progress', 'resolved', 'false_positive'];
const label = (status: string) => status.replace(/_/g, ' ');
const POLL_MS = 10000;

const pick = (o: Obj, ...keys: string[]) => {
  for (const k of keys) if (o[k] !== undefined && o[k] !== null) return o[k];
  return undefined;
};
const text = (v: unknown) =>
  v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
const time = (v: unknown) => (v === undefined ? Number.NaN : typeof v === 'number' ? v : parseEngineTime(v));

function incidentsOf(data: unknown): Obj[] {
  if (Array.isArray(data)) return data as Obj[];
  const v = (data as Obj)?.incidents ?? (data as Obj)?.items;
  return Array.isArray(v) ? (v as Obj[]) : [];
}

export function IncidentsView({ location, id }: { location: Location; id?: string }) {
  const { utc } = useSettings();
  const statusFilter = location.params.get('status') ?? '';
  const list = useApi<unknown>(`/api/v1/incidents${qs({ status: statusFilter })}`, { pollMs: POLL_MS });
  useEffect(() => {
    document.title = 'Incidents · Vigil';
  }, []);

  if (list.error instanceof ApiError && list.error.missingRoute) {
    return (
      <section className="view" aria-labelledby="incidents-heading">
        <h1 id="incidents-heading">Incidents</h1>
        <NotAvailable feature="Incident management">
          <p>
            Until it is, work from the <Link href="/ui/alerts">alerts</Link>: acknowledge and close them there.
          </p>
        </NotAvailable>
      </section>
    );
  }
  const incidents = incidentsOf(list.data);
  return (
    <section className="view incidents-view" aria-labelledby="incidents-heading">
      <div className="view-head">
        <h1 id="incidents-heading">Incidents</h1>
      </div>
      <div className="filters">
        <label>
          Status
          <select
            value={statusFilter}
            onChange={(e) => navigate(href(id ? `/ui/incidents/${id}` : '/ui/incidents', { status: e.target.value }))}
          >
            <option value="">Any</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {label(s)}
              </option>
            ))}
          </select>
        </label>
      </div>
      <div className={`split${id ? ' has-detail' : ''}`}>
        <div className="split-main">
          {list.error !== null && <ErrorBox error={list.error} onRetry={list.reload} />}
          {list.data === undefined && list.loading && <Loading label="Loading incidents…" />}
          {list.data !== undefined && incidents.length === 0 && <Empty>The queue is empty.</Empty>}
          {incidents.length > 0 && (
            <div className="table-wrap">
              <table className="data-table">
                <thead>
                  <tr>
                    <th scope="col">Opened</th>
                    <th scope="col">Severity</th>
                    <th scope="col">Incident</th>
                    <th scope="col">Status</th>
                    <th scope="col">Alerts</th>
                    <th scope="col">Assignee</th>
                  </tr>
                </thead>
                <tbody>
                  {incidents.map((inc) => {
                    const iid = text(inc.id);
                    const sev = text(pick(inc, 'severity', 'level'));
                    return (
                      <tr
                        key={iid}
                        aria-current={iid === id ? 'true' : undefined}
                        className={iid === id ? 'current' : ''}
                      >
                        <td className="nowrap">
                          {formatTime(time(pick(inc, 'createdAt', 'created_at', 'created')), utc)}
                        </td>
                        <td>{sev && <Badge kind={sev}>{sev}</Badge>}</td>
                        <td>
                          <Link href={href(`/ui/incidents/${encodeURIComponent(iid)}`, { status: statusFilter })}>
                            {text(pick(inc, 'title', 'name')) || iid}
                          </Link>
                        </td>
                        <td>
                          <Badge kind={text(inc.status)}>{label(text(inc.status))}</Badge>
                        </td>
                        <td className="num">{text(pick(inc, 'alertCount', 'alert_count'))}</td>
                        <td>{text(pick(inc, 'assignee', 'owner')) || <span className="muted">unassigned</span>}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
        </div>
        {id && (
          <IncidentDetail id={id} onChanged={list.reload} closeHref={href('/ui/incidents', { status: statusFilter })} />
        )}
      </div>
    </section>
  );
}

function IncidentDetail({ id, onChanged, closeHref }: { id: string; onChanged(): void; closeHref: string }) {
  const { utc } = useSettings();
  const detail = useApi<Obj>(`/api/v1/incidents/${encodeURIComponent(id)}`);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [comment, setComment] = useState('');
  const [status, setStatus] = useState('');
  const headingRef = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    if (detail.data) headingRef.current?.focus();
  }, [detail.data?.id]);

  const inc = detail.data;
  const [assignee, setAssignee] = useState('');
  useEffect(() => setAssignee(text(inc?.assignee)), [inc?.assignee]);

  const patch = async (body: Obj, done: string) => {
    setBusy(true);
    setError(null);
    try {
      await api(`/api/v1/incidents/${encodeURIComponent(id)}`, { method: 'PATCH', body });
      setStatus(done);
      detail.reload();
      onChanged();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const addComment = async (e: FormEvent) => {
    e.preventDefault();
    if (!comment.trim()) return;
    setBusy(true);
    setError(null);
    try {
      await api(`/api/v1/incidents/${encodeURIComponent(id)}/comments`, { method: 'POST', body: { body: comment } });
      setComment('');
      setStatus('Comment added.');
      detail.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const comments = Array.isArray(inc?.comments) ? (inc.comments as Obj[]) : [];
  const alerts = (
    Array.isArray(inc?.alertIds) ? inc.alertIds : Array.isArray(inc?.alerts) ? inc.alerts : []
  ) as unknown[];
  const events = (Array.isArray(inc?.eventIds) ? inc.eventIds : []) as string[];
  return (
    <article className="split-detail card" aria-labelledby="incident-title">
      <div className="card-head">
        <Link href={closeHref} className="link-button">
          ← The queue
        </Link>
      </div>
      {detail.error !== null && <ErrorBox error={detail.error} onRetry={detail.reload} />}
      {!inc && detail.loading && <Loading />}
      {inc && (
        <>
          <h2 id="incident-title" ref={headingRef} tabIndex={-1}>
            {text(pick(inc, 'title', 'name')) || id}
          </h2>
          <p>
            <Badge kind={text(inc.status)}>{label(text(inc.status))}</Badge>{' '}
            {text(pick(inc, 'severity', 'level')) && (
              <Badge kind={text(pick(inc, 'severity', 'level'))}>{text(pick(inc, 'severity', 'level'))}</Badge>
            )}
          </p>
          <dl className="facts">
            <dt>Opened</dt>
            <dd>{formatTime(time(pick(inc, 'createdAt', 'created_at', 'created')), utc)}</dd>
            <dt>Last alert</dt>
            <dd>{formatTime(time(pick(inc, 'lastAlertAt', 'last_alert_at')), utc) || '—'}</dd>
            {text(inc.host) && (
              <>
                <dt>Host</dt>
                <dd>{text(inc.host)}</dd>
              </>
            )}
            {text(pick(inc, 'ruleId', 'rule_id')) && (
              <>
                <dt>Rule</dt>
                <dd>
                  <Link href={`/ui/rules/${encodeURIComponent(text(pick(inc, 'ruleId', 'rule_id')))}`}>
                    {text(pick(inc, 'ruleId', 'rule_id'))}
                  </Link>
                </dd>
              </>
            )}
          </dl>
          <div className="actions">
            <label>
              Status
              <select
                value={text(inc.status)}
                disabled={busy}
                onChange={(e) => patch({ status: e.target.value }, `Status set to ${label(e.target.value)}.`)}
              >
                {STATUSES.filter((s) => s !== 'new' || inc.status === 'new').map((s) => (
                  <option key={s} value={s}>
                    {label(s)}
                  </option>
                ))}
              </select>
            </label>
            <form
              className="inline-form"
              onSubmit={(e) => {
                e.preventDefault();
                patch(
                  { assignee: assignee.trim() || null },
                  assignee.trim() ? `Assigned to ${assignee.trim()}.` : 'Unassigned.',
                );
              }}
            >
              <label>
                Assignee
                <input value={assignee} onChange={(e) => setAssignee(e.target.value)} placeholder="unassigned" />
              </label>
              <button type="submit" disabled={busy || assignee === text(inc.assignee)}>
                Assign
              </button>
            </form>
            <span role="status" className="muted small">
              {status}
            </span>
          </div>
          {error !== null && <ErrorBox error={error} title="The change was not saved" />}
          <h3>Alerts ({alerts.length})</h3>
          {alerts.length === 0 ? (
            <p className="muted">No alerts are attached.</p>
          ) : (
            <ul>
              {alerts.map((a) => {
                const aid = typeof a === 'string' ? a : text((a as Obj).id);
                const title = typeof a === 'string' ? a : text(pick(a as Obj, 'title', 'rule_title')) || aid;
                return (
                  <li key={aid}>
                    <Link href={`/ui/alerts/${encodeURIComponent(aid)}`}>{title}</Link>
                  </li>
                );
              })}
            </ul>
          )}
          {events.length > 0 && (
            <p>
              <Link
                href={searchHref(`event.id:(${events.map(quoteValue).join(' OR ')})`, { from: 'now-30d', to: 'now' })}
              >
                Search its {events.length} event{events.length === 1 ? '' : 's'}
              </Link>
            </p>
          )}
          <h3>Comments ({comments.length})</h3>
          <ol className="comments">
            {comments.map((c, i) => (
              <li key={i}>
                <p className="muted small">
                  {text(pick(c, 'author', 'user')) || 'someone'} ·{' '}
                  {formatTime(time(pick(c, 'createdAt', 'created_at', 'created')), utc)}
                </p>
                <p className="comment-body">{text(pick(c, 'body', 'text'))}</p>
              </li>
            ))}
          </ol>
          <form onSubmit={addComment} className="comment-form">
            <label htmlFor="comment">Add a comment</label>
            <textarea id="comment" value={comment} onChange={(e) => setComment(e.target.value)} rows={3} />
            <button type="submit" disabled={busy || !comment.trim()}>
              Comment
            </button>
          </form>
        </>
      )}
    </article>
  );
}
