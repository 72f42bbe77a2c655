/**
 * Users (admins): the accounts of this server's tenants, a form to add one, and per user a role change,
 * disable/enable and delete (after a confirmation), against /api/v1/users (src/api/routes/users.ts). A
 * changed role or a disabled account ends that user's console sessions on the server. Others see the
 * server's refusal.
 */
import { type FormEvent, useEffect, useState } from 'react';
import { type Role, useAccess } from '../auth/access.tsx';
import { Badge, ConfirmDialog, Empty, ErrorBox, Loading, NotAvailable } from '../components/feedback.tsx';
import { ApiError, api } from '../lib/api.ts';
import { useSettings } from '../lib/settings.tsx';
import { formatTime } from '../lib/time.ts';
import { useApi } from '../lib/use-api.ts';

/** A user as GET /api/v1/users lists it. */
interface User {
  id: string;
  username: string;
  role: Role;
  tenants: string[];
  disabled: boolean;
  createdAt: number;
}

const ROLES: { value: Role; label: string }[] = [
  { value: 'viewer', label: 'viewer: reads everything, changes nothing' },
  { value: 'analyst', label: 'analyst: works alerts, incidents and rules' },
  { value: 'admin', label: 'admin: everything, users and cluster included' },
];

export function UsersView() {
  const { utc } = useSettings();
  const { me } = useAccess();
  const users = useApi<{ total: number; users: User[] }>('/api/v1/users');
  const [error, setError] = useState<unknown>(null);
  const [status, setStatus] = useState('');
  const [busy, setBusy] = useState(false);
  const [deleting, setDeleting] = useState<User | null>(null);
  useEffect(() => {
    document.title = 'Users · Vigil';
  }, []);

  const change = async (u: User, body: Record<string, unknown>, done: string) => {
    setBusy(true);
    setError(null);
    setStatus('');
    try {
      await api(`/api/v1/users/${encodeURIComponent(u.id)}`, { method: 'PATCH', body });
      setStatus(done);
      users.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const remove = async (u: User) => {
    setDeleting(null);
    setBusy(true);
    setError(null);
    try {
      await api(`/api/v1/users/${encodeURIComponent(u.id)}`, { method: 'DELETE' });
      setStatus(`Deleted ${u.username}.`);
      users.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const forbidden = users.error instanceof ApiError && users.error.status === 403;
  return (
    <section className="view users-view" aria-labelledby="users-heading">
      <div className="view-head">
        <h1 id="users-heading">Users</h1>
        {users.data && <p className="muted small">{users.data.total} users</p>}
      </div>
      {users.error instanceof ApiError && users.error.missingRoute ? (
        <NotAvailable feature="User management" />
      ) : forbidden ? (
        <div className="notice notice-error" role="alert">
          <p className="notice-title">Users are managed by administrators</p>
          <p>The server refused the list: {(users.error as ApiError).message}.</p>
          <p>
            You are signed in as {me?.name ?? 'this user'} ({me?.role ?? 'unknown role'}). Ask an administrator to add
            or change accounts.
          </p>
        </div>
      ) : (
        <>
          <NewUserForm
            onCreated={(u) => {
              setStatus(`Added ${u.username} as ${u.role}.`);
              users.reload();
            }}
          />
          {users.error !== null && <ErrorBox error={users.error} onRetry={users.reload} />}
          {error !== null && <ErrorBox error={error} title="The user was not changed" />}
          <p role="status" className="muted small">
            {status}
          </p>
          {!users.data && users.loading && <Loading label="Loading users…" />}
          {users.data && users.data.users.length === 0 && <Empty>No users yet: add one above.</Empty>}
          {users.data && users.data.users.length > 0 && (
            <div className="table-wrap">
              <table className="data-table users-table">
                <caption className="visually-hidden">Users</caption>
                <thead>
                  <tr>
                    <th scope="col">User</th>
                    <th scope="col">Role</th>
                    <th scope="col">Tenants</th>
                    <th scope="col">Added</th>
                    <th scope="col">Account</th>
                  </tr>
                </thead>
                <tbody>
                  {users.data.users.map((u) => {
                    const self = u.id === me?.userId;
                    return (
                      <tr key={u.id}>
                        <th scope="row">
                          {u.username}
                          {self && <span className="muted small"> (you)</span>}
                        </th>
                        <td>
                          <select
                            aria-label={`Role of ${u.username}`}
                            value={u.role}
                            disabled={busy || self}
                            title={self ? 'You cannot change your own role' : undefined}
                            onChange={(e) =>
                              change(u, { role: e.target.value }, `${u.username} is now ${e.target.value}.`)
                            }
                          >
                            {ROLES.map((r) => (
                              <option key={r.value} value={r.value}>
                                {r.value}
                              </option>
                            ))}
                          </select>
                        </td>
                        <td>{u.tenants.join(', ')}</td>
                        <td className="nowrap">{formatTime(u.createdAt, utc)}</td>
                        <td className="actions-cell">
                          {u.disabled ? <Badge kind="bad">disabled</Badge> : <Badge kind="ok">active</Badge>}{' '}
                          <button
                            type="button"
                            disabled={busy || self}
                            onClick={() =>
                              change(
                                u,
                                { disabled: !u.disabled },
                                `${u.username} is ${u.disabled ? 'enabled' : 'disabled'}.`,
                              )
                            }
                          >
                            {u.disabled ? `Enable ${u.username}` : `Disable ${u.username}`}
                          </button>{' '}
                          <button
                            type="button"
                            className="danger"
                            disabled={busy || self}
                            onClick={() => setDeleting(u)}
                          >
                            Delete {u.username}…
                          </button>
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
          <p className="muted small">
            Changing a role or disabling an account signs that user out of every console session.
          </p>
        </>
      )}
      <ConfirmDialog
        open={deleting !== null}
        title={`Delete ${deleting?.username ?? 'this user'}?`}
        confirmLabel="Delete user"
        danger
        onConfirm={() => deleting && remove(deleting)}
        onCancel={() => setDeleting(null)}
      >
        <p>The account, its sessions and its API keys are removed. The audit log keeps what it did.</p>
      </ConfirmDialog>
    </section>
  );
}

function NewUserForm({ onCreated }: { onCreated(u: User): void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState<Role>('viewer');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const u = await api<User>('/api/v1/users', {
        method: 'POST',
        body: { username: username.trim(), password, role },
      });
      setUsername('');
      setPassword('');
      onCreated(u);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="card new-user" onSubmit={submit} aria-labelledby="new-user-heading">
      <h2 id="new-user-heading">Add a user</h2>
      <div className="actions">
        <label>
          New username
          <input value={username} onChange={(e) => setUsername(e.target.value)} required autoComplete="off" />
        </label>
        <label>
          Initial password
          <input
            type="password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
            autoComplete="new-password"
          />
        </label>
        <label>
          Role
          {/* Named by aria-label: the label around it would add the long option text to its name. */}
          <select aria-label="Role" value={role} onChange={(e) => setRole(e.target.value as Role)}>
            {ROLES.map((r) => (
              <option key={r.value} value={r.value}>
                {r.label}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" className="primary" disabled={busy}>
          Add user
        </button>
      </div>
      {error !== null && <ErrorBox error={error} title="The user was not added" />}
    </form>
  );
}
