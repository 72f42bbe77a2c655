import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { httpConfigSchema } from '../../src/api/config.ts';
import { adminRoutes } from '../../src/api/routes/admin.ts';
import { healthRoutes } from '../../src/api/routes/health.ts';
import { type ApiServer, createApiServer } from '../../src/api/server.ts';
import { type Cluster, clusterConfigSchema, createCluster } from '../../src/cluster/index.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import { AuthError, type Authenticator, type Principal } from '../../src/users/index.ts';
import { type EtcdCluster, startEtcdCluster } from '../harness/etcd.ts';

const PRINCIPALS: Record<string, Principal> = {
  'admin-token': { name: 'admin', role: 'admin', tenants: ['default'], global: true },
  'tenant-admin-token': { name: 'ada', role: 'admin', tenants: ['default'] },
  'analyst-token': { name: 'ann', role: 'analyst', tenants: ['default'] },
  'viewer-token': { name: 'vic', role: 'viewer', tenants: ['default'] },
};

/** Tokens resolve from a fixed table: enough to tell the admin role from the others. */
const fakeAuth: Authenticator = {
  authenticate(header) {
    const principal = PRINCIPALS[(header ?? '').replace(/^Bearer\s+/i, '')];
    if (!principal) throw new AuthError('invalid token');
    return principal;
  },
};

let etcd: EtcdCluster;
let nodes: Cluster[] = [];
let api: ApiServer;

before(async () => {
  etcd = await startEtcdCluster({ size: 3 });
  const prefix = `admin-${Date.now()}/`;
  const metrics = new Registry();
  for (const id of ['n1', 'n2']) {
    const config = clusterConfigSchema.parse({
      enabled: true,
      node_id: id,
      etcd_endpoints: etcd.endpoints,
      key_prefix: prefix,
      lease_ttl_ms: 3000,
      keepalive_interval_ms: 500,
      etcd_timeout_ms: 500,
      suspect_after_ms: 1000,
      refresh_interval_ms: 250,
      partitions: 8,
    });
    const cluster = createCluster(config, {
      roles: id === 'n1' ? ['all'] : ['detect', 'store'],
      version: '0.1.0-test',
      httpAddr: `127.0.0.1:${id === 'n1' ? 8081 : 8082}`,
      metrics: id === 'n1' ? metrics : new Registry(),
      logger: silentLogger,
    });
    await cluster.start();
    nodes.push(cluster);
  }
  const n1 = nodes[0];
  api = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0' }), {
    auth: fakeAuth,
    metrics,
    logger: silentLogger,
    routes: [
      healthRoutes({ components: () => [n1], metrics }),
      adminRoutes({
        cluster: n1,
        providers: {
          replicas: () => ({ factor: 2, lag_ms: { n2: 12 } }),
          streams: async () => {
            throw new Error('stream state unavailable');
          },
        },
      }),
    ],
  });
  await api.app.ready();
});

after(async () => {
  await api?.app.close();
  await Promise.all(nodes.map((n) => n.stop(Date.now() + 3000)));
  nodes = [];
  await etcd?.stop();
});

