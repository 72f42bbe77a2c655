/**
 * Throughput of `match` with the whole SigmaHQ corpus on Mordor events (flat `windows` layout), for bench/.
 * Run directly: `node --import tsx src/detect/sigma/bench.ts [zip ...]` (default: every Mordor zip) prints JSON.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { NormalizedEvent } from '../../lib/event.ts';
import { createSigmaEngine } from './engine.ts';
import { eventFromJson } from './fixtures.ts';
import { loadSigmaRules } from './load.ts';

export interface SigmaBenchResult {
  rules: number;
  loadMs: number;
  events: number;
  matchMs: number;
  /** CPU time of the process (all threads) while matching: the fair figure on a shared machine. */
  matchCpuMs: number;
  eventsPerSecond: number;
  eventsPerCpuSecond: number;
  matches: number;
  evaluationsPerEvent: number;
  rssMiB: number;
  heapUsedMiB: number;
  topRules: { title: string; count: number }[];
}

const SHARED = resolve(import.meta.dirname, '../../../../shared');
const CORPUS = ['rules', 'rules-emerging-threats', 'rules-threat-hunting', 'rules-compliance', 'rules-dfir'];

function zipsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...zipsUnder(p));
    else if (name.endsWith('.zip') && statSync(p).size > 0) out.push(p);
  }
  return out;
}

function readZip(zip: string): NormalizedEvent[] {
  let text: string;
  try {
    text = execFileSync('unzip', ['-p', zip], { maxBuffer: 1 << 30 }).toString('utf8');
  } catch {
    return [];
  }
  const events: NormalizedEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      events.push(eventFromJson(line, 'windows'));
    } catch {
      // A truncated last line in a few archives.
    }
  }
  return events;
}

/** Loads the corpus, then times `match` over the events of each zip (parsing is not timed). */
export function runSigmaBench(zips: readonly string[]): SigmaBenchResult {
  const t0 = performance.now();
  const loaded = loadSigmaRules(CORPUS.map((d) => join(SHARED, 'sigma', d)));
  const engine = createSigmaEngine({ rules: loaded.rules, filters: loaded.filters });
  const loadMs = performance.now() - t0;
  let events = 0;
  let matchMs = 0;
  let matchCpuUs = 0;
  let matches = 0;
  const byRule = new Map<string, number>();
  for (const zip of zips) {
    const batch = readZip(zip);
    const t = performance.now();
    const cpu = process.cpuUsage();
    for (const e of batch) {
      const ms = engine.match(e);
      if (ms.length === 0) continue;
      matches += ms.length;
      for (const m of ms) byRule.set(m.rule.title, (byRule.get(m.rule.title) ?? 0) + 1);
    }
    matchMs += performance.now() - t;
    const used = process.cpuUsage(cpu);
    matchCpuUs += used.user + used.system;
    events += batch.length;
  }
  const mem = process.memoryUsage();
  const stats = engine.stats();
  return {
    rules: engine.rules.length,
    loadMs: Math.round(loadMs),
    events,
    matchMs: Math.round(matchMs),
    matchCpuMs: Math.round(matchCpuUs / 1000),
    eventsPerSecond: Math.round(events / (matchMs / 1000)),
    eventsPerCpuSecond: Math.round(events / (matchCpuUs / 1e6)),
    matches,
    evaluationsPerEvent: Math.round((stats.evaluations / Math.max(1, stats.events)) * 10) / 10,
    rssMiB: Math.round(mem.rss / 2 ** 20),
    heapUsedMiB: Math.round(mem.heapUsed / 2 ** 20),
    topRules: [...byRule.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 10)
      .map(([title, count]) => ({ title, count })),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const args = process.argv.slice(2);
  const zips = args.length ? args : zipsUnder(join(SHARED, 'datasets', 'mordor-windows'));
  console.log(JSON.stringify(runSigmaBench(zips), null, 2));
}
