/**
 * `npm run bench [-- name ...] [--option value ...]`: runs the named benchmarks (all by default). Each prints
 * one JSON object to stdout, `{ benchmark, machine, params, results, targets, met }`, and writes it to
 * `.bench/results/<name>.json`; progress goes to stderr.
 *
 * The registry below is the one place that knows every benchmark: add a module exporting a `Benchmark`
 * and list it here. Several benchmarks run one child process each, because chdb allows one Session data
 * path per process and because each should start with a clean heap.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { backupBenchmark } from './backup.ts';
import { clusterBenchmark } from './cluster.ts';
import { clusterPartsBenchmark } from './cluster-parts.ts';
import { collectBenchmark } from './collect.ts';
import { fanoutBenchmark } from './fanout.ts';
import { incidentsBenchmark } from './incidents.ts';
import { BENCH_DIR, type Benchmark, type BenchOptions, machine, progress } from './common.ts';
import { ingestBenchmark } from './ingest.ts';
import { searchBenchmark } from './search.ts';
import { sigmaBenchmark } from './sigma.ts';

const BENCHMARKS: readonly Benchmark[] = [
  ingestBenchmark,
  searchBenchmark,
  sigmaBenchmark,
  clusterBenchmark,
  clusterPartsBenchmark,
  backupBenchmark,
  collectBenchmark,
  fanoutBenchmark,
  incidentsBenchmark,
];

const USAGE = `usage: npm run bench -- [name ...] [--option value ...]

benchmarks:
${BENCHMARKS.map((b) => `  ${b.name.padEnd(10)} ${b.description}`).join('\n')}

options (each benchmark reads the ones it knows):
  --events N             Mordor events used (ingest: 300000; search: all, as the base set)
  --clients N            ingest: concurrent HTTP clients (4)
  --batch N              ingest: events per request and per raw insert (5000)
  --syslog-connections N ingest: TCP connections (2)
  --syslog false         ingest: skip syslog
  --fsync-compare false  ingest: skip the second HTTP run with store.fsync=false
  --raw false            ingest: skip the raw chdb insert comparison
  --search-during false  ingest: skip timing searches idle and while the node ingests (a third Vigil)
  --search-runs N        ingest: timed runs of each search while idle (20)
  --vigil-env K=V,...    ingest: settings for every Vigil started (VIGIL_BUS__BATCH_MAX_EVENTS=5000)
  --sigma false          ingest: leave out the SigmaHQ rules/windows folder (loaded by default; VIGIL_BENCH_SIGMA)
  --threads-compare N    ingest: HTTP passes alternating ingest.threads 0 and N (--threads-passes P, 2 each)
  --rows N               search: stored events to search over (10000000)
  --shards S, --nodes N  search: also S shards over N nodes of a dev cluster, R = 1 (4 and 4; --shards 0: one node only)
  --chunk-hours N        search: target hours of events per INSERT of the build (6)
  --runs N               search: timed rounds, each query once on each target (15), after --warmups N (2)
  --query-budget-s N     search: stop starting rounds after N seconds (600)
  --token W, --host H    search: the word of query (a) (whoami), the host of query (d)
  --rebuild              search: rebuild the cached data sets
  --rows N, --shards S   fanout: synthetic events (1000000) and shards (4); --runs N timed runs (7)
  --rate N, --seconds N  cluster: events/s offered (3000), seconds measured after a 10 s warm-up (20)
  --idle-seconds N       cluster: seconds measured idle before the load (10), after --settle-seconds N (20)
  --profile-dir D        cluster: CPU profiles of the Vigil nodes' main threads over the measured window, into D
  --vigil-config JSON    cluster: merged into every Vigil node's configuration
  --rate N, --linger-ms N, --seconds N  cluster-parts: events/s (3000), a replica's batch interval (1000), seconds (30)
  --events N, --incremental-pct N  backup: events loaded (1000000), more events before the incremental (10)
  --rows N               backup: the search data set of N events instead (cached build; --base-events M: a base of M
                         Mordor events; --search-data DIR: a complete build of N rows elsewhere, only read, copied;
                         --settle-s S: wait up to S s for the copy's merges, 300)
  --events N, --clients N, --batch N  collect: events sent (100000), HTTP senders (4), events per request (1000)
  --alerts N, --keys N, --batch N  incidents: alerts a round (500) over keys (50), alerts per call (50); --rounds N (3),
                         --span-min N: minutes the alerts' times span (90, windows are 60)`;

function parseArgs(argv: readonly string[]): {
  names: string[];
  opts: Record<string, string | boolean>;
  rest: string[];
} {
  const names: string[] = [];
  const opts: Record<string, string | boolean> = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      names.push(a);
      continue;
    }
    rest.push(a);
    const eq = a.indexOf('=');
    if (eq > 0) opts[a.slice(2, eq)] = a.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--') && !isBenchmark(argv[i + 1])) {
      opts[a.slice(2)] = argv[++i];
      rest.push(argv[i]);
    } else opts[a.slice(2)] = true;
  }
  return { names, opts, rest };
}

function isBenchmark(name: string): boolean {
  return BENCHMARKS.some((b) => b.name === name);
}

/** Runs one benchmark in this process; prints and saves its result. */
async function runOne(bench: Benchmark, opts: BenchOptions): Promise<void> {
  const machineInfo = machine();
  const started = Date.now();
  progress(`${bench.name}: started`);
  const outcome = await bench.run(opts);
  const report = {
    benchmark: bench.name,
    // The machine is shared: the load at the end says how much of it the benchmark really had.
    machine: { ...machineInfo, loadavg_1m_at_end: Math.round(loadavg()[0] * 100) / 100 },
    params: outcome.params,
    results: outcome.results,
    targets: outcome.targets,
    met: outcome.met,
    measured_at: new Date(started).toISOString(),
    duration_s: Math.round((Date.now() - started) / 1000),
  };
  const text = JSON.stringify(report, null, 2);
  const dir = join(BENCH_DIR, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${bench.name}.json`), `${text}\n`);
  process.stdout.write(`${text}\n`);
  progress(`${bench.name}: done in ${report.duration_s} s, saved to ${join(dir, `${bench.name}.json`)}`);
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { names, opts, rest } = parseArgs(argv);
  const unknown = names.filter((n) => !isBenchmark(n));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark ${unknown.join(', ')}\n\n${USAGE}\n`);
    return 2;
  }
  const selected = names.length === 0 ? BENCHMARKS : BENCHMARKS.filter((b) => names.includes(b.name));
  if (selected.length === 1) {
    await runOne(selected[0], Object.freeze(opts));
    return 0;
  }
  let failed = 0;
  for (const bench of selected) {
    const child = spawnSync(process.execPath, [...process.execArgv, import.meta.filename, bench.name, ...rest], {
      stdio: 'inherit',
    });
    if (child.status !== 0) {
      failed++;
      progress(`${bench.name}: failed (exit ${child.status ?? child.signal})`);
    }
  }
  return failed === 0 ? 0 : 1;
}

// Exit explicitly: an embedded chdb engine may keep native threads that hold the event loop open.
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
