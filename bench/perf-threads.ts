/**
 * Sums a `perf script -F comm,tid,ip,sym` profile of a Vigil process by kind of thread and task (see
 * bench/perf-ingest.sh). A thread's kind comes from what any of its samples shows at the base of its stack
 * (V8's platform workers, Node's worker threads) or from its name: the engine names its own threads
 * (QueryPipelineEx, ThreadPool, MergeMutate...), while Node 20 leaves libuv's pool named after the process,
 * `node`. V8's helpers are split by task, libuv's pool by what runs there.
 * Usage: node --import tsx bench/perf-threads.ts <perf.txt> <vigil pid> [bench log, for CPU-µs an event].
 */
import { readFileSync } from 'node:fs';

const V8_TASKS: [string, RegExp][] = [
  ['TurboFan (JavaScript)', /OptimizingCompileDispatcher/],
  ['WebAssembly compile', /wasm::/],
  ['concurrent marking', /ConcurrentMarking|MarkCompact|IncrementalMarking|MarkingVisitor/],
  ['sweeping', /Sweeper/],
  ['scavenge', /Scaveng|MinorMark/],
];
const POOL_TASKS: [string, RegExp][] = [
  ['madvise (engine memory purge)', /madvise/],
  ['file writes', /__GI___libc_write|__libc_write|ext4_/],
  ['engine calls', /libchdb|\[unknown\]/],
];

interface Sample {
  tid: string;
  comm: string;
  stack: string;
}

function readSamples(path: string): Sample[] {
  const samples: Sample[] = [];
  const frames: string[][] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    if (!/^\s/.test(line)) {
      const head = line.trim().split(/\s+/);
      samples.push({ tid: head[head.length - 1], comm: head.slice(0, -1).join(' '), stack: '' });
      frames.push([]);
    } else if (frames.length > 0) {
      // `<ip> <symbol>`: the symbol is what classifies.
      frames[frames.length - 1].push(line.trim().replace(/^\S+\s*/, '') || '?');
    }
  }
  samples.forEach((s, i) => {
    s.stack = frames[i].join('\n');
  });
  return samples;
}

function main(path: string, pid: string, log?: string): void {
  const samples = readSamples(path);
  const kinds = new Map<string, string>();
  for (const s of samples) {
    if (s.tid === pid) kinds.set(s.tid, 'JavaScript (main) thread');
    else if (s.stack.includes('PlatformWorkerThread')) kinds.set(s.tid, 'V8 helpers');
    else if (s.stack.includes('node::worker::Worker')) kinds.set(s.tid, 'worker thread (PGlite)');
    else if (!kinds.has(s.tid))
      kinds.set(s.tid, s.comm === 'node' || /^worker$/m.test(s.stack) ? 'libuv pool' : 'engine threads');
  }
  const counts = new Map<string, number>();
  for (const s of samples) {
    const kind = kinds.get(s.tid) ?? 'engine threads';
    const tasks = kind === 'V8 helpers' ? V8_TASKS : kind === 'libuv pool' ? POOL_TASKS : [];
    const task = tasks.length === 0 ? undefined : (tasks.find(([, p]) => p.test(s.stack))?.[0] ?? 'other');
    const key = task ? `${kind}: ${task}` : kind;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const total = samples.length;
  const text = log ? readFileSync(log, 'utf8') : '';
  const events = Number(/"accepted": (\d+)/.exec(text)?.[1] ?? Number.NaN);
  const cpuS = Number(/"vigil_cpu_s": ([\d.]+)/.exec(text)?.[1] ?? Number.NaN);
  const perEvent = Number.isFinite(events) && Number.isFinite(cpuS);
  console.log(`${total} samples${perEvent ? `, ${events} events, ${cpuS} CPU-s of the process` : ''}`);
  const group = (k: string) => k.split(':')[0];
  const groups = new Map<string, number>();
  for (const [k, n] of counts) groups.set(group(k), (groups.get(group(k)) ?? 0) + n);
  const sorted = [...counts].sort(
    (a, b) => (groups.get(group(b[0])) ?? 0) - (groups.get(group(a[0])) ?? 0) || b[1] - a[1],
  );
  for (const [k, n] of sorted) {
    const share = n / total;
    const us = perEvent ? `  ~${Math.round((share * cpuS * 1e6) / events)} µs an event` : '';
    console.log(`${k.padEnd(50)} ${String(n).padStart(6)} ${(100 * share).toFixed(1).padStart(5)}%${us}`);
  }
}

const [path, pid, log] = process.argv.slice(2);
if (!path || !pid) {
  console.error('usage: perf-threads.ts <perf script output> <pid> [bench log]');
  process.exit(2);
}
main(path, pid, log);
