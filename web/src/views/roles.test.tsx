import { cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import type { ReactNode } from 'react';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { AccessProvider, type Me, type Role, roleAllows } from '../auth/access.tsx';
import { serve } from '../lib/fake-server.ts';
import { AlertsView } from './alerts-view.tsx';
import { ClusterView } from './cluster-view.tsx';
import { IncidentsView } from './incidents-view.tsx';
import { RulesView } from './rules-view.tsx';
import { UsersView } from './users-view.tsx';

const as = (role: Role, ui: ReactNode) => {
  const me: Me = { name: `${role}-user`, role, tenants: ['default'], via: 'session' };
  return render(<AccessProvider me={me}>{ui}</AccessProvider>);
};
const loc = (path: string, search = '') => ({ path, params: new URLSearchParams(search) });

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe('what each role may do (as src/api/routes allows it)', () => {
  test.each([
    ['viewer', 'alerts.change', false],
    ['viewer', 'incidents.change', false],
    ['viewer', 'rules.change', false],
    ['viewer', 'cluster.admin', false],
    ['analyst', 'alerts.change', true],
    ['analyst', 'incidents.change', true],
    ['analyst', 'rules.change', true],
    ['analyst', 'cluster.admin', false],
    ['analyst', 'users.manage', false],
    ['admin', 'cluster.admin', true],
    ['admin', 'users.manage', true],
  ] as const)('%s: %s -> %s', (role, action, allowed) => {
    expect(roleAllows(role, action)).toBe(allowed);
  });
  test('a server without /auth/me leaves every decision to the server', () => {
    expect(roleAllows(undefined, 'cluster.admin')).toBe(true);
  });
});

const incident = {
  id: 'inc-1',
  title: 'Brute force on web-1',
  severity: 'high',
  status: 'new',
  assignee: null,
  alertCount: 3,
  createdAt: Date.UTC(2026, 0, 1),
};
const incident2 = { ...incident, id: 'inc-2', title: 'Port scan from 10.9.9.9', severity: 'low' };

describe('a viewer', () => {
  test('reads incidents, their timeline and comments, but is offered no change', async () => {
    serve({
      'GET /api/v1/incidents': [200, { incidents: [incident, incident2], total: 2 }],
      'GET /api/v1/incidents/inc-1': [200, { ...incident, alertIds: ['a1'], eventIds: [], comments: [] }],
      'GET /api/v1/incidents/inc-1/timeline': [
        200,
        {
          total: 2,
          timeline: [
            { id: 1, at: Date.UTC(2026, 0, 1), actor: 'vigil', action: 'created', from: null, to: null },
            { id: 2, at: Date.UTC(2026, 0, 2), actor: 'ann', action: 'status', from: 'new', to: 'in_progress' },
          ],
        },
      ],
    });
    as('viewer', <IncidentsView location={loc('/ui/incidents')} id="inc-1" />);
    await screen.findByRole('heading', { name: 'Brute force on web-1' });
    await screen.findByText(/changed the status from new to in progress/);
    expect(screen.queryByRole('checkbox')).toBeNull();
    expect(screen.queryByLabelText('Status', { selector: '.split-detail select' })).toBeNull();
    expect(screen.queryByLabelText('Add a comment')).toBeNull();
    expect(screen.queryByRole('button', { name: /selected/ })).toBeNull();
    expect(screen.getByRole('note').textContent).toMatch(/needs the analyst role; you are signed in as viewer-user/);
  });

  test('sees the rules but may not add, save or switch them', async () => {
    serve({
      'GET /api/v1/rules': [
        200,
        {
          version: 3,
          total: 1,
          rejected: [],
          rules: [
            {
              id: 'r1',
              title: 'Sudo to root',
              level: 'medium',
              status: 'stable',
              kind: 'rule',
              origin: 'api',
              enabled: true,
              file: 'r1.yml',
            },
          ],
        },
      ],
    });
    as('viewer', <RulesView />);
    const toggle = await screen.findByRole('switch', { name: 'Sudo to root enabled' });
    expect((toggle as HTMLButtonElement).disabled).toBe(true);
    expect(screen.queryByRole('link', { name: 'New rule' })).toBeNull();
  });

  test('opens an alert without acknowledge or close buttons', async () => {
    const alert = {
      id: 'al-1',
      timestamp: Date.UTC(2026, 0, 1),
      created: Date.UTC(2026, 0, 1),
      tenant: 'default',
      kind: 'rule',
      rule: { id: 'r1', title: 'Failed login', level: 'high', tags: [] },
      host: 'web-1',
      status: 'new',
      matched: { 'user.name': 'mallory' },
      eventIds: ['e1'],
    };
    serve({
      'GET /api/v1/alerts': [200, { total: 1, alerts: [alert] }],
      'GET /api/v1/alerts/al-1': [200, alert],
    });
    as('viewer', <AlertsView location={loc('/ui/alerts/al-1')} id="al-1" />);
    await screen.findByRole('heading', { name: 'Failed login' });
    expect(screen.queryByRole('button', { name: 'Acknowledge' })).toBeNull();
    expect(screen.queryByRole('button', { name: 'Close alert' })).toBeNull();
  });
});

describe('the cluster view by role', () => {
  test('a 403 from the server is one clear message, asked once, with no maintenance actions', async () => {
    const calls = serve({
      'GET /health/ready': [200, { status: 'ready', checks: { store: { ok: true } } }],
      'GET /admin/cluster/status': [
        403,
        { error: { code: 'forbidden', message: 'the cluster admin API needs the admin role' } },
      ],
    });
    as('analyst', <ClusterView />);
    const refusal = await screen.findByRole('alert');
    expect(refusal.textContent).toMatch(/Cluster status is for administrators/);
    expect(refusal.textContent).toMatch(/the cluster admin API needs the admin role/);
    expect(refusal.textContent).toMatch(/you are signed in as analyst-user \(analyst\)/);
    expect(screen.queryByRole('button', { name: /maintenance/i })).toBeNull();
    expect(calls.filter((c) => c.path.startsWith('/admin/')).map((c) => c.path)).toEqual(['/admin/cluster/status']);
  });

  test('an admin drains this node after confirming, then rejoins it', async () => {
    let state = 'active';
    const calls = serve({
      'GET /health/ready': [200, { status: 'ready', checks: {} }],
      'GET /admin/cluster/status': [200, { node_id: 'node-a', nodes: { total: 2, alive: 2 } }],
      'GET /admin/cluster/nodes': [200, { nodes: [{ id: 'node-a', state: 'Alive', maintenance: 'active' }] }],
      'GET /admin/maintenance/status': () => [200, { status: state, partitions_remaining: 0 }],
      'POST /admin/maintenance/enable': () => {
        state = 'draining';
        return [202, { status: state, partitions_remaining: 4 }];
      },
      'POST /admin/maintenance/disable': () => {
        state = 'active';
        return [200, { status: state, partitions_remaining: 0 }];
      },
    });
    as('admin', <ClusterView />);
    await screen.findByRole('heading', { name: 'Maintenance mode of node-a' });
    fireEvent.click(await screen.findByRole('button', { name: 'Enable maintenance…' }));
    const dialog = screen.getByRole('dialog', { hidden: true });
    expect(dialog.textContent).toMatch(/Node node-a will stop taking new work/);
    expect(calls.some((c) => c.method === 'POST')).toBe(false);
    fireEvent.click(within(dialog).getByRole('button', { name: 'Enable maintenance', hidden: true }));
    await screen.findByText('Maintenance enabled: the node is draining.');
    expect(screen.getByTestId('maintenance-state').textContent).toMatch(/^Draining/);
    expect(screen.queryByRole('button', { name: 'Enable maintenance…' })).toBeNull();

    fireEvent.click(screen.getByRole('button', { name: 'Disable maintenance…' }));
    fireEvent.click(within(dialog).getByRole('button', { name: 'Disable maintenance', hidden: true }));
    await screen.findByText('Maintenance disabled: the node rejoined the cluster.');
    await waitFor(() => expect(screen.getByTestId('maintenance-state').textContent).toMatch(/^Active/));
    expect(calls.filter((c) => c.method === 'POST').map((c) => c.path)).toEqual([
      '/admin/maintenance/enable',
      '/admin/maintenance/disable',
    ]);
  });

  test('cancelling the confirmation changes nothing', async () => {
    const calls = serve({
      'GET /health/ready': [200, { status: 'ready', checks: {} }],
      'GET /admin/cluster/status': [200, { node_id: 'node-a' }],
      'GET /admin/cluster/nodes': [200, { nodes: [] }],
      'GET /admin/maintenance/status': [200, { status: 'active', partitions_remaining: 2 }],
    });
    as('admin', <ClusterView />);
    fireEvent.click(await screen.findByRole('button', { name: 'Enable maintenance…' }));
    fireEvent.click(
      within(screen.getByRole('dialog', { hidden: true })).getByRole('button', { name: 'Cancel', hidden: true }),
    );
    expect(calls.some((c) => c.method === 'POST')).toBe(false);
  });
});

describe('incidents: sorting and bulk actions (analyst)', () => {
  test('the sort and severity filters are in the request', async () => {
    const calls = serve({ 'GET /api/v1/incidents': [200, { incidents: [incident], total: 1 }] });
    as('analyst', <IncidentsView location={loc('/ui/incidents', 'sort=-severity&severity=high')} />);
    await screen.findByRole('link', { name: 'Brute force on web-1' });
    expect(new URLSearchParams(calls[0].query).get('sort')).toBe('-severity');
    expect(new URLSearchParams(calls[0].query).get('severity')).toBe('high');
    expect((screen.getByLabelText('Sort') as HTMLSelectElement).value).toBe('-severity');
  });

  test('selected incidents change together, and refusals are listed', async () => {
    const calls = serve({
      'GET /api/v1/incidents': [200, { incidents: [incident, incident2], total: 2 }],
      'POST /api/v1/incidents/bulk': [
        200,
        {
          updated: 1,
          failed: 1,
          results: [
            { id: 'inc-1', ok: true },
            {
              id: 'inc-2',
              ok: false,
              error: { code: 'invalid_transition', message: 'resolved -> new is not allowed' },
            },
          ],
        },
      ],
    });
    as('analyst', <IncidentsView location={loc('/ui/incidents')} />);
    const apply = await screen.findByRole('button', { name: 'Apply to 0 selected' });
    expect((apply as HTMLButtonElement).disabled).toBe(true);
    fireEvent.click(screen.getByRole('checkbox', { name: 'Select all incidents shown' }));
    fireEvent.change(screen.getByLabelText('Set status'), { target: { value: 'resolved' } });
    fireEvent.click(screen.getByRole('button', { name: 'Apply to 2 selected' }));
    await screen.findByText('Updated 1 incident; 1 refused.');
    expect(screen.getByText(/resolved -> new is not allowed/)).toBeTruthy();
    const bulk = calls.find((c) => c.method === 'POST');
    expect(JSON.parse(bulk?.body ?? '{}')).toEqual({ ids: ['inc-1', 'inc-2'], status: 'resolved' });
    // The selection is cleared once applied.
    expect((screen.getByRole('checkbox', { name: 'Select Brute force on web-1' }) as HTMLInputElement).checked).toBe(
      false,
    );
  });
});

describe('users (admins)', () => {
  const vera = { id: 'u1', username: 'vera', role: 'viewer', tenants: ['default'], disabled: false, createdAt: 0 };

  test('an admin adds a user, changes a role and disables an account', async () => {
    const calls = serve({
      'GET /api/v1/users': [200, { total: 1, users: [vera] }],
      'POST /api/v1/users': [201, { ...vera, id: 'u2', username: 'ann', role: 'analyst' }],
      'PATCH /api/v1/users/u1': [200, vera],
    });
    as('admin', <UsersView />);
    await screen.findByRole('rowheader', { name: 'vera' });
    fireEvent.change(screen.getByLabelText('New username'), { target: { value: 'ann' } });
    fireEvent.change(screen.getByLabelText('Initial password'), { target: { value: 'a long password here' } });
    fireEvent.change(screen.getByLabelText('Role'), { target: { value: 'analyst' } });
    fireEvent.click(screen.getByRole('button', { name: 'Add user' }));
    await screen.findByText('Added ann as analyst.');
    expect(JSON.parse(calls.find((c) => c.method === 'POST')?.body ?? '')).toEqual({
      username: 'ann',
      password: 'a long password here',
      role: 'analyst',
    });
    fireEvent.change(screen.getByLabelText('Role of vera'), { target: { value: 'analyst' } });
    await screen.findByText('vera is now analyst.');
    fireEvent.click(screen.getByRole('button', { name: 'Disable vera' }));
    await screen.findByText('vera is disabled.');
    expect(calls.filter((c) => c.method === 'PATCH').map((c) => c.body)).toEqual([
      '{"role":"analyst"}',
      '{"disabled":true}',
    ]);
  });

  test('deleting asks first', async () => {
    const calls = serve({
      'GET /api/v1/users': [200, { total: 1, users: [vera] }],
      'DELETE /api/v1/users/u1': [200, { id: 'u1', deleted: true }],
    });
    as('admin', <UsersView />);
    fireEvent.click(await screen.findByRole('button', { name: 'Delete vera…' }));
    expect(calls.some((c) => c.method === 'DELETE')).toBe(false);
    const dialog = screen.getByRole('dialog', { hidden: true });
    fireEvent.click(within(dialog).getByRole('button', { name: 'Delete user', hidden: true }));
    await screen.findByText('Deleted vera.');
    expect(calls.some((c) => c.method === 'DELETE' && c.path === '/api/v1/users/u1')).toBe(true);
  });

  test('anyone else gets the server refusal, said plainly', async () => {
    serve({
      'GET /api/v1/users': [
        403,
        { error: { code: 'forbidden', message: 'this needs the admin role; vera acts as viewer' } },
      ],
    });
    as('viewer', <UsersView />);
    const refusal = await screen.findByRole('alert');
    expect(refusal.textContent).toMatch(/Users are managed by administrators/);
    expect(refusal.textContent).toMatch(/this needs the admin role; vera acts as viewer/);
    expect(screen.queryByRole('button', { name: 'Add user' })).toBeNull();
  });
});
