import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { DevClusterError } from './errors.ts';
import { sleep } from '../lib/retry.ts';

/** A process the dev cluster started: its PID and, where /proc exists, its start time (guards PID reuse). */
export interface ProcessRef {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot); undefined where /proc is not available. */
  startTicks?: string;
}

/** Field 22 (starttime) and field 3 (state) of /proc/<pid>/stat, or undefined when the PID is gone. */
function procStat(pid: number): { state: string; startTicks: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0], startTicks: fields[19] };
}

function hasProc(): boolean {
  try {
    readFileSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
}

const PROC = hasProc();

/**
 * Whether `ref` is still the process that was started: alive, not a zombie, and (with /proc) started at
 * the recorded time, so that a PID reused by an unrelated process is never taken for a member.
 */
export function isRunning(ref: ProcessRef | undefined): boolean {
  if (!ref) return false;
  if (PROC) {
    const st = procStat(ref.pid);
    if (!st || st.state === 'Z' || st.state === 'X') return false;
    return ref.startTicks === undefined || st.startTicks === ref.startTicks;
  }
  try {
    process.kill(ref.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Starts `command` detached from this process (its own session, stdin closed, stdout and stderr appended
 * to `logFile`), so that it outlives the CLI. Resolves once the PID is known; it does not wait for the
 * process to be ready.
 */
export async function spawnDetached(spec: {
  command: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  logFile: string;
  name: string;
}): Promise<ProcessRef> {
  const fd = openSync(spec.logFile, 'a', 0o600);
  try {
    writeSync(fd, `--- ${new Date().toISOString()} starting ${spec.name}: ${spec.command} ${spec.args.join(' ')}\n`);
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (err) =>
        reject(new DevClusterError('spawn_failed', `cannot start ${spec.name} (${spec.command})`, { cause: err })),
      );
      child.once('spawn', () => resolve(child.pid!));
    });
    // The child is on its own: this process may exit while it runs (libuv still reaps it if we outlive it).
    child.unref();
    return { pid, startTicks: procStat(pid)?.startTicks };
  } finally {
    closeSync(fd);
  }
}

/** Polls until `ref` is no longer running; false if it still runs at `deadline` (epoch ms). */
export async function waitExit(ref: ProcessRef, deadline: number): Promise<boolean> {
  while (isRunning(ref)) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

/** Sends `signal` to the PID of `ref` if it is still that process; false when it was not running. */
export function signalProcess(ref: ProcessRef | undefined, signal: NodeJS.Signals): boolean {
  if (!ref || !isRunning(ref)) return false;
  try {
    process.kill(ref.pid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw new DevClusterError('signal_failed', `cannot send ${signal} to PID ${ref.pid}`, { cause: err });
  }
}

/** How a stop ended: exited after the first signal, needed SIGKILL, or was not running. */
export type StopOutcome = 'exited' | 'killed' | 'not running';

/**
 * Stops a process by PID: `signal` (SIGTERM by default), then SIGKILL if it has not exited after
 * `graceMs`. Resolves when it is gone, saying which it took.
 */
export async function stopProcess(
  ref: ProcessRef | undefined,
  opts: { signal?: NodeJS.Signals; graceMs?: number } = {},
): Promise<StopOutcome> {
  if (!ref || !signalProcess(ref, opts.signal ?? 'SIGTERM')) return 'not running';
  if (await waitExit(ref, Date.now() + (opts.graceMs ?? 10000))) return opts.signal === 'SIGKILL' ? 'killed' : 'exited';
  signalProcess(ref, 'SIGKILL');
  if (!(await waitExit(ref, Date.now() + 10000))) {
    throw new DevClusterError('stop_failed', `PID ${ref.pid} did not exit after SIGKILL`);
  }
  return 'killed';
}
