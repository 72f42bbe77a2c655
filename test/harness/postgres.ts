import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import pg from 'pg';
import type { Alert } from '../../src/detect/alerts/index.ts';
import { PGlite } from '@electric-sql/pglite';
import { type Db, migrate, openPostgres, wrapPglite } from '../../src/db/index.ts';
import { INCIDENT_MIGRATIONS } from '../../src/incidents/index.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import { NOTIFY_MIGRATIONS } from '../../src/notify/index.ts';
import { USER_MIGRATIONS } from '../../src/users/index.ts';
import { freePort } from './ports.ts';

/**
 * Where Debian's postgresql package puts the server binaries: VIGIL_TEST_PG_BIN, else version 15 (the
 * one the tests target), else the newest installed; a missing one fails in startPostgres.
 */
const PG_BIN = process.env.VIGIL_TEST_PG_BIN ?? pgBin();

function pgBin(): string {
  const root = '/usr/lib/postgresql';
  if (existsSync(join(root, '15/bin/postgres')) || !existsSync(root)) return join(root, '15/bin');
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin/postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return join(root, versions[0] ?? '15', 'bin');
}

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
    throw new Error(
      'running as root and there is no postgres user: install the postgresql package (apt-get install -y postgresql)',
    );
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
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name}"`);
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

/** Every migration of the state database, in the order the app applies them. */
export const ALL_MIGRATIONS = [...INCIDENT_MIGRATIONS, ...USER_MIGRATIONS, ...NOTIFY_MIGRATIONS];

/**
 * An in-memory PGlite, already migrated, loaded from a dump cached in the temp folder: creating PGlite
 * from nothing runs initdb in WebAssembly (seconds, tens of seconds on a busy machine); loading a dump
 * takes a fraction. The cache is keyed by the migrations, so a changed schema makes a new one.
 */
export async function openPgliteFromTemplate(): Promise<Db> {
  const key = createHash('sha256').update(JSON.stringify(ALL_MIGRATIONS)).digest('hex').slice(0, 16);
  const file = join(tmpdir(), `vigil-pglite-template-${key}.tar`);
  if (existsSync(file)) {
    const pg = await PGlite.create({ loadDataDir: new Blob([readFileSync(file)]) });
    return wrapPglite(pg);
  }
  const pg = await PGlite.create();
  const db = wrapPglite(pg);
  await migrate(db, ALL_MIGRATIONS);
  const dump = await pg.dumpDataDir('none');
  // Written aside and renamed: test files running in parallel never read a half-written template.
  const tmp = `${file}.${process.pid}`;
  writeFileSync(tmp, Buffer.from(await dump.arrayBuffer()));
  renameSync(tmp, file);
  return db;
}

/** A database backend the state suites run on: embedded PGlite, and a real PostgreSQL 15 server. */
export interface Backend {
  name: string;
  /** A migrated database: a fresh one on PostgreSQL, the file's shared one on PGlite. */
  open(): Promise<Db>;
  /** The PostgreSQL server (undefined for PGlite), for fault tests. */
  server(): PostgresServer | undefined;
}

/**
 * The two backends, with `before`/`after` hooks registered in the calling file: the PostgreSQL server
 * starts once per file and a missing binary fails the suite (CI installs the postgresql package).
 */
export function backends(): Backend[] {
  let server: PostgresServer | undefined;
  const opened: Db[] = [];
  let pglite: Promise<Db> | undefined;
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    for (const db of opened) await db.close().catch(() => {});
    await server?.stop();
  });
  const track = async (db: Db) => {
    opened.push(db);
    await migrate(db, ALL_MIGRATIONS);
    return db;
  };
  return [
    {
      name: 'PGlite',
      // One in-memory PGlite per file: creating one costs seconds (it runs initdb), so suites share it
      // and keep apart by tenant, partition and ids.
      open: () => {
        pglite ??= openPgliteFromTemplate().then(track);
        return pglite;
      },
      server: () => undefined,
    },
    {
      name: 'PostgreSQL 15',
      open: async () => {
        if (!server) throw new Error('the PostgreSQL server did not start');
        const url = await server.createDatabase();
        return track(
          openPostgres({ url, poolMax: 10, connectTimeoutMs: 2000, statementTimeoutMs: 10000 }, silentLogger),
        );
      },
      server: () => server,
    },
  ];
}

let seq = 0;

/** An alert as detection makes it; override what a test cares about. */
export function makeAlert(over: Omit<Partial<Alert>, 'rule'> & { rule?: Partial<Alert['rule']> } = {}): Alert {
  seq++;
  const { rule, ...rest } = over;
  return {
    id: `alert-${process.pid}-${seq}-${Math.random().toString(36).slice(2)}`,
    timestamp: Date.now(),
    created: Date.now(),
    tenant: 'default',
    kind: 'rule',
    host: 'web-1',
    status: 'new',
    matched: {},
    eventIds: [`ev-${seq}`],
    partition: 'p0',
    fencingToken: 0,
    ...rest,
    rule: { id: 'rule-1', title: 'Failed logon', level: 'medium', tags: ['attack.t1110'], ...rule },
  };
}
