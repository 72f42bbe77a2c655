/**
 * Sigma engine throughput: the whole SigmaHQ corpus (every rules* folder) loaded once, then every Mordor
 * event normalized and matched. Events per second per core come from the CPU time of `match` alone;
 * resident memory is the process's peak. Then `vigil sigma scan` over the whole unpacked set, timed.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { compileRuleFolders } from '../src/detect/rule-set.ts';
import type { NormalizedEvent } from '../src/lib/event.ts';
import { createNormalizer } from '../src/parse/index.ts';
import { type Benchmark, boolOption, intOption, progress, ROOT, round } from './common.ts';
import { MORDOR_DIR, mordorLines, unpackMordor } from './mordor.ts';

const SIGMA = join(ROOT, '../shared/sigma');
const BATCH = 2000;

function peakRssMb(): number {
  return round(process.resourceUsage().maxRSS / 1024, 0);
}

export const sigmaBenchmark: Benchmark = {
  name: 'sigma',
  description: 'Sigma engine events/s per core with the whole SigmaHQ corpus, on every Mordor event; sigma scan time',
  async run(opts) {
    const limit = intOption(opts, 'events', Number.MAX_SAFE_INTEGER);
    const folders = readdirSync(SIGMA)
      .filter((n) => n.startsWith('rules'))
      .map((n) => join(SIGMA, n));
    const t0 = performance.now();
    const set = compileRuleFolders(folders, {});
    const loadMs = performance.now() - t0;
    const rules = set.rules.filter((r) => r.kind === 'rule').length;
    progress(`loaded ${rules} rules and ${set.correlations.length} correlations in ${round(loadMs)} ms`);
    const normalizer = createNormalizer();
    const receivedAt = Date.now();
    let events = 0;
    let matches = 0;
    let matchCpuUs = 0;
    let matchWallMs = 0;
    let batch: NormalizedEvent[] = [];
    const flush = () => {
      const cpu = process.cpuUsage();
      const wall = performance.now();
      for (const e of batch) matches += set.engine.match(e).length;
      matchWallMs += performance.now() - wall;
      const used = process.cpuUsage(cpu);
      matchCpuUs += used.user + used.system;
      events += batch.length;
      batch = [];
    };
    for (const line of mordorLines(limit)) {
      const raw = line.toString('utf8');
      batch.push(normalizer.fromJson(JSON.parse(raw), raw, { source: 'bench', receivedAt, tenant: 'default' }));
      if (batch.length >= BATCH) flush();
      if (events % 100000 < BATCH && events > 0 && batch.length === 0) progress(`${events} events matched`);
    }
    flush();
    const results: Record<string, unknown> = {
      rules_loaded: rules,
      rules_rejected: set.rejected.length,
      rules_load_ms: round(loadMs),
      events,
      matches,
      match_cpu_seconds: round(matchCpuUs / 1e6, 2),
      events_per_second_per_core: round(events / (matchCpuUs / 1e6)),
      events_per_second_wall: round(events / (matchWallMs / 1000)),
      peak_rss_mb: peakRssMb(),
    };
    if (boolOption(opts, 'scan', true)) {
      unpackMordor();
      progress('timing vigil sigma scan over the whole unpacked set');
      const args = ['sigma', 'scan', ...folders.flatMap((f) => ['--rules', f]), MORDOR_DIR, '--format', 'jsonl'];
      const started = performance.now();
      const scan = spawnSync(join(ROOT, 'bin/vigil'), args, {
        stdio: ['ignore', 'ignore', 'pipe'],
        maxBuffer: 1 << 30,
      });
      const seconds = (performance.now() - started) / 1000;
      const summary = scan.stderr.toString().trim().split('\n').pop() ?? '';
      let parsed: Record<string, unknown> = {};
      try {
        parsed = JSON.parse(summary);
      } catch {
        parsed = { error: summary.slice(0, 500) };
      }
      results.scan = { seconds: round(seconds, 1), exit_code: scan.status, summary: parsed };
    }
    return {
      params: {
        events_limit: limit === Number.MAX_SAFE_INTEGER ? 'all' : limit,
        rule_folders: folders.length,
        batch: BATCH,
      },
      results,
      targets: { events_per_second_per_core: '>= 50000', peak_rss_mb: '< 1024' },
      met: {
        events_per_second_per_core: (results.events_per_second_per_core as number) >= 50000,
        peak_rss_mb: (results.peak_rss_mb as number) < 1024,
      },
    };
  },
};
