/**
 * The dev cluster's balancer follows the Vigil members recorded: `updateBalancers` (run by `add`) renders
 * HAProxy's configuration again and reloads the running HAProxy through its master, whose PID stays the
 * recorded one; `stop` then ends the master and every worker, the old one included. Real HAProxy (Debian's),
 * in front of two small HTTP servers that stand in for Vigil nodes and name themselves in each answer.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import { ensureHaproxy } from '../../test/harness/haproxy.ts';
import { DevClusterError } from './errors.ts';
import { balancerConfig, balancerServerStates, planBalancer } from './haproxy.ts';
import { type DevCluster, openDevCluster } from './index.ts';
import type { DevClusterState, MemberRecord } from './plan.ts';
import { portAllocator } from './plan.ts';
import { isRunning } from './process.ts';
import { formatStatus } from './status-table.ts';
import { waitUntil } from '../../test/harness/wait.ts';

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
function vigilRecord(dir: string, name: string, http: number, syslog: number, site?: string): MemberRecord {
  return {
    kind: 'vigil',
    name,
    ...(site ? { site } : {}),
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

/** Whether something accepts TCP connections at `port` on loopback. */
function listening(port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      done(true);
    });
    s.once('error', () => done(false));
  });
}

const execFileAsync = promisify(execFile);
const VIGIL = join(import.meta.dirname, '../../bin/vigil');

