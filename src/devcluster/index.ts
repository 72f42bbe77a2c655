import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from '../config/load.ts';
import { errorMessage } from '../lib/errors.ts';
import { CORE_BINARIES, findBinaries } from './binaries.ts';
import { DevClusterError } from './errors.ts';
import {
  type BalancerError,
  type DevClusterOptions,
  type DevClusterState,
  type MemberKind,
  type MemberRecord,
  type Plan,
  planDevCluster,
  portAllocator,
} from './plan.ts';
import {
  isRunning,
  type ProcessRef,
  type StopOutcome,
  signalProcess,
  spawnDetached,
  stopProcess,
  waitExit,
} from './process.ts';
import { sleep } from '../lib/retry.ts';
import { planSites, siteMembers } from './sites.ts';
import { planAddedNodes } from './grow.ts';
import { BALANCER_MASTER_WORKER, balancerConfig, balancerServerStates } from './haproxy.ts';

export { BINARIES, CORE_BINARIES, findBinaries, findBinary } from './binaries.ts';
export { DevClusterError } from './errors.ts';
export { balancerServerStates, HAPROXY_CHECK } from './haproxy.ts';
export type {
  BalancerError,
  DevClusterOptions,
  DevClusterState,
  MemberKind,
  MemberRecord,
  NodeEndpoints,
} from './plan.ts';
export type { StopOutcome } from './process.ts';
export { SITES, siteMembers } from './sites.ts';

/** A member as `status` shows it: its record with `state` read from its PID now. */
export interface MemberStatus {
  kind: MemberKind;
  name: string;
  /** Its site, in a two-site cluster. */
  site?: string;
  pid: number | null;
  state: 'running' | 'stopped';
  addresses: Record<string, string>;
  log: string;
  /** A balancer whose last update failed (its configuration is written but not loaded): why, and when. */
  balancer_error?: BalancerError;
}

/** Options of start and restart. */
export interface StartOptions {
  /** How long to wait for each member's readiness; default 180 s. */
  readyTimeoutMs?: number;
  /** Wait for readiness (default true). A nats-server alone cannot be ready while its peers are down. */
  wait?: boolean;
  /**
   * restart only: start a Vigil node from this `bin/vigil` (another checkout: a rolling upgrade) from now on;
   * the record keeps it.
   */
  vigilBin?: string;
}

/** A dev cluster on disk (`<dir>/state.json`) and the processes it records, acted on by PID. */
export interface DevCluster {
  readonly dir: string;
  /** The recorded state (the live one after each action of this object). */
  state(): DevClusterState;
  /** One member by name; throws `unknown_member` listing the names. */
  member(name: string): MemberRecord;
  /** Every member, its state read from its PID now (a member killed outside this tool shows stopped). */
  status(): MemberStatus[];
  /** The shared admin token. */
  adminToken(): string;
  /**
   * Starts the stopped members among `names` (all by default): etcd and NATS first, then the Vigil nodes,
   * then HAProxy, each waited for until ready. PIDs are recorded as soon as they are known.
   */
  start(names?: string[], opts?: StartOptions): Promise<void>;
  /** Sends `signal` (SIGKILL by default) to a member's PID and waits for it to exit. */
  kill(name: string, signal?: NodeJS.Signals): Promise<void>;
  /** Sends a signal without waiting or changing the record (SIGSTOP/SIGCONT). */
  signal(name: string, signal: NodeJS.Signals): void;
  /**
   * Stops a member if it runs (SIGTERM, then SIGKILL), then starts it with the same config and ports.
   * Resolves to how the stop ended.
   */
  restart(name: string, opts?: StartOptions): Promise<StopOutcome>;
  /**
   * Stops the members among `names` (all by default): SIGTERM, then SIGKILL after the grace period (25 s for
   * Vigil nodes, whose graceful stop commits pending events; 10 s for the others). HAProxy goes first, then
   * the Vigil nodes.
   * Resolves to how each member's stop ended (`killed`: it needed SIGKILL, or was sent it).
   */
  stop(names?: string[], opts?: { signal?: NodeJS.Signals }): Promise<Record<string, StopOutcome>>;
  /**
   * Adds `count` Vigil nodes (`vigil-<next>`...; `<site>-vigil-<next>` to `site` of a two-site cluster,
   * which must be named) with the configuration of the cluster's (the site's) first node
   * (src/devcluster/grow.ts), records them, and starts them, waiting until each is ready: they join the
   * running cluster (membership, partitions, and shards when the events are sharded). Then the balancer
   * (`--lb`; the site's only) sends to them too (see updateBalancers). Resolves to the new members' names. A
   * node that does not become ready is stopped and stays recorded (its log kept); the balancer is then not
   * changed. When the balancer's update fails, the nodes stay running and recorded, the failure is recorded
   * on the balancer, and the error says so: updateBalancers (`reload-balancer`, or the next `add`) retries.
   */
  add(count: number, opts?: StartOptions & { site?: string }): Promise<string[]>;
  /**
   * Brings each balancer (of `site` only, when given) in line with the Vigil members recorded now: renders
   * its configuration again from the template (src/devcluster/haproxy.ts), checks a changed one with
   * `haproxy -c` and replaces the file, and reloads a running balancer that has not loaded it (compared with
   * what its master loaded, not with the file: a reload that failed after the file was written is tried
   * again) gracefully: SIGUSR2 to its master, whose PID stays the recorded one; the new worker serves new
   * connections, the old one finishes those it has. Waits until the master logs the reload's success and
   * the stats page lists exactly the new servers. A failure is recorded on the balancer (`status` shows it)
   * until a reload succeeds; every balancer is tried before the first failure is thrown. Resolves to the
   * names of the balancers whose configuration was written or reloaded.
   */
  updateBalancers(opts?: { timeoutMs?: number; site?: string }): Promise<string[]>;
}

