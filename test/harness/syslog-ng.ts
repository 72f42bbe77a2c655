import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import { superviseSender } from './rsyslog.ts';

/**
 * syslog-ng 3.38 (Debian 12) as a real sender. Its Debian package conflicts with rsyslog's (both provide
 * system-log-daemon), so it is not installed: the harness fetches syslog-ng-core and the libraries it needs
 * that a Debian 12 base lacks (`apt-get download`, which needs root and a reachable mirror, as in CI) and
 * unpacks them with `dpkg -x` into a cache folder shared by test processes (VIGIL_SYSLOG_NG_CACHE, by default
 * /tmp/vigil-syslog-ng/3.38). The binary then runs from there with LD_LIBRARY_PATH and --module-path.
 */
const PACKAGES = ['syslog-ng-core', 'libivykis0', 'libnet1', 'libwrap0', 'libpcre3'];

export const SYSLOG_NG_CACHE = process.env.VIGIL_SYSLOG_NG_CACHE ?? join(tmpdir(), 'vigil-syslog-ng', '3.38');

interface Install {
  bin: string;
  modules: string;
  libraryPath: string;
}

function layout(root: string): Install {
  return {
    bin: join(root, 'usr/sbin/syslog-ng'),
    modules: join(root, 'usr/lib/syslog-ng/3.38'),
    libraryPath: [
      join(root, 'usr/lib/syslog-ng'),
      join(root, 'usr/lib/x86_64-linux-gnu'),
      join(root, 'lib/x86_64-linux-gnu'),
      join(root, 'usr/lib/aarch64-linux-gnu'),
      join(root, 'lib/aarch64-linux-gnu'),
    ].join(':'),
  };
}

/** Libraries the binary or its modules cannot load from `root` (ldd's "not found" lines); empty when all load. */
function unresolved(inst: Install): string[] {
  const missing = new Set<string>();
  const files = [
    inst.bin,
    ...readdirSync(inst.modules)
      .filter((f) => f.endsWith('.so'))
      .map((f) => join(inst.modules, f)),
  ];
  for (const f of files) {
    const out = execFileSync('ldd', [f], {
      env: { ...process.env, LD_LIBRARY_PATH: inst.libraryPath },
      encoding: 'utf8',
    });
    for (const line of out.split('\n')) if (line.includes('not found')) missing.add(line.trim().split(' ')[0]);
  }
  return [...missing];
}

let installed: Install | undefined;

/**
 * The unpacked syslog-ng, fetched when the cache lacks it. Throws with the reason (apt failed, or a library
 * that cannot be loaded from the unpacked packages) so that a test's skip message says exactly what.
 */
export function syslogNg(): Install {
  if (installed) return installed;
  const root = join(SYSLOG_NG_CACHE, 'root');
  if (!existsSync(layout(root).bin)) {
    mkdirSync(SYSLOG_NG_CACHE, { recursive: true });
    const work = mkdtempSync(join(SYSLOG_NG_CACHE, 'fetch-'));
    try {
      const download = () =>
        execFileSync('apt-get', ['download', ...PACKAGES], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        download();
      } catch {
        // A fresh container has no package lists yet.
        execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'pipe', 'pipe'] });
        download();
      }
      for (const deb of readdirSync(work).filter((f) => f.endsWith('.deb'))) {
        execFileSync('dpkg', ['-x', join(work, deb), join(work, 'root')]);
      }
      try {
        renameSync(join(work, 'root'), root);
      } catch (err) {
        // Another test process unpacked it meanwhile.
        if (!existsSync(layout(root).bin)) throw err;
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  const inst = layout(root);
  const missing = unresolved(inst);
  if (missing.length > 0) throw new Error(`syslog-ng cannot load ${missing.join(', ')} from ${root}`);
  installed = inst;
  return inst;
}

/** Why syslog-ng cannot run here (for a test's skip), or false when it can. */
export function syslogNgUnavailable(): string | false {
  try {
    syslogNg();
    return false;
  } catch (err) {
    return `syslog-ng 3.38 is not available: ${(err as Error).message.split('\n')[0]}`;
  }
}

export interface SyslogNg {
  /** Loopback TCP port of its input (network(), newline-framed RFC 3164). */
  inputPort: number;
  pid: number;
  dir: string;
  send(lines: string[], opts?: { perTick?: number; tickMs?: number; onTick?: (sent: number) => void }): Promise<void>;
  /** syslog-ng's own output (-e: its internal messages on stderr). */
  output(): string;
  /** Stops syslog-ng by its PID (SIGTERM, then SIGKILL) and removes its folder. */
  stop(): Promise<void>;
}

/**
 * Starts `syslog-ng -F` with a configuration of its own (persist file, PID file and control socket under a
 * temporary folder) whose input, on a loopback port, is logged to `destination` (a syslog-ng destination
 * driver, e.g. `network("127.0.0.1" port(514) transport(tcp))`) with flow control. `env` is given to syslog-ng
 * (TZ=America/New_York makes it a sender in New York).
 */
export async function startSyslogNg(opts: {
  destination: string;
  /** More options of the network() source, e.g. `host-override("nyhost")` to name the sending host. */
  sourceOptions?: string;
  env?: Record<string, string>;
}): Promise<SyslogNg> {
  const inst = syslogNg();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-syslog-ng-'));
  const inputPort = await freePort();
  const conf = join(dir, 'syslog-ng.conf');
  writeFileSync(
    conf,
    [
      '@version: 3.38',
      // time-reopen: reconnect 1 s after the receiver went away (60 s by default).
      'options { keep-hostname(yes); use-dns(no); chain-hostnames(no); time-reopen(1); stats-freq(0); log-fifo-size(100000); };',
      `source s_in { network(ip("127.0.0.1") port(${inputPort}) transport("tcp") log-iw-size(100000) ${opts.sourceOptions ?? ''}); };`,
      `destination d_out { ${opts.destination}; };`,
      'log { source(s_in); destination(d_out); flags(flow-control); };',
      '',
    ].join('\n'),
  );
  const proc: ChildProcess = spawn(
    inst.bin,
    [
      '-F',
      '-e',
      '--no-caps',
      '-f',
      conf,
      `--module-path=${inst.modules}`,
      `--persist-file=${join(dir, 'syslog-ng.persist')}`,
      `--pidfile=${join(dir, 'syslog-ng.pid')}`,
      `--control=${join(dir, 'syslog-ng.ctl')}`,
    ],
    { env: { ...process.env, ...opts.env, LD_LIBRARY_PATH: inst.libraryPath }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return superviseSender('syslog-ng', proc, inputPort, dir);
}
