/** What every benchmark shares: options, the machine description, progress output, statistics, /proc reads. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem, type } from 'node:os';
import { join, resolve } from 'node:path';

/** The repository root. */
export const ROOT = resolve(import.meta.dirname, '..');

/** Benchmark data and results, git-ignored. */
export const BENCH_DIR = join(ROOT, '.bench');

/** Command-line options after the benchmark names: `--events 1000` gives `{ events: '1000' }`, `--flag` gives true. */
export type BenchOptions = Readonly<Record<string, string | boolean>>;

/** What a benchmark module answers; `run.ts` adds the benchmark name and the machine. */
export interface BenchOutcome {
  params: Record<string, unknown>;
  results: Record<string, unknown>;
  targets: Record<string, unknown>;
  met: Record<string, boolean | null>;
}

/** A benchmark of the registry in `run.ts`. */
export interface Benchmark {
  name: string;
  description: string;
  run(opts: BenchOptions): Promise<BenchOutcome>;
}

/** An integer option, or its default; throws on a value that is not an integer of at least `min`. */
export function intOption(opts: BenchOptions, name: string, fallback: number, min = 1): number {
  const v = opts[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < min) {
    throw new Error(`--${name} must be an integer of at least ${min}, not ${JSON.stringify(v)}`);
  }
  return n;
}

/** A boolean option: `--x`, `--x true`, `--x false`. */
export function boolOption(opts: BenchOptions, name: string, fallback: boolean): boolean {
  const v = opts[name];
  if (v === undefined) return fallback;
  if (v === true || v === 'true') return true;
  if (v === 'false') return false;
  throw new Error(`--${name} must be true or false, not ${JSON.stringify(v)}`);
}

/** The machine a result was measured on. */
export function machine(): Record<string, unknown> {
  const c = cpus();
  return {
    cpu: c[0]?.model ?? 'unknown',
    cores: c.length,
    memory_gb: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    os: `${type()} ${release()}`,
    loadavg_1m_at_start: round(loadavg()[0], 2),
  };
}

/** Progress and notes go to stderr so that stdout holds only the JSON result. */
export function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export function round(n: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** p50, p99, mean, min and max of a list of milliseconds, rounded to 0.1 ms. */
export function summarize(ms: readonly number[]): Record<string, number> {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  return {
    p50_ms: round(q(0.5), 1),
    p99_ms: round(q(0.99), 1),
    mean_ms: round(s.reduce((a, b) => a + b, 0) / s.length, 1),
    min_ms: round(s[0], 1),
    max_ms: round(s[s.length - 1], 1),
  };
}

/** A `/proc/<pid>/status` value in kB (VmHWM, VmRSS), or undefined when the process is gone. */
export function procStatusKb(pid: number, key: string): number | undefined {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** User plus system CPU seconds a process has used so far (from /proc/<pid>/stat). */
export function procCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: count fields from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / clockTicks();
}

let ticksPerSecond: number | undefined;
/** Linux's USER_HZ, the unit of /proc's CPU times. */
export function clockTicks(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  return ticksPerSecond;
}

/** The command line of a process, arguments joined by spaces. */
export function procCmdline(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
}

/** What a folder holds on disk: apparent bytes (`du -sb`), allocated bytes (`du -sk`), and its file count. */
export function diskUsage(path: string): { apparent_mb: number; allocated_mb: number; files: number } {
  const apparent = Number(execFileSync('du', ['-sb', path]).toString().split('\t')[0]);
  const allocatedKb = Number(execFileSync('du', ['-sk', path]).toString().split('\t')[0]);
  const files = Number(execFileSync('sh', ['-c', 'find "$1" -type f | wc -l', 'sh', path]).toString().trim());
  return { apparent_mb: Math.round(apparent / 2 ** 20), allocated_mb: Math.round(allocatedKb / 1024), files };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
