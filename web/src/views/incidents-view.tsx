/**
 * Incidents: the queue (filters, sorting, bulk status and assignee changes), one incident with its alerts,
 * events, comments and timeline, status and assignee changes and new comments, against /api/v1/incidents
 * (src/incidents is its model). Until the server has the routes, the view says so. The contract, from
 * src/incidents/model.ts and service.ts and src/api/routes/incidents.ts:
 *   GET   /api/v1/incidents?status=&severity=&sort= -> {incidents, total, nextCursor}
 *   GET   /api/v1/incidents/:id                -> incident + alertIds, eventIds, comments [{author, body, createdAt}]
 *   PATCH /api/v1/incidents/:id {status|assignee} -> the incident (409 invalid_transition says why not)
 *   POST  /api/v1/incidents/:id/comments {body} -> the comment
 *   GET   /api/v1/incidents/:id/timeline       -> {timeline: [{at, actor, action, from, to}]}
 *   POST  /api/v1/incidents/bulk {ids, status|assignee} -> {updated, failed, results: [{id, ok, error}]}
 * Viewers read; changes need the analyst role, and are not offered to viewers.
 * Field names are read tolerantly (createdAt|created_at, ...), so small changes there do not break it.
 */
import { type FormEvent, useEffect, useRef, useState } from 'react';
import { ReadOnlyNote, useAccess } from '../auth/access.tsx';
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
const SEVERITIES = ['critical', 'high', 'medium', 'low', 'informational'];
/** Orders of GET /api/v1/incidents (`-` for descending); the first is the server's default. */
const SORTS = [
  { value: '-created_at', label: 'Newest first' },
  { value: 'created_at', label: 'Oldest first' },
  { value: '-last_alert_at', label: 'Latest alert' },
  { value: '-updated_at', label: 'Recently changed' },
  { value: '-severity', label: 'Most severe' },
  { value: 'severity', label: 'Least severe' },
];
const LIST_PARAMS = ['status', 'severity', 'sort'] as const;
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
  const { can } = useAccess();
  const mayChange = can('incidents.change');
  const params = Object.fromEntries(LIST_PARAMS.map((k) => [k, location.params.get(k) ?? ''])) as Record<
    (typeof LIST_PARAMS)[number],
    string
  >;
  const list = useApi<unknown>(`/api/v1/incidents${qs(params)}`, { pollMs: POLL_MS });
  const [selected, setSelected] = useState<Set<string>>(() => new Set());
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
  // Only incidents still listed can be acted on together.
  const listed = new Set(incidents.map((i) => text(i.id)));
  const chosen = [...selected].filter((s) => listed.has(s));
  const setParam = (name: string, value: string) =>
    navigate(href(id ? `/ui/incidents/${encodeURIComponent(id)}` : '/ui/incidents', { ...params, [name]: value }), {
      replace: true,
    });
  const toggle = (iid: string, on: boolean) =>
    setSelected((s) => {
      const n = new Set(s);
      if (on) n.add(iid);
      else n.delete(iid);
      return n;
    });
  const allChosen = incidents.length > 0 && chosen.length === incidents.length;
  return (
    <section className="view incidents-view" aria-labelledby="incidents-heading">
      <div className="view-head">
        <h1 id="incidents-heading">Incidents</h1>
        {list.data !== undefined && (
          <p className="muted small">
            {incidents.length} shown of {text((list.data as Obj)?.total) || incidents.length}
          </p>
        )}
      </div>
      <div className="filters">
        <label>
          Status
          <select value={params.status} onChange={(e) => setParam('status', e.target.value)}>
            <option value="">Any</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {label(s)}
              </option>
            ))}
          </select>
        </label>
        <label>
          Severity
          <select value={params.severity} onChange={(e) => setParam('severity', e.target.value)}>
            <option value="">Any</option>
            {SEVERITIES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Sort
          <select value={params.sort || SORTS[0].value} onChange={(e) => setParam('sort', e.target.value)}>
            {SORTS.map((s) => (
              <option key={s.value} value={s.value}>
                {s.label}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ReadOnlyNote action="incidents.change" what="changing, assigning and commenting on incidents" />
      {mayChange && (
        <BulkBar
          ids={chosen}
          onDone={() => {
            setSelected(new Set());
            list.reload();
          }}
        />
      )}
      <div className={`split${id ? ' has-detail' : ''}`}>
        <div className="split-main">
          {list.error !== null && <ErrorBox error={list.error} onRetry={list.reload} />}
          {list.data === undefined && list.loading && <Loading label="Loading incidents…" />}
          {list.data !== undefined && incidents.length === 0 && (
            <Empty>
              {params.status || params.severity ? 'No incident matches these filters.' : 'The queue is empty.'}
            </Empty>
          )}
          {incidents.length > 0 && (
            <div className="table-wrap">
              <table className="data-table incidents-table">
                <thead>
                  <tr>
                    {mayChange && (
                      <th scope="col" className="cell-check">
                        <input
                          type="checkbox"
                          aria-label="Select all incidents shown"
                          checked={allChosen}
                          onChange={(e) =>
                            setSelected(e.target.checked ? new Set(incidents.map((i) => text(i.id))) : new Set())
                          }
                        />
                      </th>
                    )}
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
                    const title = text(pick(inc, 'title', 'name')) || iid;
                    return (
                      <tr
                        key={iid}
                        aria-current={iid === id ? 'true' : undefined}
                        className={`${iid === id ? 'current' : ''}${selected.has(iid) ? ' selected' : ''}`}
                      >
                        {mayChange && (
                          <td className="cell-check">
                            <input
                              type="checkbox"
                              aria-label={`Select ${title}`}
                              checked={selected.has(iid)}
                              onChange={(e) => toggle(iid, e.target.checked)}
                            />
                          </td>
                        )}
                        <td className="nowrap">
                          {formatTime(time(pick(inc, 'createdAt', 'created_at', 'created')), utc)}
                        </td>
                        <td>{sev && <Badge kind={sev}>{sev}</Badge>}</td>
                        <td>
                          <Link href={href(`/ui/incidents/${encodeURIComponent(iid)}`, params)}>{title}</Link>
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
        {id && <IncidentDetail id={id} onChanged={list.reload} closeHref={href('/ui/incidents', params)} />}
      </div>
    </section>
  );
}

interface BulkAnswer {
  updated: number;
  failed: number;
  results: { id: string; ok: boolean; error?: { code: string; message: string } }[];
}

/** Acts on the selected incidents at once: a status or an assignee, through POST /api/v1/incidents/bulk. */
function BulkBar({ ids, onDone }: { ids: string[]; onDone(): void }) {
  const [status, setStatus] = useState('');
  const [assignee, setAssignee] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [answer, setAnswer] = useState<BulkAnswer | null>(null);
  const apply = async (patch: Obj) => {
    setBusy(true);
    setError(null);
    setAnswer(null);
    try {
      setAnswer(await api<BulkAnswer>('/api/v1/incidents/bulk', { method: 'POST', body: { ids, ...patch } }));
      setStatus('');
      setAssignee('');
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const n = ids.length;
  return (
    <div className="bulk-bar">
      <form
        className="actions"
        aria-label="Change the selected incidents"
        onSubmit={(e) => {
          e.preventDefault();
          if (status) apply({ status });
        }}
      >
        <span className="bulk-count" aria-live="polite">
          {n === 0 ? 'Select incidents to act on several at once.' : `${n} selected`}
        </span>
        <label>
          Set status
          <select value={status} onChange={(e) => setStatus(e.target.value)} disabled={n === 0 || busy}>
            <option value="">—</option>
            {STATUSES.filter((s) => s !== 'new').map((s) => (
              <option key={s} value={s}>
                {label(s)}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" disabled={n === 0 || busy || !status}>
          Apply to {n} selected
        </button>
      </form>
      <form
        className="actions"
        aria-label="Assign the selected incidents"
        onSubmit={(e) => {
          e.preventDefault();
          apply({ assignee: assignee.trim() || null });
        }}
      >
        <label>
          Assign to
          <input
            value={assignee}
            onChange={(e) => setAssignee(e.target.value)}
            placeholder="unassigned"
            disabled={n === 0 || busy}
          />
        </label>
        <button type="submit" disabled={n === 0 || busy}>
          Assign {n} selected
        </button>
      </form>
      {error !== null && <ErrorBox error={error} title="The selected incidents were not changed" />}
      {answer && (
        <div role="status" className={`notice ${answer.failed ? 'notice-warn' : 'notice-ok'}`}>
          <p className="notice-title">
            Updated {answer.updated} incident{answer.updated === 1 ? '' : 's'}
            {answer.failed ? `; ${answer.failed} refused` : ''}.
          </p>
          {answer.failed > 0 && (
            <ul>
              {answer.results
                .filter((r) => !r.ok)
                .map((r) => (
                  <li key={r.id}>
                    <span className="mono">{r.id}</span>: {r.error?.message ?? 'refused'}
                  </li>
                ))}
            </ul>
          )}
        </div>
      )}
    </div>
  );
}

function IncidentDetail({ id, onChanged, closeHref }: { id: string; onChanged(): void; closeHref: string }) {
  const { utc } = useSettings();
  const mayChange = useAccess().can('incidents.change');
  const detail = useApi<Obj>(`/api/v1/incidents/${encodeURIComponent(id)}`);
  const timeline = useApi<{ timeline?: Obj[] }>(`/api/v1/incidents/${encodeURIComponent(id)}/timeline`);
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
      timeline.reload();
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
      timeline.reload();
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
            <dt>Assignee</dt>
            <dd>{text(pick(inc, 'assignee', 'owner')) || 'unassigned'}</dd>
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
          {mayChange && (
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
          )}
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
          {mayChange && (
            <form onSubmit={addComment} className="comment-form">
              <label htmlFor="comment">Add a comment</label>
              <textarea id="comment" value={comment} onChange={(e) => setComment(e.target.value)} rows={3} />
              <button type="submit" disabled={busy || !comment.trim()}>
                Comment
              </button>
            </form>
          )}
          <h3>Timeline</h3>
          <Timeline state={timeline} utc={utc} />
        </>
      )}
    </article>
  );
}

const ACTION_TEXT: Record<string, (e: Obj) => string> = {
  created: () => 'opened the incident',
  status: (e) => `changed the status from ${label(text(e.from))} to ${label(text(e.to))}`,
  assignee: (e) => (e.to ? `assigned it to ${text(e.to)}` : 'unassigned it'),
  severity: (e) => `changed the severity from ${text(e.from)} to ${text(e.to)}`,
  tags: () => 'changed the tags',
  title: (e) => `renamed it to “${text(e.to)}”`,
  alert_linked: (e) => `linked alert ${text(e.to)}`,
  comment: () => 'commented',
};

/** The incident's audit trail, oldest first: who did what, and when. */
function Timeline({ state, utc }: { state: ReturnType<typeof useApi<{ timeline?: Obj[] }>>; utc: boolean }) {
  if (state.error instanceof ApiError && state.error.missingRoute) return <p className="muted">No timeline here.</p>;
  if (state.error !== null) return <ErrorBox error={state.error} onRetry={state.reload} />;
  const entries = state.data?.timeline;
  if (!entries) return state.loading ? <Loading label="Loading the timeline…" /> : null;
  if (entries.length === 0) return <p className="muted">Nothing has happened yet.</p>;
  return (
    <ol className="timeline" aria-label="Timeline">
      {entries.map((e, i) => (
        <li key={text(e.id) || i}>
          <span className="muted small nowrap">{formatTime(time(e.at), utc)}</span>{' '}
          <strong>{text(e.actor) || 'someone'}</strong>{' '}
          {(ACTION_TEXT[text(e.action)] ?? ((x: Obj) => text(x.action)))(e)}
        </li>
      ))}
    </ol>
  );
}
