import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { serve } from '../lib/fake-server.ts';
import { ClusterView } from './cluster-view.tsx';
import { IncidentsView } from './incidents-view.tsx';

const location = (search = '') => ({ path: '/ui/incidents', params: new URLSearchParams(search) });

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe('cluster view', () => {
  test('without the cluster API it shows a single node from /health/ready', async () => {
    serve({ 'GET /health/ready': [200, { status: 'ready', checks: { store: { ok: true }, api: { ok: true } } }] });
    render(<ClusterView />);
    await screen.findByText('Single node');
    await screen.findByRole('cell', { name: 'store' });
  });

  test('with the cluster API it shows status, partitions and nodes', async () => {
    serve({
      'GET /health/ready': [200, { status: 'ready', checks: {} }],
      'GET /admin/cluster/status': [
        200,
        {
          node_id: 'node-a',
          etcd: { connected: true, lease_remaining_ms: 9000 },
          nodes: { total: 2, alive: 2, suspect: 0, dead: 0 },
          partitions: { count: 2, owned_here: 1, owners: [{ partition: 0, node: 'node-a', fencing_token: 3 }] },
          replicas: { lag_events: 12 },
        },
      ],
      'GET /admin/cluster/nodes': [
        200,
        {
          nodes: [
            { id: 'node-a', state: 'Alive' },
            { id: 'node-b', state: 'Alive' },
          ],
        },
      ],
      'GET /admin/maintenance/status': [200, { status: 'off' }],
    });
    render(<ClusterView />);
    await screen.findByText('node-a', { selector: 'dd' });
    expect(screen.queryByText('Single node')).toBeNull();
    await screen.findByRole('cell', { name: 'node-b' });
    expect(screen.getByText('lag_events').nextElementSibling?.textContent).toBe('12');
    expect(screen.getByRole('columnheader', { name: 'fencing_token' })).toBeTruthy();
  });
});

describe('cluster view with shards', () => {
  test('the shard map is a table of its own: each replica with its node, state and lag', async () => {
    serve({
      'GET /health/ready': [200, { status: 'ready', checks: {} }],
      'GET /admin/cluster/status': [
        200,
        {
          node_id: 'vigil-1',
          nodes: { total: 3, alive: 3, suspect: 0, dead: 0 },
          shards: [
            {
              shard: 0,
              replicas: [
                { node: 'vigil-1', state: 'serving', lag_messages: 0 },
                { node: 'vigil-2', state: 'draining', lag_messages: 2 },
                { node: 'vigil-3', state: 'catching_up', lag_messages: 1500 },
              ],
            },
            { shard: 1, replicas: [{ node: 'vigil-2', state: 'serving', lag_messages: 4 }] },
          ],
          sharding: { revision: 42, shards: 2, replicas: 2, coordinator_here: true },
        },
      ],
      'GET /admin/cluster/nodes': [200, { nodes: [{ id: 'vigil-1', state: 'Alive' }] }],
      'GET /admin/maintenance/status': [200, { status: 'active' }],
    });
    render(<ClusterView />);
    await screen.findByRole('heading', { name: 'Shards' });
    expect(screen.getByRole('columnheader', { name: 'replica 3' })).toBeTruthy();
    expect(screen.getByText('catching up')).toBeTruthy();
    expect(screen.getByText('lag 1500')).toBeTruthy();
    expect(screen.getByText('draining')).toBeTruthy();
    // Not also drawn by the generic status (as JSON in a cell).
    expect(screen.queryByText(/"state":"serving"/)).toBeNull();
    expect(screen.getByText('revision').nextElementSibling?.textContent).toBe('42');
  });
});

describe('cluster view: backups', () => {
  test('warns when the last good backup is older than twice the schedule, as /health/ready says', async () => {
    serve({
      'GET /health/ready': [
        200,
        {
          status: 'ready',
          checks: {
            store: { ok: true },
            backup: {
              ok: true,
              detail:
                'warning: the last good backup (2026-12-01T00:00:00.000Z) is older than twice the schedule (0 * * * *)',
            },
          },
        },
      ],
    });
    render(<ClusterView />);
    const warning = await screen.findByTestId('backup-warning');
    expect(warning.getAttribute('role')).toBe('alert');
    expect(warning.textContent).toContain('Backups are overdue');
    expect(warning.textContent).toContain('2026-12-01T00:00:00.000Z');
  });

  test('a failed last backup is a warning too; a recent good one none', async () => {
    serve({
      'GET /health/ready': [
        200,
        { status: 'ready', checks: { backup: { ok: true, detail: 'warning: the last backup failed: disk full' } } },
      ],
    });
    render(<ClusterView />);
    expect((await screen.findByTestId('backup-warning')).textContent).toContain('The last backup failed');
    cleanup();
    serve({ 'GET /health/ready': [200, { status: 'ready', checks: { store: { ok: true }, backup: { ok: true } } }] });
    render(<ClusterView />);
    await screen.findByRole('cell', { name: 'backup' });
    expect(screen.queryByTestId('backup-warning')).toBeNull();
  });
});

