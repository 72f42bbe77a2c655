import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { createServer, type Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';

/** The etcd binary: `ETCD_BIN`, else `etcd` on the PATH (Debian's etcd-server package). */
const ETCD_BIN = process.env.ETCD_BIN ?? 'etcd';

/** One member of a test etcd cluster, a process of its own with its own data folder. */
export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  /** PID of the running process, undefined while the member is down. */
  pid(): number | undefined;
}

/** A real etcd cluster on loopback, started by a test; every process is stopped by PID. */
export interface EtcdCluster {
  members: EtcdMember[];
  /** Client URLs of every member (`http://127.0.0.1:port`). */
  endpoints: string[];
  /** Sends `signal` (SIGKILL by default) to member `i`'s PID and waits for it to exit. */
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts member `i` again on the same ports and data (after a kill) and waits until it is healthy. */
  restart(i: number): Promise<void>;
  /** Index of the member that is the raft leader now (asks each live member's /v3 status). */
  leader(): Promise<number>;
  /** Waits until every running member answers /health with a leader. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Stops every member by PID (SIGKILL) and removes the data folders. */
  stop(): Promise<void>;
  /** Everything the members printed, for failure messages. */
  output(): string;
}

/** Thrown when the etcd binary cannot be run; says how to install it. */
export class EtcdMissingError extends Error {
  constructor(bin: string, cause?: unknown) {
    super(
      `cannot run the etcd binary "${bin}": install it with \`apt-get install -y etcd-server\` ` +
        '(Debian etcd 3.4) or point ETCD_BIN at one',
      { cause },
    );
    this.name = 'EtcdMissingError';
  }
}

/** Throws EtcdMissingError unless `<bin> --version` runs. */
export function assertEtcdInstalled(bin = ETCD_BIN): void {
  const res = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  if (res.error || res.status !== 0) throw new EtcdMissingError(bin, res.error ?? res.stderr);
}

