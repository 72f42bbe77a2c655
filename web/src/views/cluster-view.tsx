/**
 * Cluster: nodes, replica lag and partitions from /admin/cluster/status and /admin/cluster/nodes, and
 * maintenance mode of the node that serves the console (drain, then rejoin; the API acts on the node that
 * answers). A node without the cluster API is shown as a single node from /health/ready. The cluster
 * answers are drawn generically (scalars as facts, lists of objects as tables), so fields added later show
 * up without a console change. The cluster API is for admins: others see the server's refusal once.
 */
import { useEffect, useState } from 'react';
import { roleNote, useAccess } from '../auth/access.tsx';
import { Badge, ConfirmDialog, ErrorBox, Loading, NotAvailable } from '../components/feedback.tsx';
import { ApiError, api } from '../lib/api.ts';
import { useApi } from '../lib/use-api.ts';
import { SitesCard } from './sites-card.tsx';

const POLL_MS = 5000;

interface Ready {
  status: string;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

export function ClusterView() {
  const { can, me } = useAccess();
  const admin = can('cluster.admin');
  // Asked even without the admin role: the server's answer (a 403, or "no route" on a single node) is shown.
  const status = useApi<Record<string, unknown>>('/admin/cluster/status', { pollMs: POLL_MS });
  const nodes = useApi<unknown>(admin ? '/admin/cluster/nodes' : null, { pollMs: POLL_MS });
  const ready = useHealth();
  useEffect(() => {
    document.title = 'Cluster · Vigil';
  }, []);

  const missing = (e: unknown) => e instanceof ApiError && e.missingRoute;
  const forbidden = status.error instanceof ApiError && status.error.status === 403;
  const single = missing(status.error) && (!admin || missing(nodes.error));
  const nodeRows = nodes.data === undefined ? undefined : listOf(nodes.data, 'nodes');
  const nodeId = typeof status.data?.node_id === 'string' ? status.data.node_id : undefined;

  return (
    <section className="view cluster-view" aria-labelledby="cluster-heading">
      <div className="view-head">
        <h1 id="cluster-heading">Cluster</h1>
        {single && <Badge kind="info">single node</Badge>}
      </div>
      <BackupWarning ready={ready.data} />
      {single ? (
        <div className="notice notice-info" role="status">
          <p className="notice-title">Single node</p>
          <p>
            This Vigil node runs on its own: it has no cluster API (<code>/admin/cluster/status</code> answered “no
            route”). Its health is below.
          </p>
        </div>
      ) : forbidden ? (
        <div className="notice notice-error" role="alert">
          <p className="notice-title">Cluster status is for administrators</p>
          <p>The server refused it: {(status.error as ApiError).message}.</p>
          <p>{roleNote('cluster.admin', me)} Ask an administrator if you need it. This node’s health is below.</p>
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
            {status.data && <Generic value={withoutShards(status.data)} />}
          </div>
          {admin && <SitesCard pollMs={POLL_MS} />}
          {shardRows(status.data) && (
            <div className="card">
              <h2>Shards</h2>
              <ShardTable rows={shardRows(status.data)!} current={nodeId} />
            </div>
          )}
          <div className="card">
            <h2>Nodes</h2>
            {nodes.error !== null && !missing(nodes.error) && <ErrorBox error={nodes.error} onRetry={nodes.reload} />}
            {missing(nodes.error) && <NotAvailable feature="The node list" />}
            {!nodes.data && nodes.loading && <Loading />}
            {nodeRows && <ObjectTable rows={nodeRows} label="Nodes" current={nodeId} />}
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
      {!single && !forbidden && admin && (
        <Maintenance
          nodeId={nodeId}
          onChanged={() => {
            status.reload();
            nodes.reload();
          }}
        />
      )}
      {single && (
        <div className="card">
          <h2>Maintenance mode</h2>
          <NotAvailable feature="Maintenance mode">
            <p>It drains a node of a cluster (cluster.enabled); a single node has nothing to hand its work to.</p>
          </NotAvailable>
        </div>
      )}
    </section>
  );
}

interface ShardRow {
  shard: number;
  replicas: { node: string; state: string; lag_messages: number }[];
}

/** The `shards` section of the status when the events are sharded (null or absent otherwise). */
function shardRows(status: Record<string, unknown> | undefined): ShardRow[] | undefined {
  const v = status?.shards;
  if (!Array.isArray(v)) return undefined;
  const ok = v.every(
    (a) => a !== null && typeof a === 'object' && typeof a.shard === 'number' && Array.isArray(a.replicas),
  );
  return ok ? (v as ShardRow[]) : undefined;
}

/** The status without the shard map, which has a card of its own. */
function withoutShards(status: Record<string, unknown>): Record<string, unknown> {
  if (!shardRows(status)) return status;
  const { shards: _shards, ...rest } = status;
  return rest;
}

const REPLICA_BADGE: Record<string, string> = { serving: 'ok', catching_up: 'warn', draining: 'info' };

/** One row per shard, one cell per replica: node, state and lag; this node's replicas are marked. */
function ShardTable({ rows, current }: { rows: ShardRow[]; current?: string }) {
  const width = Math.max(1, ...rows.map((r) => r.replicas.length));
  return (
    <div className="table-wrap">
      <table className="data-table">
        <caption className="visually-hidden">Shards and their replicas</caption>
        <thead>
          <tr>
            <th scope="col">shard</th>
            {Array.from({ length: width }, (_, i) => (
              <th key={`replica-${i + 1}`} scope="col">
                replica {i + 1}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={r.shard}>
              <td className="num">{r.shard}</td>
              {Array.from({ length: width }, (_, i) => {
                const x = r.replicas[i];
                if (!x) return <td key={`${r.shard}-${i}`}>—</td>;
                return (
                  <td
                    key={`${r.shard}-${x.node}`}
                    className={x.node === current ? 'current' : undefined}
                    aria-current={x.node === current ? 'true' : undefined}
                  >
                    {x.node} <Badge kind={REPLICA_BADGE[x.state] ?? 'info'}>{x.state.replace('_', ' ')}</Badge>{' '}
                    <span className="muted">lag {x.lag_messages}</span>
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/**
 * The backup component's warning from /health/ready: the last good backup is older than twice
 * backup.schedule, or the last backup failed. The server decides (the same condition readiness reports);
 * the console only shows it, prominently, since readiness stays true.
 */
function BackupWarning({ ready }: { ready?: Ready }) {
  const detail = ready?.checks.backup?.detail;
  if (!detail?.startsWith('warning:')) return null;
  const overdue = /older than twice the schedule/.test(detail);
  return (
    <div className="notice notice-warn" role="alert" data-testid="backup-warning">
      <p className="notice-title">{overdue ? 'Backups are overdue' : 'The last backup failed'}</p>
      <p>{detail.replace(/^warning:\s*/, '')}.</p>
      <p>
        Take one with <code>vigil backup create</code>, and check this node's log and{' '}
        <code>vigil_backup_failures_total</code>.
      </p>
    </div>
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

type MaintenanceStatus = { status?: string; partitions_remaining?: number } & Record<string, unknown>;

const STATE_TEXT: Record<string, string> = {
  active: 'Active: this node takes work and owns partitions.',
  draining: 'Draining: this node takes no new work and is handing its partitions over.',
  drained: 'Drained: this node owns no partition and takes no work. It can be restarted or upgraded safely.',
};

/** Drain (enable maintenance) and rejoin (disable) the node serving the console, each after a confirmation. */
function Maintenance({ nodeId, onChanged }: { nodeId?: string; onChanged(): void }) {
  const current = useApi<MaintenanceStatus>('/admin/maintenance/status', { pollMs: POLL_MS });
  const [confirm, setConfirm] = useState<'enable' | 'disable' | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState('');
  const [busy, setBusy] = useState(false);
  const state = current.data?.status;
  const act = async (what: 'enable' | 'disable') => {
    setConfirm(null);
    setBusy(true);
    setError(null);
    setDone('');
    try {
      const answer = await api<MaintenanceStatus>(`/admin/maintenance/${what}`, { method: 'POST', body: {} });
      current.setData(answer);
      setDone(
        what === 'enable'
          ? `Maintenance enabled: the node is ${answer.status ?? 'draining'}.`
          : 'Maintenance disabled: the node rejoined the cluster.',
      );
      onChanged();
      current.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const node = nodeId ? `node ${nodeId}` : 'this node';
  return (
    <div className="card maintenance">
      <h2>Maintenance mode{nodeId ? ` of ${nodeId}` : ''}</h2>
      <p className="muted">
        In maintenance, the node serving this console ({node}) hands its partitions to the others and stops taking new
        work, so it can be restarted or upgraded safely. Other nodes are put in maintenance from their own console.
      </p>
      {current.error !== null && <ErrorBox error={current.error} onRetry={current.reload} />}
      {!current.data && current.loading && <Loading />}
      {current.data && (
        <div className="maintenance-now">
          <p>
            <Badge kind={state === 'active' ? 'ok' : state === 'drained' ? 'bad' : 'warn'}>{state ?? 'unknown'}</Badge>{' '}
            <span data-testid="maintenance-state">{STATE_TEXT[state ?? ''] ?? ''}</span>
          </p>
          <Generic value={current.data} />
        </div>
      )}
      <div className="actions">
        {(state === undefined || state === 'active') && (
          <button type="button" className="danger" onClick={() => setConfirm('enable')} disabled={busy}>
            Enable maintenance…
          </button>
        )}
        {(state === undefined || state !== 'active') && (
          <button type="button" className="primary" onClick={() => setConfirm('disable')} disabled={busy}>
            Disable maintenance…
          </button>
        )}
      </div>
      {error !== null && <ErrorBox error={error} title="Maintenance mode was not changed" />}
      <p role="status" className="muted small">
        {done}
      </p>
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
            ? `${node[0].toUpperCase()}${node.slice(1)} will stop taking new work and hand over its partitions until maintenance is disabled.`
            : `${node[0].toUpperCase()}${node.slice(1)} will take work and partitions again.`}
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

/** `current`: the id of the row to mark as this node. */
function ObjectTable({ rows, label, current }: { rows: Record<string, unknown>[]; label: string; current?: string }) {
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
            <tr
              key={i}
              className={current !== undefined && r.id === current ? 'current' : undefined}
              aria-current={current !== undefined && r.id === current ? 'true' : undefined}
            >
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