/** `vigil dev-cluster <args>` as an operator runs it (asynchronously: the stand-ins answer meanwhile). */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileAsync(VIGIL, ['dev-cluster', ...args], { encoding: 'utf8', timeout: 120000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const servedBy = async (lb: MemberRecord) => [...(await balancerServerStates(lb.addresses.stats)).keys()].sort();

test('a reload the master refuses is recorded (status shows it) and the next updateBalancers reloads; a stopped balancer gets the file and loads it at start', {
  timeout: 120000,
}, async () => {
  const { c, lb } = await cluster();
  const master = lb().pid!;
  // A listener the new configuration needs, held by another process: `haproxy -c` binds nothing and
  // accepts it; the master's reload then fails to bind it, and its old worker keeps serving.
  const port = portAllocator();
  const blocked = await port();
  const holder = createTcpServer();
  await new Promise<void>((r) => holder.listen(blocked, '127.0.0.1', r));
  lb().balancer!.bind.syslog_tcp = `127.0.0.1:${blocked}`;
  await assert.rejects(
    c.updateBalancers({ timeoutMs: 30000 }),
    (err: unknown) =>
      err instanceof DevClusterError &&
      err.code === 'lb_reload_failed' &&
      /refused to reload/.test(err.message) &&
      new RegExp(`cannot bind.*${blocked}`).test(err.message),
  );
  assert.match(readFileSync(lb().files.config, 'utf8'), /server vigil-2 /, 'the configuration is written');
  assert.deepEqual(await servedBy(lb()), ['vigil-1'], 'the old worker serves the old one');
  assert.equal(lb().pid, master);
  assert.ok(isRunning({ pid: master }), 'the master runs on');
  // Recorded in state.json: another `vigil dev-cluster status` shows it.
  const [shown] = openDevCluster(c.dir)
    .status()
    .filter((m) => m.kind === 'haproxy');
  assert.equal(shown.balancer_error?.code, 'lb_reload_failed');
  assert.match(formatStatus([shown]), /haproxy-1: its last update failed \(lb_reload_failed, .*refused to reload/);
  assert.match(formatStatus([shown]), /vigil dev-cluster reload-balancer tries again/);
  const refused = await cli('reload-balancer', '--dir', c.dir);
  assert.equal(refused.code, 1, 'the CLI fails while the port is held');
  assert.match(refused.stderr, /vigil dev-cluster reload-balancer: .*refused to reload/);
  assert.match((await cli('status', '--dir', c.dir)).stdout, /haproxy-1: its last update failed \(lb_reload_failed/);

  // The file already says what is wanted: the retry compares with what the master loaded, and reloads.
  await new Promise((r) => holder.close(r));
  const retried = await cli('reload-balancer', '--dir', c.dir);
  assert.equal(retried.code, 0, retried.stderr);
  assert.equal(retried.stdout, 'haproxy-1: reloaded; servers vigil-1, vigil-2.\n');
  const now = openDevCluster(c.dir);
  clusters.push(now);
  const lbNow = () => now.member('haproxy-1');
  assert.deepEqual(await servedBy(lbNow()), ['vigil-1', 'vigil-2']);
  assert.ok(await listening(blocked), 'the new worker listens where the new configuration says');
  assert.equal(lbNow().pid, master, 'the same master');
  assert.equal(now.status().find((m) => m.kind === 'haproxy')?.balancer_error, undefined);
  assert.doesNotMatch(formatStatus(now.status()), /last update failed/);
  assert.deepEqual(await now.updateBalancers(), [], 'in line: no reload');
  const again = await cli('reload-balancer', '--dir', c.dir);
  assert.equal(again.stdout, 'haproxy-1: already runs this configuration; servers vigil-1, vigil-2.\n');

  // Stopped: the file is written, nothing is signalled; a start loads it.
  await now.stop(['haproxy-1']);
  now.state().members.push(vigilRecord(now.dir, 'vigil-3', await port(), await port()));
  await standIn('vigil-3', Number(new URL(now.member('vigil-3').addresses.http).port));
  assert.deepEqual(await now.updateBalancers(), ['haproxy-1']);
  assert.match(readFileSync(lbNow().files.config, 'utf8'), /server vigil-3 /);
  assert.deepEqual(await now.updateBalancers(), [], 'a stopped balancer with the file written is in line');
  await now.start(['haproxy-1'], { readyTimeoutMs: 30000 });
  assert.deepEqual(await servedBy(lbNow()), ['vigil-1', 'vigil-2', 'vigil-3']);
  assert.deepEqual(await now.updateBalancers(), [], 'it loaded that file as it started');
  await now.stop(['haproxy-1']);
});

test('a retry sent the moment a reload was refused still reloads (the master, re-executing itself to wait, loses a signal sent meanwhile)', {
  timeout: 120000,
}, async () => {
  const { c, lb } = await cluster();
  const blocked = await portAllocator()();
  const holder = createTcpServer();
  await new Promise<void>((r) => holder.listen(blocked, '127.0.0.1', r));
  lb().balancer!.bind.syslog_tcp = `127.0.0.1:${blocked}`;
  await assert.rejects(c.updateBalancers({ timeoutMs: 30000 }), /refused to reload/);
  // Refused once more, this time watched closely: the retry goes out within milliseconds of the master
  // logging its failure, while it is still replacing itself (here about 10 to 20 ms; more on a loaded machine).
  const count = (line: RegExp) => (readFileSync(lb().log, 'utf8').match(line) ?? []).length;
  const before = { reloads: count(/Reloading HAProxy/g), failures: count(/Loading failure!/g) };
  // Sent again while not taken (the master may still be re-executing itself after the first refusal); the
  // log is read every millisecond, so the retry below follows the refusal closely.
  let sentAt = 0;
  await waitUntil(
    'the second refusal',
    30000,
    () => {
      if (count(/Loading failure!/g) > before.failures) return true;
      if (count(/Reloading HAProxy/g) === before.reloads && Date.now() - sentAt > 3000) {
        process.kill(lb().pid!, 'SIGUSR2');
        sentAt = Date.now();
      }
      return false;
    },
    1,
  );
  holder.close();
  assert.deepEqual(await c.updateBalancers({ timeoutMs: 30000 }), ['haproxy-1']);
  assert.deepEqual(await servedBy(lb()), ['vigil-1', 'vigil-2']);
  assert.ok(await listening(blocked), 'the new worker listens where the new configuration says');
  await c.stop(['haproxy-1']);
});

test("in a two-site cluster only the named site's balancer is reloaded", { timeout: 120000 }, async () => {
  const binary = ensureHaproxy();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-lb-sites-'));
  dirs.push(dir);
  const port = portAllocator();
  const members: MemberRecord[] = [];
  for (const site of ['a', 'b']) {
    mkdirSync(join(dir, site, 'logs'), { recursive: true });
    const node = vigilRecord(join(dir, site), `${site}-vigil-1`, await port(), await port(), site);
    await standIn(node.name, Number(new URL(node.addresses.http).port));
    const plan = await planBalancer({
      dir: join(dir, site),
      binary,
      port,
      servers: [],
      check: { inter_ms: 200, fastinter_ms: 100, rise: 1 },
    });
    const lb = { ...plan.member, name: `${site}-haproxy-1`, site };
    mkdirSync(plan.dir);
    // As up --sites 2 writes it: the site's own nodes under their member names.
    writeFileSync(lb.files.config, balancerConfig(lb, [node]));
    members.push(node, lb);
  }
  const state: DevClusterState = {
    version: 1,
    dir,
    created_at: new Date().toISOString(),
    admin_token_file: join(dir, 'admin-token'),
    members,
  };
  writeFileSync(join(dir, 'state.json'), JSON.stringify(state));
  const c = openDevCluster(dir);
  clusters.push(c);
  await c.start(['a-haproxy-1', 'b-haproxy-1'], { readyTimeoutMs: 30000 });
  const aWorkers = children(c.member('a-haproxy-1').pid!);
  assert.deepEqual(await c.updateBalancers(), [], 'both run what the members say');

  // A node recorded in each site: only b's is announced to its balancer now.
  for (const site of ['a', 'b']) {
    const added = vigilRecord(join(dir, site), `${site}-vigil-2`, await port(), await port(), site);
    await standIn(added.name, Number(new URL(added.addresses.http).port));
    c.state().members.push(added);
  }
  await assert.rejects(
    c.updateBalancers({ site: 'c' }),
    (err: unknown) => err instanceof DevClusterError && err.code === 'unknown_site',
  );
  assert.deepEqual(await c.updateBalancers({ site: 'b' }), ['b-haproxy-1']);
  assert.deepEqual(await servedBy(c.member('b-haproxy-1')), ['b-vigil-1', 'b-vigil-2']);
  assert.deepEqual(await servedBy(c.member('a-haproxy-1')), ['a-vigil-1'], "a's balancer is left as it was");
  assert.deepEqual(children(c.member('a-haproxy-1').pid!), aWorkers, 'and was not reloaded: the same one worker');
  assert.doesNotMatch(readFileSync(c.member('a-haproxy-1').log, 'utf8'), /Reloading/);
  assert.deepEqual(await c.updateBalancers(), ['a-haproxy-1'], "without a site: a's too");
  assert.deepEqual(await servedBy(c.member('a-haproxy-1')), ['a-vigil-1', 'a-vigil-2']);
  assert.deepEqual(await c.updateBalancers(), [], 'every site in line');
  await c.stop(['a-haproxy-1', 'b-haproxy-1']);
});
