/**
 * `npm run bench -- search`: search latency through the HTTP API over 10M stored events (issue 12 target 3),
 * on one node and on S shards over N nodes of a dev cluster (issue 15), in one run.
 *
 * The data set (search-data.ts) is built once and cached under `.bench/search-data/` with the events schema
 * version: Mordor events normalized once, multiplied in the engine with INSERT ... SELECT in time order,
 * and left as continuous ingest leaves a table (search-data.ts, `endAsIngest`): every day whose writes
 * stopped half an hour before the newest write merged into one part, as the table's force merge does, the
 * newest day as its inserts and the engine's own merges left it; the same rule for the single node and each
 * shard. The build time is printed (this run's, and the cached build's own). Each run measures fresh copies
 * of the cached folders, so that every run finds the table in that state (the engine merges on while the
 * searches run, and no settling pause is taken): one node started on a copy of the whole set; the dev
 * cluster's nodes on copies of their shards' folders (search-cluster.ts explains how they start pre-filled).
 *
 * Searches alternate, query by query: one on the single node, one on the cluster (the order swapped every
 * round), so that the shared machine's load falls on both alike; p50 and p99 over the rounds. Every sharded
 * answer is checked equal to the single node's. `--shards 0` measures the single node only.
 */
import { cpSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { startVigil, type VigilNode } from '../test/harness/vigil.ts';
import {
  BENCH_DIR,
  type Benchmark,
  boolOption,
  intOption,
  procStatusKb,
  progress,
  round,
  summarize,
} from './common.ts';
import { type ShardedCluster, startShardedCluster } from './search-cluster.ts';
import { type BuildState, buildSearchData, DAY_MS, DEFAULT_CHUNK_HOURS, searchDataDir } from './search-data.ts';

/** Issue 12, target 3: p50 of each query over 10M events. */
const TARGET_P50_MS = 200;
/** Issue 15: the sharded `stats count() by` p50 within this factor of the single node's. */
const TARGET_SHARDED_RATIO = 1.5;

interface QuerySpec {
  name: string;
  q: string;
  range: 'all' | 'day';
}

/** One target to search: the single node, or the cluster through one of its nodes. */
interface Target {
  name: 'single' | 'sharded';
  url: string;
  token: string;
  pid: number;
  /** Base URLs whose `vigil_store_active_parts` add up to this target's parts. */
  partsFrom: string[];
}

interface Answer {
  wallMs: number;
  tookMs: number;
  /** What must match between the targets: the total, or the rows. */
  key: string;
  summary: string;
}

export const searchBenchmark: Benchmark = {
  name: 'search',
  description: 'search p50/p99 over 10M stored events, one node and S shards on a dev cluster (cached data set)',
  async run(opts) {
    const params = {
      rows: intOption(opts, 'rows', 10_000_000),
      events: opts.events === undefined ? ('all' as const) : intOption(opts, 'events', 1),
      rounds: intOption(opts, 'runs', 15),
      warmups: intOption(opts, 'warmups', 2, 0),
      query_budget_s: intOption(opts, 'query-budget-s', 600),
      shards: intOption(opts, 'shards', 4, 0),
      nodes: intOption(opts, 'nodes', 4),
      chunk_hours: intOption(opts, 'chunk-hours', DEFAULT_CHUNK_HOURS),
      token: typeof opts.token === 'string' ? opts.token : 'whoami',
      host: typeof opts.host === 'string' ? opts.host : 'MXS01.azsentinel.local',
      rebuild: boolOption(opts, 'rebuild', false),
    };
    const events = params.events === 'all' ? undefined : params.events;
    const build = async (shard?: { index: number; count: number }) => {
      const t = performance.now();
      const state = await buildSearchData({
        dir: searchDataDir(params.rows, events, shard),
        target: params.rows,
        events,
        rebuild: params.rebuild,
        shard,
        chunkHours: params.chunk_hours,
      });
      return { state, this_run_s: round((performance.now() - t) / 1000, 1) };
    };
    const single = await build();
    const shardBuilds: { state: BuildState; this_run_s: number }[] = [];
    for (let k = 0; k < params.shards; k++) shardBuilds.push(await build({ index: k, count: params.shards }));
    const sharded = params.shards > 0;

    const from = Date.parse(single.state.window_from);
    const to = Date.parse(single.state.window_to);
    const day = from + 15 * DAY_MS;
    const queries: QuerySpec[] = [
      { name: 'a_token', q: params.token, range: 'all' },
      { name: 'b_field_one_day', q: 'EventID:4688', range: 'day' },
      { name: 'c_stats_by_channel', q: '* | stats count() by Channel', range: 'all' },
      { name: 'd_host_stats_by_eventid', q: `host.name:"${params.host}" | stats count() by EventID`, range: 'all' },
      { name: 'e_timechart_one_day', q: '* | timechart span=1h count()', range: 'day' },
    ];
    const rangeOf = (spec: QuerySpec) => (spec.range === 'all' ? { from, to } : { from: day, to: day + DAY_MS });

    const runDir = join(BENCH_DIR, 'search-run');
    rmSync(runDir, { recursive: true, force: true });
    const singleDir = join(runDir, 'single');
    let t = performance.now();
    // A plain copy (new modification times): the parts are as young as the build left them.
    cpSync(searchDataDir(params.rows, events), singleDir, { recursive: true });
    const copyS = round((performance.now() - t) / 1000, 1);
    progress(`data set copied for this run in ${copyS} s; starting the single node`);
    let vigil: VigilNode | undefined;
    let cluster: ShardedCluster | undefined;
    const results: Record<string, unknown> = {};
    const targets: Record<string, unknown> = {};
    const met: Record<string, boolean | null> = {};
    try {
      t = performance.now();
      vigil = await startVigil({ dataDir: singleDir, readyTimeoutMs: 600_000 });
      const singleStartS = round((performance.now() - t) / 1000, 1);
      const list: Target[] = [
        { name: 'single', url: vigil.url, token: vigil.token, pid: vigil.proc.pid ?? 0, partsFrom: [vigil.url] },
      ];
      let clusterStartS: number | undefined;
      if (sharded) {
        progress(
          `starting a dev cluster of ${params.nodes} nodes, ${params.shards} shards, R = 1, on the shard folders`,
        );
        t = performance.now();
        cluster = await startShardedCluster({
          dir: join(runDir, 'cluster'),
          nodes: params.nodes,
          shards: params.shards,
          shardDirs: shardBuilds.map((_, k) => searchDataDir(params.rows, events, { index: k, count: params.shards })),
          readyTimeoutMs: 600_000,
        });
        clusterStartS = round((performance.now() - t) / 1000, 1);
        const coordinator = 'vigil-1';
        list.push({
          name: 'sharded',
          url: cluster.urls.get(coordinator) ?? '',
          token: cluster.token,
          pid: cluster.pid(coordinator),
          partsFrom: [...cluster.urls.values()],
        });
      }
      const partsAtStart = Object.fromEntries(await Promise.all(list.map(async (x) => [x.name, await partsOf(x)])));
      progress(`searching right away (no settling pause); active parts ${JSON.stringify(partsAtStart)}`);

      const counted = Object.fromEntries(
        await Promise.all(
          list.map(async (x) => {
            const key = await search(x, '* | stats count()', { from, to }).then(
              (a) => a.key,
              (err: unknown) => `error: ${(err as Error).message}`,
            );
            return [x.name, key] as const;
          }),
        ),
      );
      const errors: Record<string, Record<string, string[]>> = {};
      const noteError = (query: string, target: string, err: unknown) => {
        errors[query] = errors[query] ?? {};
        errors[query][target] = [...(errors[query][target] ?? []), String((err as Error).message ?? err).slice(0, 300)];
        progress(`${query} on ${target} failed: ${(err as Error).message}`);
      };
      for (let w = 0; w < params.warmups; w++) {
        for (const spec of queries) {
          for (const x of list)
            await search(x, spec.q, rangeOf(spec)).catch((err: unknown) =>
              noteError(spec.name, `${x.name} (warm-up)`, err),
            );
        }
      }
      const wall: Record<string, Record<string, number[]>> = {};
      const took: Record<string, Record<string, number[]>> = {};
      const mismatches: Record<string, string> = {};
      const answers: Record<string, Record<string, string>> = {};
      const loads: number[] = [];
      const budgetEnd = performance.now() + params.query_budget_s * 1000;
      let roundsDone = 0;
      for (let r = 0; r < params.rounds && performance.now() < budgetEnd; r++) {
        loads.push(round(loadavg()[0], 1));
        for (const spec of queries) {
          const order = r % 2 === 0 ? list : [...list].reverse();
          const got: Record<string, Answer> = {};
          for (const x of order) {
            let a: Answer;
            try {
              a = await search(x, spec.q, rangeOf(spec));
            } catch (err) {
              // A failed or partial answer is counted and left out of the latencies (and of the comparison).
              noteError(spec.name, x.name, err);
              continue;
            }
            got[x.name] = a;
            push(wall, spec.name, x.name, a.wallMs);
            push(took, spec.name, x.name, a.tookMs);
            answers[spec.name] = { ...answers[spec.name], [x.name]: a.summary };
          }
          if (got.sharded && got.single && got.sharded.key !== got.single.key) {
            mismatches[spec.name] = `single ${got.single.key.slice(0, 300)} / sharded ${got.sharded.key.slice(0, 300)}`;
          }
        }
        roundsDone++;
        progress(
          `round ${r + 1}: ${queries.map((s) => `${s.name} ${list.map((x) => Math.round(wall[s.name]?.[x.name]?.at(-1) ?? Number.NaN)).join('/')} ms`).join(', ')}`,
        );
      }
      const partsAtEnd = Object.fromEntries(await Promise.all(list.map(async (x) => [x.name, await partsOf(x)])));

      const perQuery: Record<string, unknown> = {};
      for (const spec of queries) {
        const entry: Record<string, unknown> = { q: spec.q, range: spec.range, answer: answers[spec.name] };
        if (errors[spec.name]) entry.errors = errors[spec.name];
        targets[`single_${spec.name}_p50_ms`] = TARGET_P50_MS;
        const singleMs = wall[spec.name]?.single;
        const shardedMs = wall[spec.name]?.sharded;
        if (!singleMs) {
          met[`single_${spec.name}_p50_ms`] = false;
          perQuery[spec.name] = entry;
          continue;
        }
        const s = summarize(singleMs);
        entry.single = { wall: s, server_took: summarize(took[spec.name].single), runs: singleMs.length };
        met[`single_${spec.name}_p50_ms`] = s.p50_ms < TARGET_P50_MS;
        if (sharded && !shardedMs && spec.name === 'c_stats_by_channel') met.sharded_stats_by_p50_over_single = false;
        if (sharded && shardedMs) {
          const f = summarize(shardedMs);
          entry.sharded = { wall: f, server_took: summarize(took[spec.name].sharded), runs: shardedMs.length };
          entry.fanout_added_ms = { p50: round(f.p50_ms - s.p50_ms, 1), p99: round(f.p99_ms - s.p99_ms, 1) };
          entry.sharded_over_single_p50 = round(f.p50_ms / s.p50_ms, 2);
          if (spec.name === 'c_stats_by_channel') {
            targets.sharded_stats_by_p50_over_single = TARGET_SHARDED_RATIO;
            met.sharded_stats_by_p50_over_single = f.p50_ms <= TARGET_SHARDED_RATIO * s.p50_ms;
          }
        }
        perQuery[spec.name] = entry;
        progress(
          `${spec.name}: single p50 ${s.p50_ms} / p99 ${s.p99_ms} ms (target p50 < ${TARGET_P50_MS}: ${s.p50_ms < TARGET_P50_MS ? 'met' : 'not met'})${sharded ? `; sharded p50 ${(entry.sharded as { wall: Record<string, number> }).wall.p50_ms} / p99 ${(entry.sharded as { wall: Record<string, number> }).wall.p99_ms} ms` : ''}`,
        );
      }
      if (sharded) {
        targets.sharded_answers_equal_single = true;
        met.sharded_answers_equal_single = Object.keys(mismatches).length === 0 && counted.single === counted.sharded;
        targets.sharded_answers_complete = true;
        met.sharded_answers_complete = !Object.values(errors).some((e) =>
          Object.keys(e).some((t) => t.startsWith('sharded')),
        );
      }
      targets.rows_stored = params.rows;
      met.rows_stored = single.state.rows >= params.rows;

      Object.assign(results, {
        conditions: `fresh copies of the cached build, each ended as continuous ingest leaves the table (${single.state.end_state?.rule ?? 'no end-state rule'}; the same rule for the single node and every shard), searched as soon as the nodes answered (no settling pause, no OPTIMIZE while searching); searches alternated single / sharded, order swapped every round`,
        rows: { single: single.state.rows, counted: counted },
        build: {
          single: { ...single.state, this_run_s: single.this_run_s },
          ...(sharded ? { shards: shardBuilds.map((b) => ({ ...b.state, this_run_s: b.this_run_s })) } : {}),
        },
        copy_for_run_s: copyS,
        start_to_ready_s: { single: singleStartS, ...(clusterStartS !== undefined ? { cluster: clusterStartS } : {}) },
        active_parts: { at_start: partsAtStart, at_end: partsAtEnd },
        rounds: roundsDone,
        loadavg_1m_per_round: loads,
        queries: perQuery,
        ...(sharded
          ? {
              cluster: {
                nodes: params.nodes,
                shards: params.shards,
                replicas: 1,
                coordinator: 'vigil-1 (holds shard 0 too)',
                coordinator_rss_mb: mb(procStatusKb(list[1].pid, 'VmRSS')),
                coordinator_peak_rss_mb: mb(procStatusKb(list[1].pid, 'VmHWM')),
              },
              mismatches,
            }
          : {}),
        single_node_rss_mb: mb(procStatusKb(list[0].pid, 'VmRSS')),
        single_node_peak_rss_mb: mb(procStatusKb(list[0].pid, 'VmHWM')),
      });
    } finally {
      await vigil?.close();
      if (cluster) {
        // The nodes' logs outlive the run (the folder goes): they explain a failed or partial answer.
        const logs = join(BENCH_DIR, 'results', 'search-cluster-logs');
        rmSync(logs, { recursive: true, force: true });
        cpSync(join(runDir, 'cluster', 'logs'), logs, { recursive: true });
        await cluster.close();
      }
      rmSync(runDir, { recursive: true, force: true });
    }
    return { params, results, targets, met };
  },
};

function push(into: Record<string, Record<string, number[]>>, query: string, target: string, ms: number): void {
  into[query] = into[query] ?? {};
  into[query][target] = into[query][target] ?? [];
  into[query][target].push(ms);
}

function mb(kb: number | undefined): number | undefined {
  return kb === undefined ? undefined : Math.round(kb / 1024);
}

/** Sum of `vigil_store_active_parts` over a target's nodes (undefined when a node does not answer it). */
async function partsOf(target: Target): Promise<number | undefined> {
  let sum = 0;
  for (const url of target.partsFrom) {
    const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${target.token}` } });
    const m = /^vigil_store_active_parts (\d+)/m.exec(await res.text());
    if (!m) return undefined;
    sum += Number(m[1]);
  }
  return sum;
}

interface SearchBody {
  total?: number;
  events?: { id?: string; event?: { id?: string } }[];
  rows?: unknown[][];
  took_ms: number;
  partial?: boolean;
  missing_shards?: number[];
}

/** One search through the API; throws on any answer but a complete 200. */
async function search(target: Target, q: string, range: { from: number; to: number }): Promise<Answer> {
  const qs = new URLSearchParams({ q, from: String(range.from), to: String(range.to) });
  const t = performance.now();
  const res = await fetch(`${target.url}/api/v1/search?${qs}`, {
    headers: { authorization: `Bearer ${target.token}` },
  });
  const text = await res.text();
  const wallMs = performance.now() - t;
  if (res.status !== 200) throw new Error(`${target.name}: ${q} answered ${res.status}: ${text.slice(0, 300)}`);
  const body = JSON.parse(text) as SearchBody;
  if (body.partial) throw new Error(`${target.name}: ${q} answered partial, missing shards ${body.missing_shards}`);
  const key = body.total !== undefined ? `total ${body.total}` : JSON.stringify(body.rows);
  const summary =
    body.total !== undefined
      ? `total ${body.total}, ${body.events?.length ?? 0} events returned`
      : `${body.rows?.length ?? 0} rows`;
  return { wallMs, tookMs: body.took_ms, key, summary };
}
