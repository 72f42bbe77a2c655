/**
 * `vigil dev-cluster add --site b` on a real two-site dev cluster (`up --sites 2 --nodes 1 --lb`: per site
 * one nats-server, one etcd member, one Vigil node and HAProxy): the node added joins site b's cluster and
 * none of a's, takes b's site role, and only b's balancer is reloaded (same master) to send to it. Then an
 * add whose reload fails keeps its node and records the failure, and the retry reloads.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createServer } from 'node:net';
import {
  balancerServerStates,
  type DevCluster,
  DevClusterError,
  openDevCluster,
  upDevCluster,
} from '../../src/devcluster/index.ts';
import { portAllocator } from '../../src/devcluster/plan.ts';
import { ensureHaproxy } from '../harness/haproxy.ts';
import { waitFor } from '../harness/wait.ts';

let cluster: DevCluster | undefined;
let dir: string | undefined;

function killAll(): void {
  for (const m of cluster?.status() ?? []) {
    try {
      if (m.state === 'running') cluster?.signal(m.name, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
}
// The members are detached: a test process that dies half-way must not leave them running.
process.once('exit', killAll);

after(async () => {
  await cluster?.stop(undefined, { signal: 'SIGKILL' });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("add --site b: the node joins b's cluster only, with b's role, and only b's balancer is reloaded; a failed reload is retried", {
  timeout: 900000,
}, async () => {
  ensureHaproxy();
  dir = mkdtempSync(join(tmpdir(), 'vigil-add-site-'));
  const readyTimeoutMs = Number(process.env.TEST_VIGIL_READY_MS ?? 240000);
  cluster = await upDevCluster({
    dir,
    sites: 2,
    nodes: 1,
    lb: true,
    // A loaded machine answers health checks late: the balancer keeps the nodes in rotation meanwhile.
    lbCheck: { timeout_check_ms: 5000 },
    logLevel: 'warn',
    vigilConfig: { detect: { starter_rules: false }, selfmon: { enabled: false } },
    readyTimeoutMs,
  });
  const c = cluster;
  const token = c.adminToken();
  const api = async (member: string, path: string) => {
    const res = await fetch(`${c.member(member).addresses.http}${path}`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(10000),
    });
    assert.equal(res.status, 200, `${member} ${path}`);
    return (await res.json()) as Record<string, unknown>;
  };
  const ids = async (member: string) =>
    ((await api(member, '/admin/cluster/nodes')).nodes as { id: string; state: string }[])
      .filter((n) => n.state === 'Alive')
      .map((n) => n.id)
      .sort()
      .join(',');
  const lb = (site: string) => c.member(`${site}-haproxy-1`);
  const masters = { a: lb('a').pid, b: lb('b').pid };
  const aLog = readFileSync(lb('a').log, 'utf8').length;

  assert.deepEqual(await c.add(1, { site: 'b', readyTimeoutMs }), ['b-vigil-2']);
  const added = c.member('b-vigil-2');
  assert.equal(added.site, 'b');
  assert.equal(c.status().find((m) => m.name === 'b-vigil-2')?.state, 'running');

  // b's cluster (b's etcd) has both its nodes; a's has its one.
  await waitFor("b's membership lists vigil-1 and vigil-2", 60000, async () =>
    (await ids('b-vigil-2')) === 'vigil-1,vigil-2' && (await ids('b-vigil-1')) === 'vigil-1,vigil-2' ? true : undefined,
  );
  assert.equal(await ids('a-vigil-1'), 'vigil-1', "a's cluster is not joined");
  const roles = await Promise.all(['b-vigil-1', 'b-vigil-2'].map((m) => api(m, '/admin/dr/status')));
  assert.deepEqual(
    roles.map((r) => r.site),
    ['b', 'b'],
  );
  assert.equal(roles[0].role, 'standby', 'b starts standby');
  assert.deepEqual([roles[1].role, roles[1].epoch], [roles[0].role, roles[0].epoch], "the new node reads b's role");

  // b's balancer: reloaded by its master (same PID), now with both nodes; a's untouched.
  assert.equal(lb('b').pid, masters.b);
  assert.equal(lb('a').pid, masters.a);
  assert.deepEqual([...(await balancerServerStates(lb('b').addresses.stats)).keys()].sort(), [
    'b-vigil-1',
    'b-vigil-2',
  ]);
  assert.deepEqual([...(await balancerServerStates(lb('a').addresses.stats)).keys()], ['a-vigil-1']);
  assert.doesNotMatch(readFileSync(lb('a').log, 'utf8').slice(aLog), /Reloading/, "a's balancer was not reloaded");
  await waitFor("a request through b's balancer answered by vigil-2", 60000, async () => {
    const res = await fetch(`${lb('b').addresses.http}/admin/cluster/status`, {
      headers: { authorization: `Bearer ${token}`, connection: 'close' },
      signal: AbortSignal.timeout(10000),
    });
    const body = res.status === 200 ? ((await res.json()) as { node_id: string }) : await res.arrayBuffer();
    return 'node_id' in body && body.node_id === 'vigil-2' ? true : undefined;
  });

  // A reload that fails after the nodes started (b's balancer moved to a listener another process holds,
  // which `haproxy -c` does not try to bind): the node stays running and recorded, the failure is recorded
  // on the balancer, and a retry once the port is free reloads it (the file was already written).
  const holder = createServer();
  const blocked = await portAllocator()();
  await new Promise<void>((r) => holder.listen(blocked, '127.0.0.1', r));
  lb('b').balancer!.bind.syslog_tcp = `127.0.0.1:${blocked}`;
  await assert.rejects(
    c.add(1, { site: 'b', readyTimeoutMs }),
    (err: unknown) =>
      err instanceof DevClusterError &&
      err.code === 'lb_reload_failed' &&
      /b-vigil-3 joined and are recorded.*reload-balancer --site b.*refused to reload/.test(err.message),
  );
  const recorded = openDevCluster(dir);
  assert.equal(recorded.status().find((m) => m.name === 'b-vigil-3')?.state, 'running');
  assert.equal(recorded.status().find((m) => m.name === 'b-haproxy-1')?.balancer_error?.code, 'lb_reload_failed');
  assert.deepEqual([...(await balancerServerStates(lb('b').addresses.stats)).keys()].sort(), [
    'b-vigil-1',
    'b-vigil-2',
  ]);
  await new Promise((r) => holder.close(r));
  assert.deepEqual(await c.updateBalancers({ site: 'b' }), ['b-haproxy-1']);
  assert.equal(lb('b').pid, masters.b);
  assert.deepEqual([...(await balancerServerStates(lb('b').addresses.stats)).keys()].sort(), [
    'b-vigil-1',
    'b-vigil-2',
    'b-vigil-3',
  ]);
  assert.equal(
    openDevCluster(dir)
      .status()
      .find((m) => m.name === 'b-haproxy-1')?.balancer_error,
    undefined,
  );
  assert.doesNotMatch(readFileSync(lb('a').log, 'utf8').slice(aLog), /Reloading/, "a's balancer was never reloaded");
});
