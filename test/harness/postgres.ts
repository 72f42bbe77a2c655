import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './ports.ts';

/** Where Debian's postgresql package puts the server binaries (override with VIGIL_TEST_PG_BIN). */
const PG_BIN = process.env.VIGIL_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** A throwaway PostgreSQL cluster on 127.0.0.1, started by a test. */
export interface PostgresServer {
  /** URL of the `postgres` database as the superuser `vigil` (trust authentication on loopback). */
  url: string;
  port: number;
  pid: number;
  dataDir: string;
  /** Creates a fresh database and returns its URL (a clean slate per suite or test). */
  createDatabase(name?: string): Promise<string>;
  /** Stops the server by PID (SIGINT: fast shutdown, then SIGKILL) and removes its data. */
  stop(): Promise<void>;
  /** Kills the server with SIGKILL (a crash), keeping its data; `start()` brings it back on the same port. */
  kill(): Promise<void>;
  start(): Promise<void>;
  output(): string;
}

/** uid and gid to run PostgreSQL as: ourselves, or the `postgres` system user when we are root. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) {
    throw new Error('running as root and there is no postgres user: install the postgresql package (apt-get install -y postgresql)');
  }
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Starts a PostgreSQL cluster from the Debian package's binaries: initdb into a temporary folder, then
 * `postgres` on a free loopback port, as the `postgres` user when running as root (PostgreSQL refuses
 * root). Throws, so a suite fails rather than skips, when the binaries are missing.
 */
export async function startPostgres(): Promise<PostgresServer> {
  for (const bin of ['initdb', 'postgres']) {
    if (!existsSync(join(PG_BIN, bin))) {
      throw new Error(`${join(PG_BIN, bin)} is missing: install PostgreSQL 15 (apt-get install -y postgresql)`);
    }
  }
  const user = runAs();
  const root = mkdtempSync(join(tmpdir(), 'vigil-pg-'));
  const dataDir = join(root, 'data');
  mkdirSync(dataDir, { mode: 0o700 });
  if (user) {
    chownSync(root, user.uid, user.gid);
    chownSync(dataDir, user.uid, user.gid);
  }
  execFileSync(
    join(PG_BIN, 'initdb'),
    ['-D', dataDir, '-U', 'vigil', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C'],
    { stdio: 'pipe', ...user, cwd: root },
  );
  const port = await freePort();
  let proc: ChildProcess | undefined;
  let out = '';

  const start = async () => {
    proc = spawn(
      join(PG_BIN, 'postgres'),
      [
        '-D',
        dataDir,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'unix_socket_directories=',
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=200',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], cwd: root, ...user },
    );
    proc.stdout?.on('data', (d) => {
      out += d;
    });
    proc.stderr?.on('data', (d) => {
      out += d;
      if (process.env.DEBUG_VIGIL_TESTS) process.stderr.write(d);
    });
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`postgres exited with ${proc.exitCode}:\n${out}`);
      const client = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 1000 });
      try {
        await client.connect();
        await client.query('SELECT 1');
        await client.end();
        return;
      } catch {
        await client.end().catch(() => {});
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    proc.kill('SIGKILL');
    throw new Error(`postgres did not accept connections within 30 s:\n${out}`);
  };
  const url = (db = 'postgres') => `postgres://vigil@127.0.0.1:${port}/${db}`;
  const signal = (sig: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return resolve();
      p.once('exit', () => resolve());
      p.kill(sig);
    });

  await start();
  let n = 0;
  return {
    url: url(),
    port,
    dataDir,
    get pid() {
      return proc?.pid ?? -1;
    },
    async createDatabase(name = `t${process.pid}_${++n}`) {
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${pg.Client.prototype.escapeIdentifier(name)}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    async stop() {
      const timer = setTimeout(() => proc?.kill('SIGKILL'), 10000);
      await signal('SIGINT');
      clearTimeout(timer);
      rmSync(root, { recursive: true, force: true });
    },
    kill: () => signal('SIGKILL'),
    start,
    output: () => out,
  };
}
