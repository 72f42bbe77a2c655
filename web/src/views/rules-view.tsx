/**
 * Rules: the running rule set (status, enabled, kind, origin), the rules the server refused, and an
 * editor for Sigma YAML with the server's validation messages, enable/disable, delete, and a test of the
 * rule against stored events of a time range (retro-hunt, nothing stored).
 */
import { useEffect, useId, useState } from 'react';
import { ReadOnlyNote, roleNote, useAccess } from '../auth/access.tsx';
import { CodeEditor, problemLines } from '../components/code-editor.tsx';
import { Badge, ConfirmDialog, Empty, ErrorBox, Loading, NotAvailable } from '../components/feedback.tsx';
import { ApiError, api } from '../lib/api.ts';
import { quoteValue } from '../lib/query.ts';
import { Link, navigate } from '../lib/router.tsx';
import { useSettings } from '../lib/settings.tsx';
import { formatTime, RELATIVE_RANGES } from '../lib/time.ts';
import { useApi } from '../lib/use-api.ts';
import { searchHref } from './search-view.tsx';

/** A rule as GET /api/v1/rules lists it. */
export interface RuleInfo {
  id: string;
  title: string;
  level: string;
  status: string;
  kind: 'rule' | 'correlation' | 'filter';
  origin: 'folder' | 'api';
  enabled: boolean;
  file: string;
}

interface RuleList {
  version: number;
  total: number;
  rules: RuleInfo[];
  rejected: { file?: string; line?: number; reason: string; id?: string; title?: string }[];
}

const TEMPLATE = `title: A new rule
id: my-new-rule
status: experimental
level: medium
description: What this rule detects and why it matters.
logsource:
  product: linux
  service: sshd
detection:
  selection:
    event.outcome: failure
  condition: selection
`;

/** The list, or the editor of one rule (`id`; "new" for a new one). */
export function RulesView({ id }: { id?: string }) {
  const { can } = useAccess();
  const rules = useApi<RuleList>('/api/v1/rules');
  useEffect(() => {
    document.title = 'Rules · Vigil';
  }, []);
  if (rules.error instanceof ApiError && rules.error.missingRoute) {
    return (
      <section className="view" aria-labelledby="rules-heading">
        <h1 id="rules-heading">Rules</h1>
        <NotAvailable feature="Rule management">
          <p>Rules are managed by the detect role; this node does not run it.</p>
        </NotAvailable>
      </section>
    );
  }
  if (id) return <RuleEditor id={id} list={rules.data} reloadList={rules.reload} />;
  return (
    <section className="view rules-view" aria-labelledby="rules-heading">
      <div className="view-head">
        <h1 id="rules-heading">Rules</h1>
        {rules.data && (
          <p className="muted small">
            {rules.data.total} rules · rule set version {rules.data.version}
          </p>
        )}
        {can('rules.change') && (
          <Link href="/ui/rules/new" className="button primary">
            New rule
          </Link>
        )}
      </div>
      <ReadOnlyNote action="rules.change" what="adding, editing and switching rules" />
      {rules.error !== null && <ErrorBox error={rules.error} onRetry={rules.reload} />}
      {!rules.data && rules.loading && <Loading label="Loading rules…" />}
      {rules.data && rules.data.rejected.length > 0 && (
        <details className="notice notice-warn">
          <summary>
            {rules.data.rejected.length} rule file{rules.data.rejected.length === 1 ? ' was' : 's were'} refused and
            {rules.data.rejected.length === 1 ? ' is' : ' are'} not running
          </summary>
          <ul>
            {rules.data.rejected.map((r, i) => (
              <li key={i}>
                <span className="mono">
                  {r.file ?? r.id ?? 'rule'}
                  {r.line ? `:${r.line}` : ''}
                </span>
                : {r.reason}
              </li>
            ))}
          </ul>
        </details>
      )}
      {rules.data && rules.data.rules.length === 0 && (
        <Empty>No rules yet. Add one with “New rule”, or configure detect.rules_dirs.</Empty>
      )}
      {rules.data && rules.data.rules.length > 0 && <RuleTable rules={rules.data.rules} onChanged={rules.reload} />}
    </section>
  );
}

