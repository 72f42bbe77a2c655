/**
 * `vigil dev-cluster` end to end, as an operator runs it: up (1 Vigil node, 3 nats-server, 3 etcd, HAProxy
 * in front with --lb), status, kill, restart on the same ports, add (the balancer reloaded: requests reach
 * the new node), down; every process is acted on by the PID in state.json.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { isRunning } from '../../src/devcluster/process.ts';
import { openDevCluster } from '../../src/devcluster/index.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/vigil');
const TSX = join(ROOT, 'node_modules/tsx/dist/esm/index.mjs');
let dir: string;

/**
 * Runs `vigil dev-cluster ...`: through bin/vigil once the command is registered in src/main.ts, else
 * through the command's module directly (same code, same output).
 */
let registered: boolean | undefined;
function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  registered ??= spawnSync(BIN, ['dev-cluster', '--help'], { encoding: 'utf8' }).status === 0;
  const env = { ...process.env, VIGIL_LOG_LEVEL: undefined };
  const res = registered
    ? spawnSync(BIN, ['dev-cluster', ...args], { encoding: 'utf8', env, timeout: 240000 })
    : spawnSync(
        process.execPath,
        [
          '--import',
          TSX,
          '--input-type=module',
          '-e',
          `import { parseArgs } from 'node:util';
           const { devClusterCommand } = await import(${JSON.stringify(join(ROOT, 'src/cli/dev-cluster.ts'))});
           const p = parseArgs({ args: process.argv.slice(1), allowPositionals: true, strict: true, options: {
             dir: { type: 'string' }, nodes: { type: 'string' }, count: { type: 'string' }, lb: { type: 'boolean' }, json: { type: 'boolean' }, timeout: { type: 'string' } } });
           process.exitCode = await devClusterCommand(p.positionals, p.values);`,
          ...args,
        ],
        { encoding: 'utf8', env, timeout: 240000 },
      );
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

type Member = { kind: string; name: string; pid: number; state: string; addresses: Record<string, string> };

/** `status --json` through the CLI. */
function statusCli(): Member[] {
  const res = cli('status', '--json', '--dir', dir);
  assert.equal(res.status, 0, res.stderr);
  return JSON.parse(res.stdout).members;
}