const STATE_FILE = 'state.json';
/** Vigil's own stop budget is 20 s (src/cli/start.ts); SIGKILL only after it. */
const VIGIL_GRACE_MS = 25000;
const OTHER_GRACE_MS = 10000;

/** The state file of a dev cluster folder. */
export function stateFile(dir: string): string {
  return join(resolve(dir), STATE_FILE);
}

function readState(dir: string): DevClusterState {
  const file = stateFile(dir);
  if (!existsSync(file)) {
    throw new DevClusterError('no_cluster', `no dev cluster in ${resolve(dir)} (no ${STATE_FILE}): run up first`);
  }
  let state: DevClusterState;
  try {
    state = JSON.parse(readFileSync(file, 'utf8')) as DevClusterState;
  } catch (err) {
    throw new DevClusterError('state_invalid', `${file} is not valid JSON`, { cause: err });
  }
  if (state.version !== 1 || !Array.isArray(state.members)) {
    throw new DevClusterError('state_invalid', `${file} is not a dev cluster state (version ${state.version})`);
  }
  return state;
}

function writeState(state: DevClusterState): void {
  // Write then rename: a reader (or a crash) never sees half a file.
  const file = join(state.dir, STATE_FILE);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

const refOf = (m: MemberRecord): ProcessRef | undefined =>
  m.pid === null ? undefined : { pid: m.pid, startTicks: m.pid_start ?? undefined };

/** The environment of a member: this one without VIGIL_* (they would override the generated config). */
function memberEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VIGIL_')));
}

async function probe(m: MemberRecord): Promise<boolean> {
  try {
    const res = await fetch(m.ready_url, { signal: AbortSignal.timeout(2000) });
    if (m.kind === 'vigil') return res.status === 200 || inMaintenance(res.status, await res.text());
    if (m.kind !== 'etcd') {
      await res.arrayBuffer();
      return res.status === 200;
    }
    const body = (await res.json()) as { health?: string };
    return res.status === 200 && body.health === 'true';
  } catch {
    return false;
  }
}

/**
 * A node restarted in maintenance (a rolling upgrade) is up but deliberately not ready until an operator
 * disables maintenance: it counts as started when the cluster's maintenance check is all that fails.
 */
