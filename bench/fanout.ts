/**
 * `npm run bench -- fanout`: the cost of planning a search over shards in the engine alone, without the
 * network: over `--rows` synthetic events in one chdb session, each query runs (a) as one node runs it and
 * (b) as S shard parts (each selecting its shard, murmurHash3_32(id) % S, run one after the other) plus the
 * merge of their gathered rows. Reports wall and CPU time of both, the merge alone and the gathered bytes.
 * Each part here scans the whole table to select its shard (on a sharded cluster a node reads its shards'
 * rows only), so the parts' sum overstates the shards' work S-fold: the figures that carry over are the
 * merge's time and the gathered bytes. Every sharded answer is checked equal to the single-node one. The
 * network hop and a real sharded cluster (issue 15's 4-node figures) are measured by `search` (search.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Session } from 'chdb';
import { runSearch } from '../src/api/routes/search.ts';
import { mergeShards, planSearch, runShard } from '../src/search/merge.ts';
import { EVENTS_TABLE, eventsTableDdl } from '../src/store/schema.ts';
import { type SearchScope, sessionSearchScope } from '../src/store/index.ts';
import { type Benchmark, intOption, progress, round, summarize } from './common.ts';

const QUERIES = [
  '| stats count() by user.name',
  '| stats count, dc(source.ip) as ips, avg(bytes) by host.name',
  'Failed | timechart span=1h count',
  '*',
];

export const fanoutBenchmark: Benchmark = {
  name: 'fanout',
  description: 'search over S shards in one engine: shard parts + merge against the single-node plan (no network)',
  async run(opts) {
    const rows = intOption(opts, 'rows', 1_000_000);
    const shards = intOption(opts, 'shards', 4);
    const runs = intOption(opts, 'runs', 7);
    const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-fanout-'));
    const session = new Session(dir);
    try {
      await session.queryAsync('CREATE DATABASE IF NOT EXISTS vigil');
      await session.queryAsync(eventsTableDdl(3650));
      const t0 = Date.UTC(2026, 10, 1);
      progress(`generating ${rows} events`);
      await session.queryAsync(
        `INSERT INTO ${EVENTS_TABLE} (ts, ingested, id, content_hash, tenant, source, layout, host, message, raw, parse_error, fields)
         SELECT fromUnixTimestamp64Milli(toInt64(${t0} + number * 997 % (86400000 * 7))), now64(3), concat('ev-', toString(number)), '',
           'default', 'http', 'json', concat('h', toString(number % 50)), 'm',
           concat(if(number % 3 = 0, 'Failed', 'Accepted'), ' password for u', toString(number % 1000)), '',
           map('user.name', concat('u', toString(number % 1000)), 'source.ip', concat('10.0.', toString(number % 7), '.', toString(number % 251)), 'bytes', toString(number % 5000))
         FROM numbers(${rows})`,
      );
      await session.queryAsync(`OPTIMIZE TABLE ${EVENTS_TABLE} FINAL`);
      const scope: SearchScope = sessionSearchScope(session, dir);
      const range = { from: t0, to: t0 + 86400000 * 7, limit: 100, tenants: ['default'], now: t0 };
      const results: Record<string, unknown> = {};
      for (const q of QUERIES) {
        const single: number[] = [];
        const singleCpu: number[] = [];
        const sharded: number[] = [];
        const shardedCpu: number[] = [];
        const merge: number[] = [];
        let gatheredBytes = 0;
        for (let i = 0; i < runs + 1; i++) {
          let cpu = process.cpuUsage();
          let t = performance.now();
          const want = await runSearch(scope, q, range);
          const singleMs = performance.now() - t;
          let used = process.cpuUsage(cpu);
          const singleCpuMs = (used.user + used.system) / 1000;
          cpu = process.cpuUsage();
          t = performance.now();
          const plan = planSearch(q, range);
          const parts = [];
          for (let s = 0; s < shards; s++) parts.push(await runShard(scope, plan, s, shards));
          const m = performance.now();
          const got = await mergeShards(scope, plan, parts, t);
          const mergeMs = performance.now() - m;
          const shardedMs = performance.now() - t;
          used = process.cpuUsage(cpu);
          const { took_ms: _a, ...a } = want;
          const { took_ms: _b, ...b } = got;
          if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${q}: the sharded answer differs`);
          gatheredBytes = parts.reduce((n, p) => n + JSON.stringify(p.rows).length, 0);
          if (i === 0) continue; // warm-up
          single.push(singleMs);
          singleCpu.push(singleCpuMs);
          sharded.push(shardedMs);
          shardedCpu.push((used.user + used.system) / 1000);
          merge.push(mergeMs);
        }
        const s = summarize(single);
        const f = summarize(sharded);
        results[q] = {
          single_ms: s,
          sharded_ms: f,
          merge_ms: summarize(merge),
          single_cpu_ms_p50: summarize(singleCpu).p50_ms,
          sharded_cpu_ms_p50: summarize(shardedCpu).p50_ms,
          ratio_p50: round(f.p50_ms / s.p50_ms, 2),
          gathered_bytes: gatheredBytes,
        };
        progress(`${q}: single p50 ${s.p50_ms} ms, ${shards} shards + merge p50 ${f.p50_ms} ms`);
      }
      return { params: { rows, shards, runs }, results, targets: {}, met: {} };
    } finally {
      session.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
