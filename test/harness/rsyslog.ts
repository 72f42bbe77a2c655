import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';

/** An rsyslog started by a test: lines written to its TCP input go through `action` (a forwarder to Vigil). */
export interface Rsyslog {
  /** Loopback TCP port of its input (imtcp, newline-framed). */
  inputPort: number;
  pid: number;
  dir: string;
  /** Writes lines to the input over one connection, `perTick` lines every `tickMs`, and resolves when sent. */
  send(lines: string[], opts?: { perTick?: number; tickMs?: number; onTick?: (sent: number) => void }): Promise<void>;
  /** rsyslog's own output (errors and warnings). */
  output(): string;
  /** Stops rsyslog by its PID (SIGTERM, then SIGKILL) and removes its folder. */
  stop(): Promise<void>;
}

/** Whether rsyslogd is installed (Debian packages rsyslog and rsyslog-relp; scripts/test-setup.sh installs them). */
export function hasRsyslog(module = 'omrelp'): boolean {
  try {
    execFileSync('rsyslogd', ['-v'], { stdio: 'ignore' });
  } catch {
    return false;
  }
  return module === '' || existsModule(module);
}

function existsModule(name: string): boolean {
  for (const dir of ['/usr/lib/x86_64-linux-gnu/rsyslog', '/usr/lib/aarch64-linux-gnu/rsyslog', '/usr/lib/rsyslog']) {
    try {
      execFileSync('test', ['-f', join(dir, `${name}.so`)]);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/**
 * Starts `rsyslogd -n` with a configuration of its own (its work folder, PID file and input port under a
 * temporary folder) whose input ruleset runs `action`, an rsyslog `action(...)` statement. `env` is given to
 * rsyslog (TZ=America/New_York makes it a sender in New York).
 */
export async function startRsyslog(opts: {
  action: string;
  modules?: string[];
  /** Statements before the ruleset (templates). */
  preamble?: string;
  env?: Record<string, string>;
}): Promise<Rsyslog> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-rsyslog-'));
  mkdirSync(join(dir, 'work'));
  const inputPort = await freePort();
  const conf = join(dir, 'rsyslog.conf');
  writeFileSync(
    conf,
    [
      `global(workDirectory="${join(dir, 'work')}" maxMessageSize="64k")`,
      'module(load="imtcp")',
      ...(opts.modules ?? []).map((m) => `module(load="${m}")`),
      `input(type="imtcp" port="${inputPort}" address="127.0.0.1" ruleset="fwd")`,
      opts.preamble ?? '',
      `ruleset(name="fwd") {\n  ${opts.action}\n}`,
      '',
    ].join('\n'),
  );
  const proc: ChildProcess = spawn('rsyslogd', ['-n', '-f', conf, '-i', join(dir, 'rsyslogd.pid')], {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return superviseSender('rsyslogd', proc, inputPort, dir);
}

/**
 * Watches a syslog daemon a test spawned (`name` in errors): collects its output, waits up to 10 s for it to
 * listen on `inputPort`, and returns the handle that sends to that port and stops the daemon by its PID
 * (SIGTERM, then SIGKILL after 5 s), then removes `dir`.
 */
export async function superviseSender(
  name: string,
  proc: ChildProcess,
  inputPort: number,
  dir: string,
): Promise<Rsyslog> {
  let out = '';
  proc.stdout?.on('data', (d) => {
    out += d;
  });
  proc.stderr?.on('data', (d) => {
    out += d;
  });
  const deadline = Date.now() + 10000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}:\n${out}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port: inputPort, host: '127.0.0.1' }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`${name} did not listen within 10 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const pid = proc.pid!;
  return {
    inputPort,
    pid,
    dir,
    output: () => out,
    send: (lines, o) => sendLines(inputPort, lines, o),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        process.kill(pid, 'SIGTERM');
        const timer = setTimeout(() => {
          if (proc.exitCode === null && proc.signalCode === null) process.kill(pid, 'SIGKILL');
        }, 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Writes lines to a loopback TCP port over one connection, `perTick` lines every `tickMs`; resolves when sent. */
export async function sendLines(
  port: number,
  lines: string[],
  o: { perTick?: number; tickMs?: number; onTick?: (sent: number) => void } = {},
): Promise<void> {
  const perTick = o.perTick ?? 50;
  const tickMs = o.tickMs ?? 50;
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(s));
    s.once('error', reject);
  });
  for (let i = 0; i < lines.length; i += perTick) {
    socket.write(
      lines
        .slice(i, i + perTick)
        .map((l) => `${l}\n`)
        .join(''),
    );
    o.onTick?.(Math.min(lines.length, i + perTick));
    await new Promise((r) => setTimeout(r, tickMs));
  }
  await new Promise<void>((resolve) => socket.end(() => resolve()));
}