async function call(method: 'GET' | 'POST', url: string, token = 'admin-token') {
  const res = await api.app.inject({ method, url, headers: { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, body: res.json() as any };
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 15000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ROUTES = [
  ['GET', '/admin/cluster/status'],
  ['GET', '/admin/cluster/nodes'],
  ['POST', '/admin/maintenance/enable'],
  ['GET', '/admin/maintenance/status'],
  ['POST', '/admin/maintenance/disable'],
] as const;

test('admin routes refuse every role but the global admin (403), a tenant admin too, and requests without a token (401)', async () => {
  for (const [method, url] of ROUTES) {
    for (const token of ['tenant-admin-token', 'analyst-token', 'viewer-token']) {
      const res = await call(method, url, token);
      assert.equal(res.status, 403, `${method} ${url} as ${token}`);
      assert.equal(res.body.error.code, 'forbidden');
    }
    const anon = await api.app.inject({ method, url });
    assert.equal(anon.statusCode, 401, `${method} ${url} without a token`);
  }
  assert.equal(nodes[0].maintenance.status().status, 'active', 'a refused enable changed nothing');
});

test('GET /admin/cluster/status: nodes summary, partition owners with tokens, and provided sections', async () => {
  const body = await waitFor('every partition owned', async () => {
    const res = await call('GET', '/admin/cluster/status');
    assert.equal(res.status, 200);
    return res.body.partitions.owners?.length === 8 && res.body.nodes.alive === 2 ? res.body : undefined;
  });
  assert.equal(body.node_id, 'n1');
  assert.equal(body.etcd.connected, true);
  assert.ok(body.etcd.lease_remaining_ms > 0);
  // The lease gauge is read at the scrape (no timer sets it): it shows the lease's time left, at most its TTL.
  const scrape = await api.app.inject({ method: 'GET', url: '/metrics' });
  const left = /^vigil_cluster_lease_remaining_seconds ([\d.]+)$/m.exec(scrape.body);
  assert.ok(left && Number(left[1]) > 0 && Number(left[1]) <= 3, `lease gauge: ${left?.[0]}`);
  assert.deepEqual(body.maintenance, { status: 'active', partitions_remaining: nodes[0].partitions.owned().size });
  assert.deepEqual(body.nodes, { total: 2, alive: 2, suspect: 0, dead: 0 });
  assert.equal(body.partitions.count, 8);
  assert.deepEqual(body.partitions.unowned, []);
  for (const o of body.partitions.owners) {
    assert.deepEqual(Object.keys(o).sort(), ['acquired_at', 'fencing_token', 'node', 'partition']);
    assert.ok(['n1', 'n2'].includes(o.node));
    assert.ok(Number.isInteger(o.fencing_token) && o.fencing_token > 0);
  }
  assert.deepEqual(body.replicas, { factor: 2, lag_ms: { n2: 12 } });
  assert.deepEqual(body.streams, { error: 'stream state unavailable' });
});

test('GET /admin/cluster/nodes: every node with state, roles, partitions, version and address', async () => {
  const res = await waitFor('both nodes to publish partitions', async () => {
    const r = await call('GET', '/admin/cluster/nodes');
    const owned = r.body.nodes.reduce((sum: number, n: any) => sum + n.partitions.length, 0);
    // A lease renewal late by a moment on a busy machine shows a node Suspect: it is asked again.
    const settled = r.body.nodes.every((n: any) => n.partitions.length > 0 && n.state === 'Alive');
    return owned === 8 && settled ? r : undefined;
  });
  assert.equal(res.status, 200);
  const [n1, n2] = res.body.nodes;
  assert.equal(n1.id, 'n1');
  assert.equal(n1.state, 'Alive');
  assert.deepEqual(n1.roles, ['all']);
  assert.equal(n1.version, '0.1.0-test');
  assert.equal(n1.address, '127.0.0.1:8081');
  assert.equal(n1.maintenance, 'active');
  assert.equal(n2.id, 'n2');
  assert.deepEqual(n2.roles, ['detect', 'store']);
  assert.equal(n2.address, '127.0.0.1:8082');
  assert.equal(n1.partitions.length + n2.partitions.length, 8);
  for (const key of ['started_at', 'heartbeat_age_ms']) assert.ok(key in n1, key);
});

test('POST /admin/maintenance/enable drains (ready turns 503), status reports drained with 0 remaining, disable rejoins', async () => {
  const enabled = await call('POST', '/admin/maintenance/enable');
  assert.equal(enabled.status, 202);
  assert.equal(enabled.body.status, 'draining');
  assert.ok(Number.isInteger(enabled.body.partitions_remaining));
  const ready = await api.app.inject({ method: 'GET', url: '/health/ready' });
  assert.equal(ready.statusCode, 503, 'a node in maintenance is not ready');
  const drained = await waitFor('drained', async () => {
    const s = await call('GET', '/admin/maintenance/status');
    return s.body.status === 'drained' ? s.body : undefined;
  });
  assert.deepEqual(drained, { status: 'drained', partitions_remaining: 0 });
  const again = await call('POST', '/admin/maintenance/enable');
  assert.equal(again.status, 200, 'enable on a drained node answers its status');
  await waitFor('n2 to take every partition', async () => (nodes[1].partitions.owned().size === 8 ? true : undefined));

  const disabled = await call('POST', '/admin/maintenance/disable');
  assert.equal(disabled.status, 200);
  assert.equal(disabled.body.status, 'active');
  assert.equal((await api.app.inject({ method: 'GET', url: '/health/ready' })).statusCode, 200);
  await waitFor('n1 to own partitions again', async () => (nodes[0].partitions.owned().size > 0 ? true : undefined));
  const status = await call('GET', '/admin/maintenance/status');
  assert.equal(status.body.status, 'active');
});