describe('cluster view of a two-site deployment', () => {
  test('shows both sites, their roles, epochs and the replication lag each way', async () => {
    serve({
      'GET /health/ready': [200, { status: 'ready', checks: {} }],
      'GET /admin/cluster/status': [200, { node_id: 'a-vigil-1' }],
      'GET /admin/cluster/nodes': [200, { nodes: [{ id: 'a-vigil-1', state: 'Alive' }] }],
      'GET /admin/maintenance/status': [200, { status: 'off' }],
      'GET /admin/dr/status': [
        200,
        {
          site: 'a',
          role: 'standby',
          epoch: 3,
          peer: {
            site: 'b',
            reachable: true,
            role: 'active',
            epoch: 4,
            lag_events: 17,
            lag_seconds: 2.5,
            lag_to_peer_events: 0,
          },
        },
      ],
    });
    render(<ClusterView />);
    const table = await screen.findByRole('table', { name: 'Sites' });
    const rows = [...table.querySelectorAll('tbody tr')].map((r) =>
      [...r.querySelectorAll('td')].map((c) => c.textContent),
    );
    expect(rows).toEqual([
      ['a (this site)', 'standby', '3', 'yes', '0'],
      ['b', 'active', '4', 'yes', '17 (2.5 s)'],
    ]);
  });
});

describe('incidents view', () => {
  test('a server without incidents says so', async () => {
    serve({});
    render(<IncidentsView location={location()} />);
    await screen.findByText('Incident management is not available on this server');
  });

  test('the queue, one incident, a status change and a comment', async () => {
    const incident = {
      id: 'inc-1',
      title: 'Brute force on web-1',
      severity: 'high',
      status: 'new',
      assignee: null,
      alertCount: 3,
      createdAt: Date.UTC(2026, 0, 1),
      lastAlertAt: Date.UTC(2026, 0, 1, 1),
      host: 'web-1',
      ruleId: 'r1',
    };
    const calls = serve({
      'GET /api/v1/incidents': [200, { incidents: [incident], total: 1, nextCursor: null }],
      'GET /api/v1/incidents/inc-1': [
        200,
        {
          ...incident,
          alertIds: ['a1', 'a2'],
          eventIds: ['e1'],
          comments: [{ id: 1, author: 'admin', body: 'Looking into it', createdAt: Date.UTC(2026, 0, 1, 2) }],
        },
      ],
      'PATCH /api/v1/incidents/inc-1': [200, { ...incident, status: 'in_progress' }],
      'POST /api/v1/incidents/inc-1/comments': [201, { id: 2, author: 'admin', body: 'Blocked', createdAt: 0 }],
    });
    render(<IncidentsView location={location()} id="inc-1" />);
    await screen.findByRole('link', { name: 'Brute force on web-1' });
    await screen.findByText('Looking into it');
    expect(screen.getByRole('link', { name: 'a1' }).getAttribute('href')).toBe('/ui/alerts/a1');

    fireEvent.change(screen.getByLabelText('Status', { selector: '.split-detail select' }), {
      target: { value: 'in_progress' },
    });
    await screen.findByText('Status set to in progress.');
    expect(calls.find((c) => c.method === 'PATCH')?.body).toBe('{"status":"in_progress"}');

    fireEvent.change(screen.getByLabelText('Add a comment'), { target: { value: 'Blocked' } });
    fireEvent.click(screen.getByRole('button', { name: 'Comment' }));
    await screen.findByText('Comment added.');
    expect(calls.find((c) => c.method === 'POST')?.body).toBe('{"body":"Blocked"}');
  });

  test('a refused transition is shown with the server reason', async () => {
    const incident = { id: 'inc-2', title: 'X', severity: 'low', status: 'resolved', createdAt: 0 };
    serve({
      'GET /api/v1/incidents': [200, { incidents: [incident], total: 1 }],
      'GET /api/v1/incidents/inc-2': [200, { ...incident, comments: [] }],
      'PATCH /api/v1/incidents/inc-2': [
        409,
        { error: { code: 'invalid_transition', message: 'resolved -> in_progress is not allowed' } },
      ],
    });
    render(<IncidentsView location={location()} id="inc-2" />);
    const select = await screen.findByLabelText('Status', { selector: '.split-detail select' });
    fireEvent.change(select, { target: { value: 'in_progress' } });
    await waitFor(() => expect(screen.getByText('resolved -> in_progress is not allowed')).toBeTruthy());
    expect(screen.getByText('The change was not saved')).toBeTruthy();
  });
});