const live = new Set<ChildProcess>();
/** Data folders not removed yet: in /dev/shm they would hold memory until the machine restarts. */
const roots = new Set<string>();
// A test that dies half-way must not leave etcd processes or their data behind: kill what is left, by PID.
process.once('exit', () => {
  for (const p of live) if (p.pid !== undefined && p.exitCode === null) process.kill(p.pid, 'SIGKILL');
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

/**
 * Where members keep their data: /dev/shm when it exists. etcd fsyncs its WAL on every commit, a new
 * leader's first one included. The suite runs two files at once, and the others fsync too (chdb, PGlite):
 * in one CI run etcd refused lease grants for seconds after a leader kill, longer than a lease's renewal
 * slack, and a node lost its session. Production etcd wants a disk of its own (fsync p99 under 10 ms); RAM
 * stands in for it here, so the tests measure Vigil's handling of an election, not the neighbours' disks.
 */
function dataRoot(): string {
  // Each member preallocates 64 MB of WAL: a small /dev/shm (a container's default is 64 MB) is not used.
  if (!existsSync('/dev/shm')) return tmpdir();
  const fs = statfsSync('/dev/shm');
  return fs.bavail * fs.bsize >= SHM_NEEDED_BYTES ? '/dev/shm' : tmpdir();
}
const SHM_NEEDED_BYTES = 1024 ** 3;

/**
 * Starts an etcd cluster of `size` members (3 by default) on 127.0.0.1 with free client and peer ports
 * and data in a temporary folder; resolves when every member is healthy. Short raft timings keep leader
 * elections (after a kill) well under a second.
 */
export async function startEtcdCluster(opts: { size?: number } = {}): Promise<EtcdCluster> {
  assertEtcdInstalled();
  const size = opts.size ?? 3;
  const root = mkdtempSync(join(dataRoot(), 'vigil-etcd-'));
  roots.add(root);
  const token = `vigil-test-${process.pid}-${Date.now()}`;
  const specs: { name: string; clientPort: number; peerPort: number; dataDir: string }[] = [];
  for (let i = 0; i < size; i++) {
    specs.push({
      name: `m${i}`,
      clientPort: await freePort(),
      peerPort: await freePort(),
      dataDir: join(root, `m${i}`),
    });
  }
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peerPort}`).join(',');
  const procs: (ChildProcess | undefined)[] = new Array(size).fill(undefined);
  let out = '';

  const launch = (i: number) => {
    const s = specs[i];
    const proc = spawn(
      ETCD_BIN,
      [
        `--name=${s.name}`,
        `--data-dir=${s.dataDir}`,
        `--listen-client-urls=http://127.0.0.1:${s.clientPort}`,
        `--advertise-client-urls=http://127.0.0.1:${s.clientPort}`,
        `--listen-peer-urls=http://127.0.0.1:${s.peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${s.peerPort}`,
        `--initial-cluster=${initialCluster}`,
        '--initial-cluster-state=new',
        `--initial-cluster-token=${token}`,
        '--heartbeat-interval=50',
        '--election-timeout=500',
        '--logger=zap',
        '--log-level=error',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const collect = (d: Buffer) => {
      out += `[${s.name}] ${d}`;
      if (process.env.DEBUG_ETCD_TESTS) process.stderr.write(`[${s.name}] ${d}`);
    };
    proc.stdout?.on('data', collect);
    proc.stderr?.on('data', collect);
    proc.once('error', (err) => {
      out += `[${s.name}] spawn error: ${err.message}\n`;
    });
    proc.once('exit', () => live.delete(proc));
    live.add(proc);
    procs[i] = proc;
  };

  const running = (i: number) => {
    const p = procs[i];
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  };

  const healthy = async (i: number) => {
    try {
      const res = await fetch(`http://127.0.0.1:${specs[i].clientPort}/health`, { signal: AbortSignal.timeout(1000) });
      const body = (await res.json()) as { health?: string };
      return res.status === 200 && body.health === 'true';
    } catch {
      return false;
    }
  };

  const waitHealthy = async (timeoutMs = 20000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const up = specs.map((_, i) => i).filter(running);
      const ok = await Promise.all(up.map(healthy));
      if (up.length > 0 && ok.every(Boolean)) return;
      for (let i = 0; i < size; i++) {
        const p = procs[i];
        if (p && p.exitCode !== null && p.exitCode !== 0 && p.signalCode === null) {
          throw new Error(`etcd member ${specs[i].name} exited with ${p.exitCode}:\n${out}`);
        }
      }
      if (Date.now() > deadline) throw new Error(`etcd cluster not healthy within ${timeoutMs} ms:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const kill = (i: number, signal: NodeJS.Signals = 'SIGKILL') =>
    new Promise<void>((resolve) => {
      const p = procs[i];
      if (!p || !running(i) || p.pid === undefined) return resolve();
      p.once('exit', () => resolve());
      process.kill(p.pid, signal);
    });

  // The data is thrown away, so there is nothing to shut down gracefully: SIGKILL is quick (a SIGTERM'd
  // leader waits to transfer leadership to members that are stopping too).
  const stopOne = (i: number) => kill(i, 'SIGKILL');

  for (let i = 0; i < size; i++) launch(i);
  try {
    await waitHealthy();
  } catch (err) {
    await Promise.all(specs.map((_, i) => stopOne(i)));
    rmSync(root, { recursive: true, force: true });
    roots.delete(root);
    throw err;
  }

  return {
    members: specs.map((s, i) => ({
      name: s.name,
      clientUrl: `http://127.0.0.1:${s.clientPort}`,
      peerUrl: `http://127.0.0.1:${s.peerPort}`,
      dataDir: s.dataDir,
      pid: () => (running(i) ? procs[i]!.pid : undefined),
    })),
    endpoints: specs.map((s) => `http://127.0.0.1:${s.clientPort}`),
    kill,
    async restart(i) {
      if (running(i)) throw new Error(`etcd member ${specs[i].name} is still running`);
      launch(i);
      await waitHealthy();
    },
    async leader() {
      for (let i = 0; i < size; i++) {
        if (!running(i)) continue;
        try {
          // The gRPC gateway answers Maintenance.Status over HTTP/JSON; ids are decimal strings.
          const res = await fetch(`http://127.0.0.1:${specs[i].clientPort}/v3/maintenance/status`, {
            method: 'POST',
            body: '{}',
            signal: AbortSignal.timeout(1000),
          });
          const body = (await res.json()) as { header?: { member_id?: string }; leader?: string };
          if (body.leader && body.header?.member_id === body.leader) return i;
        } catch {
          // try the next member
        }
      }
      throw new Error('no etcd member reports itself as leader');
    },
    waitHealthy,
    async stop() {
      await Promise.all(specs.map((_, i) => stopOne(i)));
      rmSync(root, { recursive: true, force: true });
      roots.delete(root);
    },
    output: () => out,
  };
}

/**
 * A loopback TCP proxy in front of one address, to cut a client's connection to etcd without touching
 * etcd: `cut()` destroys every open connection and refuses new ones until `restore()`.
 */
export interface TcpProxy {
  url: string;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** Starts a TcpProxy to `target` (`http://host:port`). */
export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const { hostname, port: targetPort } = new URL(target);
  const sockets = new Set<Socket>();
  let open = true;
  const server: Server = createServer((client) => {
    if (!open) return client.destroy();
    const upstream = new Socket();
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    upstream.connect(Number(targetPort), hostname, () => {
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    url: `http://127.0.0.1:${port}`,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      open = true;
    },
    close() {
      open = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
