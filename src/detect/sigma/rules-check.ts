/** `vigil rules check <dir>`: load a rule folder and report what loads, what is rejected and why. */
import type { Placeholders } from './detection.ts';
import { listRuleFiles, loadSigmaRules } from './load.ts';
import { defaultSigmaMappings, logsourceCovers, type SigmaMappings } from './mapping.ts';
import type { RejectedRule, SigmaRule } from './types.ts';

export interface RulesCheckOptions {
  placeholders?: Placeholders;
  mappings?: SigmaMappings;
}

/** The outcome of checking rule files. */
export interface RulesCheckReport {
  files: number;
  /** Rules that load (including deprecated and unsupported ones). */
  loaded: number;
  deprecated: number;
  unsupported: number;
  filters: number;
  correlations: number;
  rejected: RejectedRule[];
  /** Rejections counted by the kind of reason (specific names and values left out). */
  byReason: Record<string, number>;
  /**
   * Loaded rules whose logsource no mapping routes, by `product/service/category`: they only see events that
   * declare that logsource.
   */
  unmapped: Record<string, number>;
}

/** The kind of a rejection reason: quoted names, placeholders and positions removed. */
export function reasonKind(reason: string): string {
  return reason
    .replace(/'[^']*'/g, '…')
    .replace(/%[^%\s]+%/g, '%…%')
    .replace(/ at line \d+, column \d+/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}

function logsourceKey(r: SigmaRule): string {
  const { product, service, category } = r.logsource;
  return `${product ?? '*'}/${service ?? '*'}/${category ?? '*'}`;
}

/** Whether the mappings route a rule without the event declaring its logsource. */
export function isMapped(rule: SigmaRule, mappings: SigmaMappings): boolean {
  const ls = rule.logsource;
  const w = mappings.windows;
  if (ls.category) {
    const variants = w.categories[ls.category] ?? [];
    if (variants.some((v) => (ls.product === 'windows' || (!ls.product && v.anyProduct)) && w.services[v.service])) {
      return true;
    }
  } else if (ls.product === 'windows') {
    if (!ls.service || w.services[ls.service]) return true;
  }
  return mappings.sources.some((s) => logsourceCovers(s.logsource, ls));
}

/** Loads every rule file under `paths` and reports the result; never throws for a bad rule. */
export function checkRules(paths: string | readonly string[], opts: RulesCheckOptions = {}): RulesCheckReport {
  let files = 0;
  for (const p of typeof paths === 'string' ? [paths] : paths) {
    try {
      files += listRuleFiles(p).length;
    } catch {
      // Reported by loadSigmaRules as a rejection of that path.
    }
  }
  const result = loadSigmaRules(paths, { placeholders: opts.placeholders });
  const mappings = opts.mappings ?? defaultSigmaMappings();
  const byReason: Record<string, number> = {};
  for (const r of result.rejected) {
    const k = reasonKind(r.reason);
    byReason[k] = (byReason[k] ?? 0) + 1;
  }
  const unmapped: Record<string, number> = {};
  for (const r of result.rules) {
    if (isMapped(r, mappings)) continue;
    const k = logsourceKey(r);
    unmapped[k] = (unmapped[k] ?? 0) + 1;
  }
  return {
    files,
    loaded: result.rules.length,
    deprecated: result.rules.filter((r) => r.deprecated).length,
    unsupported: result.rules.filter((r) => r.unsupported).length,
    filters: result.filters.length,
    correlations: result.correlations.length,
    rejected: result.rejected,
    byReason,
    unmapped,
  };
}

function sortedCounts(counts: Record<string, number>): [string, number][] {
  return Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

/** The report as text for a terminal. */
export function formatRulesCheck(report: RulesCheckReport): string {
  const lines: string[] = [];
  lines.push(
    `Checked ${report.files} files: ${report.loaded} rules loaded (${report.deprecated} deprecated, ` +
      `${report.unsupported} unsupported), ${report.filters} filters, ${report.correlations} correlations, ` +
      `${report.rejected.length} rejected.`,
  );
  if (report.rejected.length > 0) {
    lines.push('', 'Rejected, by reason:');
    for (const [k, n] of sortedCounts(report.byReason)) lines.push(`  ${String(n).padStart(5)}  ${k}`);
    lines.push('', 'Rejected documents:');
    for (const r of report.rejected) {
      const where = r.line ? `${r.file}:${r.line}${r.column ? `:${r.column}` : ''}` : r.file;
      lines.push(`  ${where}${r.ruleId ? ` [${r.ruleId}]` : ''}: ${r.reason}`);
    }
  }
  const unmapped = sortedCounts(report.unmapped);
  if (unmapped.length > 0) {
    const total = unmapped.reduce((n, [, c]) => n + c, 0);
    lines.push('', `${total} loaded rules have a logsource no mapping routes; they see only events that declare it:`);
    for (const [k, n] of unmapped) lines.push(`  ${String(n).padStart(5)}  ${k}`);
  }
  return lines.join('\n');
}
