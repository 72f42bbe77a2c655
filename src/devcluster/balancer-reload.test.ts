/**
 * The dev cluster's balancer follows the Vigil members recorded: `updateBalancers` (run by `add`) renders
 * HAProxy's configuration again and reloads the running HAProxy through its master, whose PID stays the
 * recorded one; `stop` then ends the master and every worker, the old one included. Real HAProxy (Debian's),
 * in front of two small HTTP servers that stand in for Vigil nodes and name themselves in each answer.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ensureHaproxy } from '../../test/harness/haproxy.ts';
import { DevClusterError } from './errors.ts';
import { balancerServerStates, planBalancer } from './haproxy.ts';
import { type DevCluster, openDevCluster } from './index.ts';
import type { DevClusterState, MemberRecord } from './plan.ts';
import { portAllocator } from './plan.ts';
import { isRunning } from './process.ts';

const servers: Server[] = [];
const clusters: DevCluster[] = [];
const dirs: string[] = [];

after(async () => {
  for (const c of clusters) await c.stop(undefined, { signal: 'SIGKILL' });
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Answers of `/slow` held until the test releases them (a request in flight across a reload). */
const held: (() => void)[] = [];

/** An HTTP server standing in for a Vigil node: ready, and naming itself as /admin/cluster/status does. */
async function standIn(name: string, port: number): Promise<void> {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    const answer = () => res.end(JSON.stringify(req.url === '/health/ready' ? { status: 'ready' } : { node_id: name }));
    if (req.url === '/slow') held.push(answer);
    else answer();
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  servers.push(server);
}

/** A Vigil member record at `http`, as `up` and `add` record one (never started: the stand-in serves it). */
function vigilRecord(dir: string, name: string, http: number, syslog: number): MemberRecord {
  return {
    kind: 'vigil',
    name,
    command: '/bin/false',
    args: [],
    cwd: join(dir, name),
    log: join(dir, 'logs', `${name}.log`),
    ready_url: `http://127.0.0.1:${http}/health/ready`,
    addresses: { http: `http://127.0.0.1:${http}`, syslog: `127.0.0.1:${syslog} (udp+tcp)` },
    files: {},
    pid: null,
    pid_start: null,
    state: 'stopped',
    started_at: null,
    stopped_at: null,
  };
}