function inMaintenance(status: number, body: string): boolean {
  if (status !== 503) return false;
  try {
    const checks = Object.entries(
      (JSON.parse(body) as { checks?: Record<string, { ok: boolean; detail?: string }> }).checks ?? {},
    );
    const failing = checks.filter(([, c]) => !c.ok);
    return (
      failing.length === 1 &&
      failing[0][0] === 'cluster' &&
      /^maintenance: drain(ed|ing)$/.test(failing[0][1].detail ?? '')
    );
  } catch {
    return false;
  }
}

/** The last lines of a member's log, for error messages. */
export function logTail(m: MemberRecord, lines = 30): string {
  try {
    return readFileSync(m.log, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Start order: Vigil nodes connect to etcd and NATS at start, so those come first; HAProxy is ready once a
 * node is, so it comes last. Stop goes the other way, but NATS and etcd together.
 */
const START_PHASE: Record<MemberKind, number> = { nats: 0, etcd: 0, link: 0, vigil: 1, haproxy: 2 };

/** `m` started from `bin` instead of the `bin/vigil` it had (the command, or an argument of `ip netns exec`). */
function withVigilBin(m: MemberRecord, bin: string): void {
  const isVigil = (a: string) => a.endsWith('/bin/vigil');
  if (isVigil(m.command)) m.command = bin;
  else m.args = m.args.map((a) => (isVigil(a) ? bin : a));
}

async function waitReady(m: MemberRecord, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe(m))) {
    if (!isRunning(refOf(m))) {
      throw new DevClusterError('not_ready', `${m.name} exited before it was ready; log ${m.log}:\n${logTail(m)}`);
    }
    if (Date.now() > deadline) {
      throw new DevClusterError(
        'not_ready',
        `${m.name} was not ready within ${Math.round(timeoutMs / 1000)} s (${m.ready_url}); log ${m.log}:\n${logTail(m)}`,
      );
    }
    await sleep(200);
  }
}

/** Opens the dev cluster recorded in `dir`. */
export function openDevCluster(dir: string): DevCluster {
  const state = readState(dir);
  const byName = (name: string) => {
    const m = state.members.find((x) => x.name === name);
    if (!m) {
      throw new DevClusterError(
        'unknown_member',
        `no member ${name}: the members are ${state.members.map((x) => x.name).join(', ')}`,
      );
    }
    return m;
  };
  const selected = (names?: string[]) => (names ? names.map(byName) : state.members);

  const launch = async (m: MemberRecord) => {
    if (isRunning(refOf(m))) return;
    const ref = await spawnDetached({
      command: m.command,
      args: m.args,
      cwd: m.cwd,
      env: memberEnv(),
      logFile: m.log,
      name: m.name,
    });
    m.pid = ref.pid;
    m.pid_start = ref.startTicks ?? null;
    if (m.kind === 'haproxy') {
      // It reads its configuration as it starts: that is the one it serves, whatever failed before.
      m.balancer_loaded = fileDigest(m.files.config);
      delete m.balancer_error;
    }
    m.state = 'running';
    m.started_at = new Date().toISOString();
    m.stopped_at = null;
    writeState(state);
  };

  const markStopped = (m: MemberRecord) => {
    m.state = 'stopped';
    m.stopped_at = new Date().toISOString();
  };

  /** One balancer of updateBalancers: whether its file was written or it was reloaded. */
  const bringInLine = async (lb: MemberRecord, timeoutMs: number): Promise<boolean> => {
    const content = balancerConfig(lb, state.members);
    const file = lb.files.config;
    const written = existsSync(file) && readFileSync(file, 'utf8') === content;
    const running = isRunning(refOf(lb));
    // A state written before the digest was recorded: the file is taken for what it runs, as it was then.
    const loaded = lb.balancer_loaded ?? fileDigest(file);
    if (written && (!running || loaded === digest(content))) {
      // In line again (the members changed back after a failure): an error recorded before no longer holds.
      if (running && lb.balancer_error !== undefined) {
        delete lb.balancer_error;
        writeState(state);
      }
      return false;
    }
    if (!written) {
      checkBalancerConfig(lb, content);
      renameSync(`${file}.next`, file);
    }
    if (!lb.args.includes(BALANCER_MASTER_WORKER)) {
      // Recorded before the dev cluster ran HAProxy in master-worker mode: SIGUSR2 would kill it.
      lb.args = [BALANCER_MASTER_WORKER, ...lb.args];
      writeState(state);
      if (running) await cluster.restart(lb.name);
      return true;
    }
    // A stopped balancer reads the file when it starts again.
    if (!running) return true;
    const logFrom = fileSize(lb.log);
    const servers = state.members.filter((m) => m.kind === 'vigil' && m.site === lb.site).map((m) => m.name);
    await waitReloaded(lb, servers, timeoutMs, logFrom);
    lb.balancer_loaded = digest(content);
    delete lb.balancer_error;
    writeState(state);
    return true;
  };

  const cluster: DevCluster = {
    dir: state.dir,
    state: () => state,
    member: byName,
    status: () =>
      state.members.map((m) => ({
        kind: m.kind,
        name: m.name,
        ...(m.site ? { site: m.site } : {}),
        pid: m.pid,
        state: isRunning(refOf(m)) ? 'running' : 'stopped',
        addresses: m.addresses,
        log: m.log,
        ...(m.balancer_error ? { balancer_error: m.balancer_error } : {}),
      })),
    adminToken: () => readFileSync(state.admin_token_file, 'utf8').trim(),

    async start(names, opts = {}) {
      const timeout = opts.readyTimeoutMs ?? 180000;
      const members = selected(names);
      const wait = async (group: MemberRecord[]) => {
        if (opts.wait !== false) await Promise.all(group.map((m) => waitReady(m, timeout)));
      };
      for (const phase of [0, 1, 2]) {
        const group = members.filter((m) => START_PHASE[m.kind] === phase);
        for (const m of group) await launch(m);
        await wait(group);
      }
    },

    async kill(name, signal = 'SIGKILL') {
      const m = byName(name);
      const ref = refOf(m);
      if (signalProcess(ref, signal) && ref && !(await waitExit(ref, Date.now() + 15000))) {
        throw new DevClusterError('stop_failed', `${name} (PID ${ref.pid}) did not exit after ${signal}`);
      }
      markStopped(m);
      writeState(state);
    },

    signal(name, signal) {
      const m = byName(name);
      if (!signalProcess(refOf(m), signal)) {
        throw new DevClusterError('not_running', `${name} is not running`);
      }
    },

    async restart(name, opts = {}) {
      const m = byName(name);
      if (opts.vigilBin && m.kind !== 'vigil') {
        throw new DevClusterError('not_vigil', `${name} is not a Vigil node: it cannot start from ${opts.vigilBin}`);
      }
      const outcome = await stopProcess(refOf(m), { graceMs: m.kind === 'vigil' ? VIGIL_GRACE_MS : OTHER_GRACE_MS });
      markStopped(m);
      if (opts.vigilBin) withVigilBin(m, opts.vigilBin);
      writeState(state);
      await cluster.start([name], opts);
      return outcome;
    },

    async stop(names, opts = {}) {
      const members = selected(names);
      const outcomes: Record<string, StopOutcome> = {};
      const group = async (list: MemberRecord[], graceMs: number) => {
        await Promise.all(
          list.map(async (m) => {
            outcomes[m.name] = await stopProcess(refOf(m), { signal: opts.signal ?? 'SIGTERM', graceMs });
          }),
        );
        for (const m of list) markStopped(m);
        writeState(state);
      };
      // The balancer first, so that no client is sent to a node that is stopping; then Vigil nodes: their
      // graceful stop hands pending events to NATS and partitions over in etcd.
      await group(
        members.filter((m) => m.kind === 'haproxy'),
        OTHER_GRACE_MS,
      );
      await group(
        members.filter((m) => m.kind === 'vigil'),
        VIGIL_GRACE_MS,
      );
      await group(
        members.filter((m) => m.kind === 'nats' || m.kind === 'etcd' || m.kind === 'link'),
        OTHER_GRACE_MS,
      );
      return outcomes;
    },

    async add(count, opts = {}) {
      const { site, ...startOpts } = opts;
      // Ports recorded by stopped members are not listening now, but are theirs: never given twice.
      const recorded = new Set(
        state.members.flatMap((m) =>
          Object.values(m.addresses).flatMap((a) => {
            const port = /:(\d+)/.exec(a)?.[1];
            return port ? [Number(port)] : [];
          }),
        ),
      );
      const free = portAllocator();
      const port = async () => {
        for (;;) {
          const p = await free();
          if (!recorded.has(p)) return p;
        }
      };
      const plan = await planAddedNodes(
        state,
        { count, site },
        { port, readConfig: (path) => readFileSync(path, 'utf8') },
      );
      writePlanFiles(plan);
      const problems = invalidConfigs(plan.state.members);
      if (problems.length > 0) {
        throw new DevClusterError('config_invalid', `a generated configuration is invalid:\n${problems.join('\n')}`);
      }
      state.members.push(...plan.state.members);
      writeState(state);
      const names = plan.state.members.map((m) => m.name);
      try {
        await cluster.start(names, startOpts);
      } catch (err) {
        // Best effort after a failed start: the start's error is the one reported.
        await cluster.stop(names, { signal: 'SIGKILL' }).catch(() => undefined);
        throw err;
      }
      try {
        await cluster.updateBalancers({ site });
      } catch (err) {
        if (!(err instanceof DevClusterError)) throw err;
        throw new DevClusterError(
          err.code,
          `${names.join(', ')} joined and are recorded, but the balancer does not send to them yet ` +
            `(retry with \`vigil dev-cluster reload-balancer${site === undefined ? '' : ` --site ${site}`}\`): ${err.message}`,
          { cause: err, details: { added: names } },
        );
      }
      return names;
    },

    async updateBalancers(opts = {}) {
      if (opts.site !== undefined) siteMembers(state.members, opts.site);
      const lbs = state.members.filter(
        (m) => m.kind === 'haproxy' && (opts.site === undefined || m.site === opts.site),
      );
      const changed: string[] = [];
      const failed: DevClusterError[] = [];
      for (const lb of lbs) {
        try {
          if (await bringInLine(lb, opts.timeoutMs ?? 30000)) changed.push(lb.name);
        } catch (err) {
          const e =
            err instanceof DevClusterError
              ? err
              : new DevClusterError('lb_reload_failed', `${lb.name} was not updated: ${errorMessage(err)}`, {
                  cause: err,
                });
          lb.balancer_error = { code: e.code, message: e.message.split('\n')[0], at: new Date().toISOString() };
          writeState(state);
          failed.push(e);
        }
      }
      if (failed.length > 1) {
        throw new DevClusterError(failed[0].code, failed.map((e) => e.message).join('\n'), { cause: failed[0] });
      }
      if (failed[0]) throw failed[0];
      return changed;
    },
  };
  return cluster;
}

/**
 * `haproxy -c` on `content`, written beside the balancer's configuration as `<file>.next` (left there for
 * the caller to rename into place): a configuration HAProxy refuses never replaces the one it runs.
 */
function checkBalancerConfig(lb: MemberRecord, content: string): void {
  const next = `${lb.files.config}.next`;
  writeFileSync(next, content, { mode: 0o644 });
  const r = spawnSync(lb.command, ['-c', '-f', next], { encoding: 'utf8', timeout: 30000 });
  if (r.status !== 0) {
    const said = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() || (r.error?.message ?? `exit status ${r.status}`);
    throw new DevClusterError(
      'lb_config_invalid',
      `haproxy -c refused the new configuration of ${lb.name} (${next}), which is not loaded: ${said}`,
    );
  }
}

const digest = (content: string | Buffer) => createHash('sha256').update(content).digest('hex');

/** SHA-256 of a file's content; undefined when it cannot be read. */
function fileDigest(path: string): string | undefined {
  try {
    return digest(readFileSync(path));
  } catch {
    return undefined;
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** How long a balancer's master has to log that it took a reload signal before it is sent another. */
const RESIGNAL_MS = 2000;

/** What HAProxy's master logs as it takes a reload signal, once the reload loaded, and once it failed. */
const RELOADING = 'Reloading HAProxy';
const LOADED = 'Loading success.';
const REFUSED = 'Loading failure!';

/**
 * Reads what a process logs after `offset`, a bounded chunk per call, line by line: the lines that match
 * `keep` are kept (bounded too), whatever the log's volume meanwhile (a balancer logs failed requests), and
 * each of `marks` found in some line is noted, past that bound too.
 */
function logFollower(path: string, offset: number, keep: RegExp, marks: readonly string[] = []) {
  let at = offset;
  let partial = '';
  const kept: string[] = [];
  const seen = new Set<string>();
  const buf = Buffer.alloc(1 << 18);
  return {
    kept,
    seen,
    poll(): void {
      let fd: number | undefined;
      try {
        fd = openSync(path, 'r');
        const n = readSync(fd, buf, 0, buf.length, at);
        at += n;
        const lines = (partial + buf.subarray(0, n).toString('utf8')).split('\n');
        partial = (lines.pop() ?? '').slice(-4096);
        for (const l of lines) {
          if (!keep.test(l)) continue;
          if (kept.length < 100) kept.push(l);
          for (const m of marks) if (l.includes(m)) seen.add(m);
        }
      } catch {
        // not written yet: asked again
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    },
  };
}

/**
 * Waits until the balancer's master logs (in its log file, after `logFrom`) that the reload succeeded and
 * its stats page (answered by the newest worker once the old one has let its listeners go) lists exactly
 * `servers` in its HTTP backend. A master whose reload failed (a listener it could not bind: `haproxy -c`
 * binds nothing) keeps the old worker serving the old configuration and logs "Loading failure!" (HAProxy
 * 2.5 and later; Debian 12 has 2.6), which ends the wait at once with its alerts quoted; the servers alone
 * would not tell, when they are the same. A master re-executing itself (to wait after a refused reload)
 * loses a SIGUSR2 sent meanwhile: one not followed by "Reloading HAProxy" within RESIGNAL_MS is sent again
 * (a reload more of the same file changes nothing).
 */
async function waitReloaded(lb: MemberRecord, servers: string[], timeoutMs: number, logFrom: number): Promise<void> {
  const want = [...servers].sort().join(',');
  const deadline = Date.now() + timeoutMs;
  let seen = '';
  const log = logFollower(lb.log, logFrom, /\[ALERT\]|Loading (failure!|success\.)|Reloading HAProxy/, [
    RELOADING,
    LOADED,
    REFUSED,
  ]);
  signalProcess(refOf(lb), 'SIGUSR2');
  let signalled = Date.now();
  for (;;) {
    if (!isRunning(refOf(lb))) {
      throw new DevClusterError(
        'lb_reload_failed',
        `${lb.name} exited while reloading; log ${lb.log}:\n${logTail(lb)}`,
      );
    }
    log.poll();
    if (!log.seen.has(RELOADING) && Date.now() - signalled >= RESIGNAL_MS) {
      signalProcess(refOf(lb), 'SIGUSR2');
      signalled = Date.now();
    }
    const loaded = log.seen.has(LOADED);
    if (log.seen.has(REFUSED)) {
      const alerts = log.kept.filter((l) => l.includes('[ALERT]') || l.includes(REFUSED));
      throw new DevClusterError(
        'lb_reload_failed',
        `${lb.name} refused to reload (its old worker still serves the previous configuration): ${alerts.join(' ')}; log ${lb.log}`,
      );
    }
    try {
      seen = [...(await balancerServerStates(lb.addresses.stats)).keys()].sort().join(',');
      if (seen === want && loaded) return;
    } catch {
      // between the old worker's listeners and the new one's: asked again
    }
    if (Date.now() > deadline) {
      throw new DevClusterError(
        'lb_reload_failed',
        `${lb.name} did not serve its new configuration within ${Math.round(timeoutMs / 1000)} s (servers ${seen || 'unknown'}, not ${want}; reload ${loaded ? 'logged' : 'not logged'}); log ${lb.log}:\n${logTail(lb)}`,
      );
    }
    await sleep(200);
  }
}

/** Writes a plan's folders and files (configs, tokens). */
function writePlanFiles(plan: Plan): void {
  for (const d of plan.dirs) mkdirSync(d, { recursive: true });
  for (const f of plan.files) {
    mkdirSync(resolve(f.path, '..'), { recursive: true });
    writeFileSync(f.path, f.content, { mode: f.mode });
  }
}

/** Each Vigil member's generated configuration checked as `vigil start` would: the problems found. */
function invalidConfigs(members: readonly MemberRecord[]): string[] {
  const problems: string[] = [];
  for (const m of members.filter((x) => x.kind === 'vigil')) {
    try {
      loadConfig({ file: m.files.config, env: {} });
    } catch (err) {
      problems.push(`${m.name}: ${errorMessage(err)}`);
    }
  }
  return problems;
}

/**
 * Plans and writes a new dev cluster in `opts.dir` (configs, token, state.json with every member stopped)
 * without starting it. Each generated Vigil config is validated as `vigil start` would. Throws `already_up`
 * when the folder already holds a cluster.
 */
export async function createDevCluster(opts: DevClusterOptions): Promise<DevCluster> {
  const dir = resolve(opts.dir);
  if (existsSync(stateFile(dir))) {
    throw new DevClusterError('already_up', `${dir} already holds a dev cluster (${STATE_FILE})`);
  }
  const binaries = findBinaries(process.env, [...CORE_BINARIES, ...(opts.lb ? (['haproxy'] as const) : [])]);
  if (opts.linkRelay && opts.sites !== 2) {
    throw new DevClusterError('bad_link', 'a link relay joins two sites: --link-relay needs --sites 2');
  }
  const plan = (opts.sites ?? 1) > 1 ? await planSites(opts, binaries) : await planDevCluster(opts, binaries);
  mkdirSync(dir, { recursive: true });
  writePlanFiles(plan);
  const problems = invalidConfigs(plan.state.members);
  if (problems.length > 0) {
    throw new DevClusterError('config_invalid', `a generated configuration is invalid:\n${problems.join('\n')}`);
  }
  writeState(plan.state);
  return openDevCluster(dir);
}

/**
 * `up`: creates the cluster in `opts.dir` unless it exists (then its stopped members start again with the
 * same configs, ports and data), and starts every member, waiting until each is ready. If a member does not
 * become ready, every member is stopped before the error is thrown; the logs stay.
 */
export async function upDevCluster(opts: DevClusterOptions & StartOptions): Promise<DevCluster> {
  const existing = existsSync(stateFile(opts.dir));
  const cluster = existing ? openDevCluster(opts.dir) : await createDevCluster(opts);
  if (existing && opts.lb && !cluster.state().members.some((m) => m.kind === 'haproxy')) {
    throw new DevClusterError(
      'already_up',
      `${cluster.dir} holds a cluster without a balancer: run down and remove the folder first to add --lb`,
    );
  }
  if (existing && opts.linkRelay && !cluster.state().members.some((m) => m.kind === 'link')) {
    throw new DevClusterError(
      'already_up',
      `${cluster.dir} holds a cluster without a link relay: run down and remove the folder first to add --link-relay`,
    );
  }
  if (existing && opts.nodes !== undefined) {
    const have = cluster.state().members.filter((m) => m.kind === 'vigil').length;
    const sites = new Set(cluster.state().members.flatMap((m) => (m.site ? [m.site] : []))).size || 1;
    if (have !== opts.nodes * sites) {
      throw new DevClusterError(
        'already_up',
        `${cluster.dir} holds a cluster of ${have} Vigil nodes, not ${opts.nodes * sites}: run down and remove the folder first`,
      );
    }
  }
  if (existing && opts.sites !== undefined) {
    const sites = new Set(cluster.state().members.flatMap((m) => (m.site ? [m.site] : []))).size || 1;
    if (sites !== opts.sites) {
      throw new DevClusterError(
        'already_up',
        `${cluster.dir} holds a cluster of ${sites} site(s), not ${opts.sites}: run down and remove the folder first`,
      );
    }
  }
  try {
    await cluster.start(undefined, opts);
  } catch (err) {
    // Best effort after a failed start: the start's error is the one reported.
    await cluster.stop(undefined, { signal: 'SIGKILL' }).catch(() => undefined);
    throw err;
  }
  return cluster;
}