/** Writes `bytes` to host:port over TCP and resolves to what came back once `until` holds (10 s at most). */
function tcpExchange(address: string, bytes: string, until: (got: string) => boolean): Promise<string> {
  const [host, port] = address.split(' ')[0].split(':');
  return new Promise((resolve, reject) => {
    let got = '';
    const socket = connect(Number(port), host, () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${address} within 10 s; got ${JSON.stringify(got)}`));
    }, 10000);
    socket.on('data', (d) => {
      got += d;
      if (until(got)) {
        clearTimeout(timer);
        socket.end();
        resolve(got);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Writes `bytes` to host:port over TCP, then closes its side and waits for the peer's close. */
function tcpSend(address: string, bytes: string): Promise<void> {
  const [host, port] = address.split(' ')[0].split(':');
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), host, () => socket.end(bytes));
    socket.on('error', reject);
    socket.on('close', () => resolve());
    socket.resume();
  });
}

/** A RELP frame: `txnr command datalen data\n`. */
const relpFrame = (txnr: number, command: string, data: string) =>
  `${txnr} ${command} ${Buffer.byteLength(data)} ${data}\n`;

/** The same answer read in this process (each CLI run costs a Node start on a busy machine). */
const status = (): Member[] => openDevCluster(dir).status() as Member[];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-devcluster-cli-'));
});

after(async () => {
  // Whatever the test left running is stopped by the PIDs in state.json.
  if (existsSync(join(dir, 'state.json'))) await openDevCluster(dir).stop(undefined, { signal: 'SIGKILL' });
  rmSync(dir, { recursive: true, force: true });
});

test('up, status, kill, restart, down: every member by PID, same ports after a restart', {
  timeout: 300000,
}, async () => {
  const up = cli('up', '--nodes', '1', '--lb', '--dir', dir);
  assert.equal(up.status, 0, `${up.stdout}\n${up.stderr}`);
  assert.match(up.stdout, /Every Vigil node is ready/);
  assert.equal(statSync(join(dir, 'admin-token')).mode & 0o777, 0o600);
  const token = readFileSync(join(dir, 'admin-token'), 'utf8').trim();

  let members = statusCli();
  assert.deepEqual(
    members.map((m) => `${m.kind}:${m.name}:${m.state}`),
    [
      'nats:nats-1:running',
      'nats:nats-2:running',
      'nats:nats-3:running',
      'etcd:etcd-1:running',
      'etcd:etcd-2:running',
      'etcd:etcd-3:running',
      'vigil:vigil-1:running',
      'haproxy:haproxy-1:running',
    ],
  );
  const vigil = members.find((m) => m.name === 'vigil-1')!;
  assert.equal(vigil.addresses.admin_token_file, join(dir, 'admin-token'));
  const cluster = await fetch(`${vigil.addresses.http}/admin/cluster/status`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(cluster.status, 200);
  assert.equal(((await cluster.json()) as { node_id: string }).node_id, 'vigil-1');
  // The same API through the balancer, whose address the up message gives.
  const lb = members.find((m) => m.name === 'haproxy-1')!;
  assert.match(lb.addresses.http, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(up.stdout.includes(`${lb.addresses.http}/admin/cluster/status`), up.stdout);
  const through = await fetch(`${lb.addresses.http}/admin/cluster/status`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(through.status, 200);
  assert.equal(((await through.json()) as { node_id: string }).node_id, 'vigil-1');
  // Syslog over TCP and RELP through the balancer: RELP answers 200 once the message is committed.
  const marker = `lbcheck${Date.now().toString(36)}`;
  await tcpSend(lb.addresses.syslog, `<13>1 ${new Date().toISOString()} lbhost app - - - ${marker}tcp\n`);
  const relp = await tcpExchange(
    lb.addresses.relp,
    relpFrame(1, 'open', 'relp_version=0\nrelp_software=test\ncommands=syslog') +
      relpFrame(2, 'syslog', `<13>1 ${new Date().toISOString()} lbhost app - - - ${marker}relp`),
    (got) => /^2 rsp \d+ 200 OK/m.test(got),
  );
  assert.match(relp, /^1 rsp \d+ 200 OK/m);
  const search = async (word: string) => {
    const q = new URLSearchParams({ q: word, from: 'now-1h', to: 'now+1h' });
    const res = await fetch(`${lb.addresses.http}/api/v1/search?${q}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return ((await res.json()) as { events?: unknown[] }).events?.length ?? 0;
  };
  for (const word of [`${marker}tcp`, `${marker}relp`]) {
    const deadline = Date.now() + 30000;
    while ((await search(word)) === 0) {
      assert.ok(Date.now() < deadline, `${word}, sent through the balancer, is not searchable within 30 s`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  assert.match(cli('status', '--dir', dir).stdout, /^KIND\s+NAME\s+PID\s+STATE\s+ADDRESSES\n/);
  // Without postgres.url each node's incidents and users are its own: the node says so.
  assert.match(readFileSync(join(dir, 'logs', 'vigil-1.log'), 'utf8'), /Cluster mode with the embedded PGlite/);

  for (const name of ['vigil-1', 'haproxy-1']) {
    const before = members.find((m) => m.name === name)!;
    const killed = cli('kill', name, '--dir', dir);
    assert.equal(killed.status, 0, killed.stderr);
    assert.equal(isRunning({ pid: before.pid }), false, `${name}'s PID is gone`);
    assert.equal(status().find((m) => m.name === name)?.state, 'stopped');
    const restarted = cli('restart', name, '--dir', dir);
    assert.equal(restarted.status, 0, restarted.stderr);
    const now = status().find((m) => m.name === name)!;
    assert.equal(now.state, 'running');
    assert.notEqual(now.pid, before.pid);
    assert.deepEqual(now.addresses, before.addresses, 'same ports');
  }
  // The loop blocked in spawnSync while the killed node's pooled keep-alive connection was closed: one turn
  // of the event loop lets fetch see that, instead of sending on it ("other side closed").
  await new Promise((r) => setTimeout(r, 100));
  const ready = await fetch(`${vigil.addresses.http}/health/ready`);
  assert.equal(ready.status, 200);
  // restart waited for the balancer's readiness: a node is in rotation, so the API answers through it.
  const again = await fetch(`${lb.addresses.http}/health/ready`);
  assert.equal(again.status, 200);

  // add: vigil-2 joins, and the balancer (reloaded, same master PID) sends requests to it too.
  const lbPid = status().find((m) => m.name === 'haproxy-1')!.pid;
  const added = cli('add', '--count', '1', '--dir', dir);
  assert.equal(added.status, 0, `${added.stdout}\n${added.stderr}`);
  assert.match(added.stdout, /vigil-2 joined and ready\. haproxy-1 sends to them too/);
  const lbNow = status().find((m) => m.name === 'haproxy-1')!;
  assert.equal(lbNow.pid, lbPid, 'the balancer was reloaded, not restarted: same PID');
  const answered = new Set<string>();
  const addDeadline = Date.now() + 60000;
  while (!answered.has('vigil-2')) {
    assert.ok(Date.now() < addDeadline, `through the balancer only ${[...answered]} answered within 60 s of add`);
    const res = await fetch(`${lb.addresses.http}/admin/cluster/status`, {
      headers: { authorization: `Bearer ${token}`, connection: 'close' },
    });
    if (res.status === 200) answered.add(((await res.json()) as { node_id: string }).node_id);
    else await res.arrayBuffer();
    await new Promise((r) => setTimeout(r, 100));
  }

  assert.equal(cli('kill', 'vigil-9', '--dir', dir).status, 1);
  members = status();
  const down = cli('down', '--dir', dir);
  assert.equal(down.status, 0, down.stderr);
  assert.ok(statusCli().every((m) => m.state === 'stopped'));
  for (const m of members) assert.equal(isRunning({ pid: m.pid }), false, `${m.name} (PID ${m.pid}) stopped`);
});