/** PIDs whose parent is `pid` (HAProxy's workers under its master). */
function children(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** The nodes that answered `n` requests through the balancer (each on a new connection). */
async function answeredBy(url: string, n: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${url}/admin/cluster/status`, {
      headers: { connection: 'close' },
      signal: AbortSignal.timeout(5000),
    });
    seen.add(((await res.json()) as { node_id: string }).node_id);
  }
  return seen;
}

/**
 * A dev cluster folder holding vigil-1 and vigil-2 (stand-ins) and haproxy-1 whose configuration names only
 * vigil-1: the state `add` leaves before it updates the balancer. `legacy`: the balancer recorded as before
 * master-worker mode (no `-W`, no spec).
 */
async function cluster(legacy = false): Promise<{ c: DevCluster; lb: () => MemberRecord }> {
  const binary = ensureHaproxy();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-lb-reload-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'logs'));
  const port = portAllocator();
  const nodes = [
    vigilRecord(dir, 'vigil-1', await port(), await port()),
    vigilRecord(dir, 'vigil-2', await port(), await port()),
  ];
  for (const m of nodes) await standIn(m.name, Number(new URL(m.addresses.http).port));
  const first = [{ name: 'vigil-1', host: '127.0.0.1', http_port: Number(new URL(nodes[0].addresses.http).port) }];
  const plan = await planBalancer({
    dir,
    binary,
    port,
    servers: first.map((s) => ({ ...s, syslog_tcp_port: 1 })),
    check: { inter_ms: 200, fastinter_ms: 100, rise: 1 },
  });
  mkdirSync(plan.dir);
  writeFileSync(plan.file.path, plan.file.content);
  const member = legacy
    ? { ...plan.member, args: plan.member.args.filter((a) => a !== '-W'), balancer: undefined }
    : plan.member;
  const state: DevClusterState = {
    version: 1,
    dir,
    created_at: new Date().toISOString(),
    admin_token_file: join(dir, 'admin-token'),
    members: [...nodes, member],
  };
  writeFileSync(join(dir, 'state.json'), JSON.stringify(state));
  const c = openDevCluster(dir);
  clusters.push(c);
  await c.start(['haproxy-1'], { readyTimeoutMs: 30000 });
  return { c, lb: () => c.member('haproxy-1') };
}

test('a node recorded after the balancer started is balanced to after updateBalancers; the master keeps its PID and down stops every worker', {
  timeout: 120000,
}, async () => {
  const { c, lb } = await cluster();
  const url = lb().addresses.http;
  assert.deepEqual([...(await answeredBy(url, 6))], ['vigil-1'], 'before: only vigil-1 is in the configuration');
  const master = lb().pid!;
  const workersBefore = children(master);
  assert.equal(workersBefore.length, 1, 'one worker under the master');
  // Two requests in flight across the reload: the old worker finishes them (graceful).
  const slow = () => fetch(`${url}/slow`, { signal: AbortSignal.timeout(60000) });
  const inFlight = [slow(), slow()];
  while (held.length < 2) await new Promise((r) => setTimeout(r, 20));

  assert.deepEqual(await c.updateBalancers(), ['haproxy-1']);
  assert.equal(lb().pid, master, 'the recorded PID is the same master');
  assert.ok(isRunning({ pid: master, startTicks: lb().pid_start ?? undefined }), 'the master runs');
  assert.match(readFileSync(lb().files.config, 'utf8'), /server vigil-2 127\.0\.0\.1:\d+ check\n/);
  assert.deepEqual([...(await balancerServerStates(lb().addresses.stats)).keys()].sort(), ['vigil-1', 'vigil-2']);
  // Health checks bring vigil-2 up within a few checks; requests then reach both.
  const deadline = Date.now() + 30000;
  let seen = new Set<string>();
  while (!(seen.has('vigil-1') && seen.has('vigil-2'))) {
    assert.ok(Date.now() < deadline, `requests through the balancer reach ${[...seen]} only, after 30 s`);
    seen = new Set([...seen, ...(await answeredBy(url, 4))]);
  }
  const workers = children(master);
  assert.ok(
    workersBefore.every((w) => workers.includes(w)),
    'the old worker still serves its requests',
  );
  assert.equal(workers.length, 2, 'and a new one serves new connections');
  // One request in flight is answered through the old worker.
  held.shift()!();
  const { res: first, i } = await Promise.race(inFlight.map((p, i) => p.then((res) => ({ res, i }))));
  assert.equal(first.status, 200);
  assert.deepEqual(await first.json(), { node_id: 'vigil-1' });

  assert.deepEqual(await c.updateBalancers(), [], 'nothing changed: no reload');
  // The old worker still holds the second: stopping the master stops it too.
  assert.ok(children(master).includes(workersBefore[0]));
  await c.stop(['haproxy-1']);
  await inFlight[1 - i].catch(() => undefined);
  for (const pid of [master, ...workers]) assert.equal(isRunning({ pid }), false, `PID ${pid} stopped with the master`);
});

test('a balancer recorded before master-worker mode is restarted in it; a configuration haproxy refuses is never loaded', {
  timeout: 120000,
}, async () => {
  const { c, lb } = await cluster(true);
  const before = lb().pid!;
  assert.deepEqual(await c.updateBalancers(), ['haproxy-1']);
  assert.equal(lb().args[0], '-W', 'recorded with master-worker mode from now on');
  assert.notEqual(lb().pid, before, 'restarted: SIGUSR2 would have killed the old process');
  assert.equal(isRunning({ pid: before }), false);
  assert.ok((await answeredBy(lb().addresses.http, 1)).size === 1);

  // A node recorded with a port HAProxy refuses: the running configuration stays, and says why.
  const config = readFileSync(lb().files.config, 'utf8');
  c.state().members.push(vigilRecord(c.dir, 'vigil-3', 70000, 70001));
  await assert.rejects(
    c.updateBalancers(),
    (err: unknown) => err instanceof DevClusterError && err.code === 'lb_config_invalid' && /70000/.test(err.message),
  );
  assert.equal(readFileSync(lb().files.config, 'utf8'), config);
  assert.ok(isRunning({ pid: lb().pid! }));
  await c.stop(['haproxy-1']);
});