function RuleTable({ rules, onChanged }: { rules: RuleInfo[]; onChanged(): void }) {
  const [error, setError] = useState<unknown>(null);
  const [filter, setFilter] = useState('');
  const f = filter.trim().toLowerCase();
  const shown = f
    ? rules.filter((r) => [r.title, r.id, r.level, r.kind, r.origin, r.status].some((v) => v.toLowerCase().includes(f)))
    : rules;
  return (
    <>
      <label className="inline-label">
        Filter
        <input
          type="search"
          value={filter}
          onChange={(e) => setFilter(e.target.value)}
          placeholder="title, id, level…"
        />
      </label>
      {error !== null && <ErrorBox error={error} title="The rule was not changed" />}
      <div className="table-wrap">
        <table className="data-table">
          <thead>
            <tr>
              <th scope="col">Rule</th>
              <th scope="col">Level</th>
              <th scope="col">Kind</th>
              <th scope="col">Status</th>
              <th scope="col">Origin</th>
              <th scope="col">Enabled</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((r) => (
              <tr key={`${r.origin}:${r.id}`}>
                <td>
                  <Link href={`/ui/rules/${encodeURIComponent(r.id)}`}>{r.title}</Link>
                  <div className="muted small mono">{r.id}</div>
                </td>
                <td>
                  <Badge kind={r.level}>{r.level}</Badge>
                </td>
                <td>{r.kind}</td>
                <td>{r.status || '—'}</td>
                <td>{r.origin === 'api' ? 'API' : 'folder (read-only)'}</td>
                <td>
                  <EnabledSwitch rule={r} onChanged={onChanged} onError={setError} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

function EnabledSwitch({
  rule,
  onChanged,
  onError,
  verbose,
}: {
  rule: RuleInfo;
  onChanged(): void;
  onError(e: unknown): void;
  /** "Enabled"/"Disabled" instead of "On"/"Off" (outside the table's Enabled column). */
  verbose?: boolean;
}) {
  const { can, me } = useAccess();
  const allowed = can('rules.change');
  const [busy, setBusy] = useState(false);
  const [on, setOn] = useState(rule.enabled);
  useEffect(() => setOn(rule.enabled), [rule.enabled]);
  const flip = async () => {
    setBusy(true);
    onError(null);
    try {
      await api(`/api/v1/rules/${encodeURIComponent(rule.id)}`, { method: 'PATCH', body: { enabled: !on } });
      setOn(!on);
      onChanged();
    } catch (err) {
      onError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <button
      type="button"
      role="switch"
      aria-checked={on}
      aria-label={`${rule.title} enabled`}
      className="switch"
      disabled={busy || !allowed}
      title={allowed ? undefined : roleNote('rules.change', me)}
      onClick={flip}
    >
      <span className="switch-track" aria-hidden="true">
        <span className="switch-thumb" />
      </span>
      <span className="switch-text">{verbose ? (on ? 'Enabled' : 'Disabled') : on ? 'On' : 'Off'}</span>
    </button>
  );
}

function RuleEditor({ id, list, reloadList }: { id: string; list?: RuleList; reloadList(): void }) {
  const { can } = useAccess();
  const mayEdit = can('rules.change');
  const isNew = id === 'new';
  const info = list?.rules.find((r) => r.id === id);
  const source = useApi<string>(isNew ? null : `/api/v1/rules/${encodeURIComponent(id)}`);
  const [text, setText] = useState(isNew ? TEMPLATE : '');
  const [saved, setSaved] = useState<string | null>(isNew ? '' : null);
  const [problems, setProblems] = useState<string[]>([]);
  const [saveError, setSaveError] = useState<unknown>(null);
  const [status, setStatus] = useState('');
  const [busy, setBusy] = useState(false);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const problemsId = useId();

  useEffect(() => {
    if (typeof source.data === 'string') {
      setText(source.data);
      setSaved(source.data);
    }
  }, [source.data]);

  const readOnly = !isNew && info?.origin === 'folder';
  const dirty = saved !== null && text !== saved;

  const save = async () => {
    setBusy(true);
    setProblems([]);
    setSaveError(null);
    setStatus('');
    try {
      const create = isNew || readOnly;
      const answer = await api<{ id: string; title: string; version: number }>(
        create ? '/api/v1/rules' : `/api/v1/rules/${encodeURIComponent(id)}`,
        { method: create ? 'POST' : 'PUT', body: text, contentType: 'application/yaml' },
      );
      setSaved(text);
      setStatus(`Saved “${answer.title}”; the rule set is now version ${answer.version}.`);
      reloadList();
      if (answer.id !== id) navigate(`/ui/rules/${encodeURIComponent(answer.id)}`, { replace: isNew });
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) {
        const list = Array.isArray(err.details?.problems)
          ? (err.details.problems as string[])
          : err.message.split('; ');
        setProblems(list);
      } else setSaveError(err);
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    setConfirmDelete(false);
    setBusy(true);
    try {
      await api(`/api/v1/rules/${encodeURIComponent(id)}`, { method: 'DELETE' });
      reloadList();
      navigate('/ui/rules');
    } catch (err) {
      setSaveError(err);
    } finally {
      setBusy(false);
    }
  };

  const lines = problemLines(problems);

  return (
    <section className="view rule-editor" aria-labelledby="rule-heading">
      <div className="view-head">
        <Link href="/ui/rules" className="link-button">
          ← All rules
        </Link>
        <h1 id="rule-heading">{isNew ? 'New rule' : (info?.title ?? id)}</h1>
        {info && (
          <p className="muted small">
            <Badge kind={info.level}>{info.level}</Badge> {info.kind} · {info.status || 'no status'} ·{' '}
            {info.origin === 'api' ? 'managed by the API' : `from ${info.file}`} ·{' '}
            {info.enabled ? 'enabled' : 'disabled'}
          </p>
        )}
      </div>
      {source.error !== null && <ErrorBox error={source.error} onRetry={source.reload} />}
      {!isNew && !source.data && source.loading && <Loading label="Loading the rule…" />}
      {(isNew || typeof source.data === 'string') && (
        <div className="editor-layout">
          <div className="editor-main">
            <ReadOnlyNote action="rules.change" what="saving, deleting and switching rules" />
            {readOnly && mayEdit && (
              <p className="notice notice-info">
                This rule comes from a configured folder and is read-only here: disable it, or change its{' '}
                <code>id</code> and save a copy as a new API rule.
              </p>
            )}
            <CodeEditor
              value={text}
              onChange={setText}
              label="Sigma rule (YAML)"
              readOnly={!mayEdit}
              problems={lines}
              describedBy={problems.length ? problemsId : undefined}
            />
            {problems.length > 0 && (
              <div className="notice notice-error" id={problemsId} role="alert">
                <p className="notice-title">The server refused this rule</p>
                <ul>
                  {problems.map((p) => (
                    <li key={p}>{p}</li>
                  ))}
                </ul>
                <p>Fix the marked lines and save again.</p>
              </div>
            )}
            {saveError !== null && <ErrorBox error={saveError} title="The rule was not saved" />}
            <div className="actions">
              {mayEdit && (
                <button type="button" className="primary" onClick={save} disabled={busy || (!dirty && !isNew)}>
                  {busy ? 'Saving…' : isNew || readOnly ? 'Save as new rule' : 'Save'}
                </button>
              )}
              {mayEdit && !isNew && info?.origin === 'api' && (
                <button type="button" className="danger" onClick={() => setConfirmDelete(true)} disabled={busy}>
                  Delete
                </button>
              )}
              {!isNew && info && <EnabledSwitch rule={info} onChanged={reloadList} onError={setSaveError} verbose />}
              <span role="status" className="muted small">
                {status || (dirty ? 'Unsaved changes.' : '')}
              </span>
            </div>
          </div>
          <HuntPanel yaml={text} />
        </div>
      )}
      <ConfirmDialog
        open={confirmDelete}
        title="Delete this rule?"
        confirmLabel="Delete rule"
        danger
        onConfirm={remove}
        onCancel={() => setConfirmDelete(false)}
      >
        <p>
          The rule <span className="mono">{id}</span> stops running at once and its file is removed. Alerts it raised
          stay.
        </p>
      </ConfirmDialog>
    </section>
  );
}

interface HuntAnswer {
  scanned: number;
  truncated: boolean;
  total: number;
  took_ms: number;
  matches: { matched?: Record<string, unknown>; host?: string; event: Record<string, unknown> }[];
}

/** "Test against a time range": runs the YAML in the editor over stored events (POST /api/v1/hunt). */
function HuntPanel({ yaml }: { yaml: string }) {
  const { utc } = useSettings();
  const [from, setFrom] = useState('now-24h');
  const [answer, setAnswer] = useState<HuntAnswer | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const run = async () => {
    setBusy(true);
    setError(null);
    setAnswer(null);
    try {
      setAnswer(
        await api<HuntAnswer>('/api/v1/hunt', { method: 'POST', body: { rule: yaml, from, to: 'now', limit: 200 } }),
      );
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <aside className="card hunt-panel" aria-labelledby="hunt-heading">
      <h2 id="hunt-heading">Test against stored events</h2>
      <p className="muted small">
        Runs the rule as edited (unsaved changes included) over a time range. Nothing is stored.
      </p>
      <div className="actions">
        <label>
          Range
          <select value={from} onChange={(e) => setFrom(e.target.value)}>
            {RELATIVE_RANGES.map((r) => (
              <option key={r.from} value={r.from}>
                {r.label}
              </option>
            ))}
          </select>
        </label>
        <button type="button" onClick={run} disabled={busy}>
          {busy ? 'Testing…' : 'Run test'}
        </button>
      </div>
      {error instanceof ApiError && error.missingRoute ? (
        <NotAvailable feature="Retro-hunting" />
      ) : error !== null ? (
        <ErrorBox error={error} title="The test did not run" />
      ) : null}
      {answer && (
        <div role="status">
          <p>
            <strong>{answer.total.toLocaleString()}</strong> match{answer.total === 1 ? '' : 'es'} in{' '}
            {answer.scanned.toLocaleString()} events scanned ({answer.took_ms} ms)
            {answer.truncated && '; the scan stopped at its limit, narrow the range'}.
          </p>
          {answer.matches.length > 0 && (
            <ul className="hunt-matches">
              {answer.matches.slice(0, 50).map((m, i) => {
                const eid = String(m.event['event.id'] ?? '');
                const ts = Date.parse(String(m.event['@timestamp']));
                return (
                  <li key={`${eid}-${i}`}>
                    <span className="mono small">{formatTime(ts, utc)}</span>{' '}
                    {String(m.event['host.name'] ?? m.host ?? '')}{' '}
                    <Link
                      href={searchHref(`event.id:${quoteValue(eid)}`, {
                        from: new Date(ts - 60e3).toISOString(),
                        to: new Date(ts + 60e3).toISOString(),
                      })}
                    >
                      event
                    </Link>
                    <div className="muted small clip">{String(m.event.message ?? m.event['event.original'] ?? '')}</div>
                  </li>
                );
              })}
            </ul>
          )}
        </div>
      )}
    </aside>
  );
}
