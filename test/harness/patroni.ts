import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type EtcdCluster, startEtcdCluster } from './etcd.ts';
import { freePort } from './ports.ts';

const run = promisify(execFile);

/** Debian's binaries (packages patroni, haproxy, postgresql, etcd-server). */
const PATRONI = process.env.PATRONI_BIN ?? '/usr/bin/patroni';
const PATRONICTL = process.env.PATRONICTL_BIN ?? '/usr/bin/patronictl';
const HAPROXY = process.env.HAPROXY_BIN ?? '/usr/sbin/haproxy';
const PG_BIN = process.env.VIGIL_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** One PostgreSQL node under Patroni. */
export interface PatroniNode {
  name: string;
  pgPort: number;
  restPort: number;
  dataDir: string;
  /** PID of the Patroni process (undefined while down). */
  patroniPid(): number | undefined;
  /** PID of its postmaster, from postmaster.pid (undefined while PostgreSQL is down). */
  postgresPid(): number | undefined;
}

/** A member as Patroni's REST API (/cluster) reports it. */
export interface PatroniMember {
  name: string;
  role: string;
  state: string;
  lag?: number | string;
}

/**
 * A PostgreSQL cluster under Patroni with synchronous replication, on 3 etcd members, behind HAProxy that
 * routes to the primary by Patroni's REST health check (`GET /primary`).
 */
export interface PatroniCluster {
  nodes: PatroniNode[];
  etcd: EtcdCluster;
  /** postgres:// URL through HAProxy: always the primary (after failover too). */
  url: string;
  /** Members with their roles, from any live node's REST API. */
  members(): Promise<PatroniMember[]>;
  /** Name of the current leader (waits until there is one). */
  leader(timeoutMs?: number): Promise<string>;
  /** Waits until there is a leader and `replicas` streaming replicas, one of them the sync standby. */
  waitReady(replicas: number, timeoutMs?: number): Promise<void>;
  /** kill -9 of a node's Patroni and PostgreSQL: the node crashes. */
  crash(name: string): Promise<void>;
  /** `patronictl switchover --leader <leader> --candidate <candidate> --force`. */
  switchover(candidate: string): Promise<string>;
  /** Stops HAProxy, every Patroni and PostgreSQL, and etcd, by PID; removes the data. */
  stop(): Promise<void>;
  output(): string;
}

