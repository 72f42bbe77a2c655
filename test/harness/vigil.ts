import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openPglite } from '../../src/db/pglite.ts';
import { readReply } from './http.ts';
import { watchNode } from './openapi.ts';
import { freePort } from './ports.ts';

const BIN = resolve(import.meta.dirname, '../../bin/vigil');

/** Runs `vigil <args>` (log level warn, `env` over this process's) and returns its exit code and output. */
export function vigilCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((res) => {
    const p = spawn(BIN, args, { env: { ...process.env, VIGIL_LOG_LEVEL: 'warn', ...env }, stdio: 'pipe' });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => res({ code, out, err }));
  });
}

let template: Promise<string> | undefined;

/**
 * A PGlite data folder as initdb leaves it (no migrations), made once per PGlite version in the temp folder
 * and shared by test processes. A new node's data folder gets a copy: creating one costs 5 s of CPU, which
 * every node start paid before its database could answer (and so before /health/ready); opening an existing
 * one costs 0.7 s and copying it 0.3 s.
 */
function pgliteTemplate(): Promise<string> {
  template ??= (async () => {
    const pkg = resolve(import.meta.dirname, '../../node_modules/@electric-sql/pglite/package.json');
    const version = (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
    const dir = join(tmpdir(), `vigil-test-pglite-${version}`);
    if (existsSync(join(dir, 'PG_VERSION'))) return dir;
    const work = mkdtempSync(`${dir}.tmp-`);
    try {
      await (await openPglite(join(work, 'pg'))).close();
      try {
        renameSync(join(work, 'pg'), dir);
      } catch (err) {
        // Another test process made it meanwhile: its copy is as good.
        if (!existsSync(join(dir, 'PG_VERSION'))) throw err;
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    return dir;
  })();
  return template;
}

/** A Vigil node started by a test as its own process, on loopback ports, with a temporary data folder. */
export interface VigilNode {
  url: string;
  token: string;
  syslogPort: number;
  dataDir: string;
  proc: ChildProcess;
  output: () => string;
  /** Sends a signal to the node's PID and waits for it to exit. */
  kill(signal: NodeJS.Signals): Promise<number | null>;
  /** Starts the node again on the same ports and data (after a kill). */
  restart(): Promise<void>;
  /** Stops the node (SIGTERM, then SIGKILL) and removes its data unless keepData. */
  close(opts?: { keepData?: boolean }): Promise<void>;
  /**
   * The OpenAPI conformance of the test's exchanges with this node so far (test/harness/openapi.ts); under
   * the test runner, close() fails when an exchange did not conform.
   */
  conformance(): { checked: number; problems: string[] };
  get(path: string): Promise<{ status: number; body: any }>;
  post(path: string, body: string, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
}

/** Starts `bin/vigil start` and waits until /health/ready answers 200. */
export async function startVigil(
  opts: { env?: Record<string, string>; dataDir?: string /** Default 60 s. */; readyTimeoutMs?: number } = {},
): Promise<VigilNode> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'vigil-test-'));
  const httpPort = await freePort();
  const syslogPort = await freePort();
  const token = `test-token-${Math.random().toString(36).slice(2)}-0123456789`;
  const url = `http://127.0.0.1:${httpPort}`;
  let out = '';
  let proc!: ChildProcess;

  const launch = async () => {
    proc = spawn(BIN, ['start'], {
      env: {
        // The fuzz tests' settings (VIGIL_FUZZ_*) are the test's, not the node's: it refuses unknown VIGIL_ variables.
        ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VIGIL_FUZZ_'))),
        VIGIL_HTTP_ADDR: `127.0.0.1:${httpPort}`,
        VIGIL_SYSLOG_PORT: String(syslogPort),
        VIGIL_DATA_DIR: dataDir,
        VIGIL_ADMIN_TOKEN: token,
        VIGIL_LOG_LEVEL: 'warn',
        // Tests count the alerts of the rules they plant; a test of the starter rules turns them back on.
        VIGIL_DETECT__STARTER_RULES: 'false',
        // And the events they send: the node's own health events stay off unless a test asks for them.
        VIGIL_SELFMON__ENABLED: 'false',
        ...opts.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const collect = (d: Buffer) => {
      out += d;
      if (process.env.DEBUG_VIGIL_TESTS) process.stderr.write(d);
    };
    proc.stdout?.on('data', collect);
    proc.stderr?.on('data', collect);
    // TEST_VIGIL_READY_MS: a machine shared with other heavy work can take longer to start a node.
    const readyMs = opts.readyTimeoutMs ?? Number(process.env.TEST_VIGIL_READY_MS ?? 60000);
    const deadline = Date.now() + readyMs;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`vigil exited with ${proc.exitCode}:\n${out}`);
      try {
        const res = await fetch(`${url}/health/ready`);
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    proc.kill('SIGKILL');
    throw new Error(`vigil did not become ready within ${readyMs / 1000} s:\n${out}`);
  };

  const kill = (signal: NodeJS.Signals) =>
    new Promise<number | null>((res) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return res(proc.exitCode);
      proc.once('exit', (code) => res(code));
      proc.kill(signal);
    });

  const request = async (method: string, path: string, body?: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${url}${path}`, {
      method,
      body,
      headers: { authorization: `Bearer ${token}`, ...headers },
    });
    return readReply(res);
  };

  // A node on PostgreSQL, or on a data folder of the test's, opens its own database.
  if (!opts.dataDir && !(opts.env?.VIGIL_POSTGRES_URL ?? process.env.VIGIL_POSTGRES_URL)) {
    cpSync(await pgliteTemplate(), join(dataDir, 'pg'), { recursive: true });
  }
  await launch();
  // Under the test runner, every exchange of the test with this node is checked against its OpenAPI
  // document (issue 18); benchmarks, run without it, are not slowed by the checks.
  const conformance = process.env.NODE_TEST_CONTEXT === undefined ? undefined : watchNode(url);
  return {
    url,
    token,
    syslogPort,
    dataDir,
    get proc() {
      return proc;
    },
    output: () => out,
    kill,
    restart: launch,
    conformance: () => ({ checked: conformance?.checked() ?? 0, problems: conformance?.problems() ?? [] }),
    async close(o = {}) {
      await conformance?.unwatch();
      const timer = setTimeout(() => proc.kill('SIGKILL'), 25000);
      await kill('SIGTERM');
      clearTimeout(timer);
      if (!o.keepData && !opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
      const problems = conformance?.problems() ?? [];
      if (problems.length > 0) {
        throw new Error(`exchanges with the node that do not match its OpenAPI document:\n${problems.join('\n')}`);
      }
    },
    get: (path) => request('GET', path),
    post: (path, body, headers = { 'content-type': 'application/x-ndjson' }) => request('POST', path, body, headers),
  };
}
