import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { evaluateEvents } from '../detect/evaluate.ts';
import { compileRuleFolders } from '../detect/rule-set.ts';
import type { CorrelationEngine } from '../detect/correlation/index.ts';
import type { NormalizedEvent } from '../lib/event.ts';
import { createNormalizer, splitJson } from '../parse/index.ts';
import { printTable } from './search.ts';

export const SIGMA_USAGE = `Usage: vigil sigma scan --rules <dir> [--rules <dir> ...] <events file or folder> [...] [--format table|jsonl]

Evaluates Sigma rules (and correlations) over JSON event files without a server, like Chainsaw or
Hayabusa. Input: NDJSON, JSON arrays, or concatenated pretty-printed JSON objects, in any of the
layouts Vigil reads (ECS, flat Windows fields, evtx_dump). Matches go to standard output (a table,
or one JSON object per match with --format jsonl); a summary goes to standard error.
`;

/** `vigil sigma scan`: offline hunting over files. */
export async function sigmaCommand(
  positionals: string[],
  opts: { rules?: string[]; format?: string },
): Promise<number> {
  const [sub, ...inputs] = positionals;
  const format = opts.format ?? 'table';
  if (sub !== 'scan' || inputs.length === 0 || !opts.rules?.length || !['table', 'jsonl'].includes(format)) {
    process.stderr.write(SIGMA_USAGE);
    return 2;
  }
  const started = performance.now();
  const set = compileRuleFolders(opts.rules, {});
  const loadedMs = performance.now() - started;
  const normalizer = createNormalizer();
  const correlators = new Map<string, CorrelationEngine>();
  const rows: unknown[][] = [];
  const byRule = new Map<string, number>();
  let events = 0;
  let matches = 0;
  let invalid = 0;
  for (const file of inputs.flatMap(listFiles)) {
    const batch: NormalizedEvent[] = [];
    for (const element of splitJson(readFileSync(file, 'utf8'))) {
      if ('error' in element) {
        invalid++;
        process.stderr.write(`${file}:${element.line}: ${element.error}\n`);
        continue;
      }
      try {
        batch.push(
          normalizer.fromJson(element.value, element.raw, {
            source: 'file',
            receivedAt: Date.now(),
            tenant: 'default',
          }),
        );
      } catch (err) {
        invalid++;
        process.stderr.write(`${file}:${element.line}: ${(err as Error).message}\n`);
      }
    }
    const result = evaluateEvents(batch, set, correlators, { maxCorrelationState: 1_000_000 });
    events += result.events;
    const byId = new Map(batch.map((e) => [e.id, e]));
    for (const alert of result.alerts) {
      matches++;
      byRule.set(alert.rule.title, (byRule.get(alert.rule.title) ?? 0) + 1);
      const event = alert.eventIds.length === 1 ? byId.get(alert.eventIds[0]) : undefined;
      const when = new Date(alert.timestamp).toISOString();
      if (format === 'jsonl') {
        const out = {
          rule_id: alert.rule.id,
          rule_title: alert.rule.title,
          level: alert.rule.level,
          kind: alert.kind,
          timestamp: when,
          file,
          matched: alert.matched,
          event_ids: alert.eventIds,
          event: event ? { '@timestamp': new Date(event.timestamp).toISOString(), ...event.fields } : undefined,
        };
        process.stdout.write(`${JSON.stringify(out)}\n`);
      } else {
        rows.push([when, alert.rule.level, alert.rule.title, alert.host, alert.kind]);
      }
    }
  }
  if (format === 'table') printTable(['timestamp', 'level', 'rule', 'host', 'kind'], rows);
  const seconds = (performance.now() - started) / 1000;
  const summary = {
    rules: set.rules.filter((r) => r.kind === 'rule').length,
    correlations: set.correlations.length,
    rejected_rules: set.rejected.length,
    events,
    invalid,
    matches,
    rules_load_ms: Math.round(loadedMs),
    seconds: Number(seconds.toFixed(2)),
    top_rules: [...byRule].sort((a, b) => b[1] - a[1]).slice(0, 10),
  };
  process.stderr.write(`${JSON.stringify(summary)}\n`);
  return 0;
}

function listFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .sort()
    .flatMap((name) => listFiles(join(path, name)));
}