function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root and there is no postgres user: apt-get install -y postgresql');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts etcd (3), `size` Patroni nodes (PostgreSQL 15, synchronous_mode) and HAProxy, all on loopback. */
export async function startPatroniCluster(opts: { size?: number } = {}): Promise<PatroniCluster> {
  for (const bin of [PATRONI, PATRONICTL, HAPROXY, join(PG_BIN, 'postgres')]) {
    if (!existsSync(bin)) {
      throw new Error(`${bin} is missing: apt-get install -y patroni haproxy postgresql etcd-server`);
    }
  }
  const size = opts.size ?? 3;
  const user = postgresUser();
  const root = mkdtempSync(join(tmpdir(), 'vigil-patroni-'));
  if (user) chownSync(root, user.uid, user.gid);
  const etcd = await startEtcdCluster({ size: 3 });
  const scope = `vigil-${process.pid}-${Date.now().toString(36)}`;
  const procs = new Map<string, ChildProcess>();
  let out = '';
  const nodes: (PatroniNode & { config: string })[] = [];

  for (let i = 1; i <= size; i++) {
    const name = `pg${i}`;
    const dir = join(root, name);
    mkdirSync(dir, { mode: 0o700 });
    if (user) chownSync(dir, user.uid, user.gid);
    const [pgPort, restPort] = [await freePort(), await freePort()];
    const dataDir = join(dir, 'data');
    const config = join(dir, 'patroni.yml');
    // JSON is YAML: no YAML writer needed.
    const cfg = {
      scope,
      namespace: '/vigil-test/',
      name,
      log: { level: 'WARNING' },
      restapi: { listen: `127.0.0.1:${restPort}`, connect_address: `127.0.0.1:${restPort}` },
      etcd3: { hosts: etcd.endpoints.map((u) => u.replace('http://', '')) },
      bootstrap: {
        dcs: {
          ttl: 10,
          loop_wait: 1,
          retry_timeout: 4,
          maximum_lag_on_failover: 1048576,
          synchronous_mode: true,
          postgresql: {
            use_pg_rewind: true,
            parameters: {
              wal_level: 'replica',
              hot_standby: 'on',
              wal_log_hints: 'on',
              max_wal_senders: 10,
              max_replication_slots: 10,
              // A process kill keeps the OS cache: fsync buys nothing in this test and costs seconds.
              fsync: 'off',
            },
          },
        },
        initdb: [{ encoding: 'UTF8' }, { locale: 'C' }],
        pg_hba: ['local all all trust', 'host replication all 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 trust'],
      },
      postgresql: {
        listen: `127.0.0.1:${pgPort}`,
        connect_address: `127.0.0.1:${pgPort}`,
        data_dir: dataDir,
        bin_dir: PG_BIN,
        pgpass: join(dir, 'pgpass'),
        authentication: {
          superuser: { username: 'vigil', password: 'vigil' },
          replication: { username: 'replicator', password: 'replicator' },
        },
        parameters: { unix_socket_directories: dir },
      },
    };
    writeFileSync(config, JSON.stringify(cfg, null, 2));
    if (user) chownSync(config, user.uid, user.gid);
    nodes.push({
      name,
      pgPort,
      restPort,
      dataDir,
      config,
      patroniPid: () => {
        const p = procs.get(name);
        return p && p.exitCode === null && p.signalCode === null ? p.pid : undefined;
      },
      postgresPid: () => {
        try {
          const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
          // A crash leaves postmaster.pid behind: the PID is ours only while it still runs on this data.
          const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
          return cmdline.includes('postgres') && cmdline.includes(dataDir) ? pid : undefined;
        } catch {
          return undefined;
        }
      },
    });
  }

  const startNode = (n: (typeof nodes)[number]) => {
    const p = spawn(PATRONI, [n.config], { stdio: ['ignore', 'pipe', 'pipe'], cwd: root, ...user });
    const collect = (d: Buffer) => {
      out += `[${n.name}] ${d}`;
      if (process.env.DEBUG_VIGIL_TESTS) process.stderr.write(`[${n.name}] ${d}`);
    };
    p.stdout?.on('data', collect);
    p.stderr?.on('data', collect);
    procs.set(n.name, p);
  };
  // The first node bootstraps (initdb); the others clone it once it leads.
  startNode(nodes[0]);

  const rest = async (n: PatroniNode, path: string) => {
    const res = await fetch(`http://127.0.0.1:${n.restPort}${path}`, { signal: AbortSignal.timeout(1000) });
    return { status: res.status, body: (await res.json().catch(() => ({}))) as any };
  };
  const members = async (): Promise<PatroniMember[]> => {
    for (const n of nodes) {
      if (!n.patroniPid()) continue;
      try {
        const r = await rest(n, '/cluster');
        if (Array.isArray(r.body.members)) return r.body.members as PatroniMember[];
      } catch {
        // try the next node
      }
    }
    return [];
  };
  const leader = async (timeoutMs = 60000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const l = (await members()).find((m) => m.role === 'leader' && m.state === 'running');
      if (l) return l.name;
      await sleep(200);
    }
    throw new Error(`no Patroni leader within ${timeoutMs} ms:\n${out.slice(-4000)}`);
  };
  const waitReady = async (replicas: number, timeoutMs = 90000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const m = await members();
      const streaming = m.filter((x) => x.role !== 'leader' && (x.state === 'streaming' || x.state === 'running'));
      if (
        m.some((x) => x.role === 'leader') &&
        streaming.length >= replicas &&
        m.some((x) => x.role === 'sync_standby')
      ) {
        return;
      }
      await sleep(250);
    }
    throw new Error(
      `the Patroni cluster did not get ready within ${timeoutMs} ms: ${JSON.stringify(await members())}\n${out.slice(-4000)}`,
    );
  };

  await leader(60000);
  for (const n of nodes.slice(1)) startNode(n);

  const haPort = await freePort();
  const haCfg = join(root, 'haproxy.cfg');
  writeFileSync(
    haCfg,
    [
      'global',
      '  maxconn 200',
      'defaults',
      '  mode tcp',
      '  timeout connect 1s',
      '  timeout client 30m',
      '  timeout server 30m',
      '  timeout check 1s',
      'listen primary',
      `  bind 127.0.0.1:${haPort}`,
      '  option httpchk OPTIONS /primary',
      '  http-check expect status 200',
      '  default-server inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions',
      ...nodes.map((n) => `  server ${n.name} 127.0.0.1:${n.pgPort} maxconn 100 check port ${n.restPort}`),
      '',
    ].join('\n'),
  );
  const haproxy = spawn(HAPROXY, ['-f', haCfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  haproxy.stderr?.on('data', (d) => {
    out += `[haproxy] ${d}`;
  });

  const kill = async (pid: number | undefined) => {
    if (!pid) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const waitExit = async (p: ChildProcess | undefined) => {
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise((r) => p.once('exit', r));
  };

  return {
    nodes,
    etcd,
    url: `postgres://vigil:vigil@127.0.0.1:${haPort}/postgres`,
    members,
    leader,
    waitReady,
    async crash(name) {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no node ${name}`);
      const pg = n.postgresPid();
      const p = procs.get(name);
      await kill(n.patroniPid());
      await kill(pg);
      await waitExit(p);
    },
    async switchover(candidate) {
      const current = await leader();
      const { stdout } = await run(
        PATRONICTL,
        ['-c', nodes[0].config, 'switchover', '--leader', current, '--candidate', candidate, '--force'],
        { timeout: 60000, ...user },
      );
      return stdout;
    },
    async stop() {
      haproxy.kill('SIGKILL');
      await waitExit(haproxy);
      for (const n of nodes) {
        const pg = n.postgresPid();
        const p = procs.get(n.name);
        await kill(n.patroniPid());
        await waitExit(p);
        await kill(pg);
      }
      // Backends of a killed postmaster exit by themselves once they notice it is gone.
      await sleep(200);
      await etcd.stop();
      rmSync(root, { recursive: true, force: true });
    },
    output: () => out,
  };
}
