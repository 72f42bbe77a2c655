/**
 * Cluster: nodes, replica lag and partitions from /admin/cluster/status and /admin/cluster/nodes, and
 * maintenance mode. A node without the cluster API is shown as a single node from /health/ready. The
 * cluster answers are drawn generically (scalars as facts, lists of objects as tables), so fields added
 * later show up without a console change.
 */
import { useEffect, useState } from 'react';
import { Badge, ConfirmDialog, ErrorBox, Loading, NotAvailable } from '../components/feedback.tsx';
import { ApiError, api } from '../lib/api.ts';
import { useApi } from '../lib/use-api.ts';

const POLL_MS = 5000;

interface Ready {
  status: string;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

export function ClusterView() {
  const status = useApi<Record<string, unknown>>('/admin/cluster/status', { pollMs: POLL_MS });
  const nodes = useApi<unknown>('/admin/cluster/nodes', { pollMs: POLL_MS });
  const ready = useHealth();
  useEffect(() => {
    document.title = 'Cluster · Vigil';
  }, []);

  const missing = (e: unknown) => e instanceof ApiError && e.missingRoute;
  const single = missing(status.error) && missing(nodes.error);
  const nodeRows = nodes.data === undefined ? undefined : listOf(nodes.data, 'nodes');

  return (
    <section className="view cluster-view" aria-labelledby="cluster-heading">
      <div className="view-head">
        <h1 id="cluster-heading">Cluster</h1>
        {single && <Badge kind="info">single node</Badge>}
      </div>
      {single ? (
        <div className="notice notice-info" role="status">
          <p className="notice-title">Single node</p>
          <p>
            This Vigil node runs on its own: it has no cluster API (<code>/admin/cluster/status</code> answered “no
            route”). Its health is below.
          </p>
        </div>
      ) : (
        <>
          <div className="card">
            <h2>Status</h2>
            {status.error !== null && !missing(status.error) && (
              <ErrorBox error={status.error} onRetry={status.reload} />
            )}
            {missing(status.error) && <NotAvailable feature="Cluster status" />}
            {!status.data && status.loading && <Loading />}
            {status.data && <Generic value={status.data} />}
          </div>
          <div className="card">
            <h2>Nodes</h2>
            {nodes.error !== null && !missing(nodes.error) && <ErrorBox error={nodes.error} onRetry={nodes.reload} />}
            {missing(nodes.error) && <NotAvailable feature="The node list" />}
            {!nodes.data && nodes.loading && <Loading />}
            {nodeRows && <ObjectTable rows={nodeRows} label="Nodes" />}
            {nodes.data !== undefined && !nodeRows && <Generic value={nodes.data} />}
          </div>
        </>
      )}
      <div className="card">
        <h2>This node</h2>
        {ready.error !== null && <ErrorBox error={ready.error} />}
        {ready.data && (
          <>
            <p>
              <Badge kind={ready.data.status === 'ready' ? 'ok' : 'bad'}>{ready.data.status.replace('_', ' ')}</Badge>
            </p>
            <table className="data-table">
              <thead>
                <tr>
                  <th scope="col">Component</th>
                  <th scope="col">Health</th>
                  <th scope="col">Detail</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(ready.data.checks).map(([name, c]) => (
                  <tr key={name}>
                    <td>{name}</td>
                    <td>
                      <Badge kind={c.ok ? 'ok' : 'bad'}>{c.ok ? 'healthy' : 'failing'}</Badge>
                    </td>
                    <td>{c.detail ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </div>
      <Maintenance onChanged={status.reload} />
    </section>
  );
}

/** /health/ready answers 503 with the same body when a component is down: both are data here. */
function useHealth() {
  const [data, setData] = useState<Ready>();
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let stop = false;
    const load = async () => {
      try {
        const res = await fetch('/health/ready');
        const body = (await res.json()) as Ready;
        if (!stop) {
          setData(body);
          setError(null);
        }
      } catch (err) {
        if (!stop) setError(new ApiError(0, 'network', `the health check failed: ${(err as Error).message}`));
      }
    };
    load();
    const timer = setInterval(load, POLL_MS);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, []);
  return { data, error };
}

function Maintenance({ onChanged }: { onChanged(): void }) {
  const current = useApi<Record<string, unknown>>('/admin/maintenance/status', { pollMs: POLL_MS });
  const [confirm, setConfirm] = useState<'enable' | 'disable' | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [result, setResult] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const act = async (what: 'enable' | 'disable') => {
    setConfirm(null);
    setBusy(true);
    setError(null);
    try {
      setResult(await api(`/admin/maintenance/${what}`, { method: 'POST', body: {} }));
      onChanged();
      current.reload();
    } catch (err) {
      setError(err);
      setResult(undefined);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="card">
      <h2>Maintenance mode</h2>
      <p className="muted">
        In maintenance, this node hands its partitions to the others and stops taking new work, so it can be restarted
        or upgraded safely.
      </p>
      {current.data && (
        <div className="maintenance-now">
          <h3>Now</h3>
          <Generic value={current.data} />
        </div>
      )}
      <div className="actions">
        <button type="button" onClick={() => setConfirm('enable')} disabled={busy}>
          Enable maintenance…
        </button>
        <button type="button" onClick={() => setConfirm('disable')} disabled={busy}>
          Disable maintenance…
        </button>
      </div>
      {error instanceof ApiError && error.missingRoute ? (
        <NotAvailable feature="Maintenance mode" />
      ) : error !== null ? (
        <ErrorBox error={error} title="Maintenance mode was not changed" />
      ) : null}
      {result !== undefined && (
        <div role="status" className="notice notice-ok">
          <p className="notice-title">Done.</p>
          {result !== '' && <Generic value={result} />}
        </div>
      )}
      <ConfirmDialog
        open={confirm !== null}
        title={confirm === 'enable' ? 'Enable maintenance mode?' : 'Disable maintenance mode?'}
        confirmLabel={confirm === 'enable' ? 'Enable maintenance' : 'Disable maintenance'}
        danger={confirm === 'enable'}
        onConfirm={() => confirm && act(confirm)}
        onCancel={() => setConfirm(null)}
      >
        <p>
          {confirm === 'enable'
            ? 'This node will stop taking new work and hand over its partitions until maintenance is disabled.'
            : 'This node will take work and partitions again.'}
        </p>
      </ConfirmDialog>
    </div>
  );
}

/** A list of objects, found as the value itself or under `key`. */
function listOf(value: unknown, key: string): Record<string, unknown>[] | undefined {
  const v = Array.isArray(value) ? value : (value as Record<string, unknown>)?.[key];
  if (Array.isArray(v) && v.every((x) => x !== null && typeof x === 'object' && !Array.isArray(x))) {
    return v as Record<string, unknown>[];
  }
  return undefined;
}

const cell = (v: unknown) =>
  v === null || v === undefined ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v);

function ObjectTable({ rows, label }: { rows: Record<string, unknown>[]; label: string }) {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  if (rows.length === 0) return <p className="muted">None.</p>;
  return (
    <div className="table-wrap">
      <table className="data-table">
        <caption className="visually-hidden">{label}</caption>
        <thead>
          <tr>
            {cols.map((c) => (
              <th key={c} scope="col">
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={i}>
              {cols.map((c) => (
                <td key={c} className={/lag/i.test(c) ? 'num emphasis' : typeof r[c] === 'number' ? 'num' : undefined}>
                  {cell(r[c])}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Scalars as a definition list, lists of objects as tables, nested objects as sections. */
function Generic({ value }: { value: unknown }) {
  if (value === null || typeof value !== 'object') return <p>{cell(value)}</p>;
  if (Array.isArray(value)) {
    const rows = listOf(value, '');
    return rows ? <ObjectTable rows={rows} label="items" /> : <p>{cell(value)}</p>;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  const scalars = entries.filter(
    ([, v]) => v === null || typeof v !== 'object' || (Array.isArray(v) && !listOf(v, '')),
  );
  const tables = entries.filter(([, v]) => Array.isArray(v) && listOf(v, ''));
  const nested = entries.filter(([, v]) => v !== null && typeof v === 'object' && !Array.isArray(v));
  return (
    <>
      {scalars.length > 0 && (
        <dl className="facts">
          {scalars.map(([k, v]) => (
            <div key={k} className="fact">
              <dt>{k}</dt>
              <dd className={/lag/i.test(k) ? 'emphasis' : undefined}>{cell(v)}</dd>
            </div>
          ))}
        </dl>
      )}
      {tables.map(([k, v]) => (
        <section key={k}>
          <h3>{k}</h3>
          <ObjectTable rows={v as Record<string, unknown>[]} label={k} />
        </section>
      ))}
      {nested.map(([k, v]) => (
        <section key={k}>
          <h3>{k}</h3>
          <Generic value={v} />
        </section>
      ))}
    </>
  );
}
