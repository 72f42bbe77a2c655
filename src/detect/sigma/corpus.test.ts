/**
 * The SigmaHQ corpus (../shared/sigma): every rule loads unless a Sigma user would accept the reason, and the
 * positive regression tests of SigmaHQ pass with the whole corpus loaded at the same time.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { parse } from 'yaml';
import type { EventLayout } from '../../lib/event.ts';
import { createSigmaEngine, type SigmaEngine } from './engine.ts';
import { eventFromJson, eventsFromJson } from './fixtures.ts';
import { listRuleFiles, loadSigmaRules } from './load.ts';
import { reasonKind } from './rules-check.ts';
import type { SigmaLoadResult } from './types.ts';

const SIGMA = join(import.meta.dirname, '../../../../shared/sigma');
const CORPUS = [
  'rules',
  'rules-emerging-threats',
  'rules-threat-hunting',
  'rules-compliance',
  'rules-placeholder',
  'rules-dfir',
];

/** Rejection reasons a Sigma user accepts: the rule needs something this tool must not invent. */
const ACCEPTED_REASONS: RegExp[] = [
  // Placeholders without configured values must be rejected (rules specification, "Placeholders").
  /^placeholder %…% has no configured values$/,
];
/** For the deprecated and unsupported folders: v1 syntax that Sigma v2 replaced with correlation rules. */
const ACCEPTED_LEGACY: RegExp[] = [
  ...ACCEPTED_REASONS,
  /^unsupported condition: legacy aggregation syntax/,
  // `write ... to %list%; then ...` and `... | count` split on the pipe: v1 pseudo-conditions.
  /^invalid condition: the condition references an undefined search identifier …$/,
];

let corpus: SigmaLoadResult | undefined;

/** The corpus, loaded once for every suite of this file. */
function loadCorpus(): SigmaLoadResult {
  corpus ??= loadSigmaRules(CORPUS.map((d) => join(SIGMA, d)));
  return corpus;
}

describe('the SigmaHQ corpus', () => {
  let loaded: SigmaLoadResult;
  before(() => {
    loaded = loadCorpus();
  });

  it('loads every rule of the rules* folders but those with an accepted reason', (t) => {
    const files = listRuleFiles(CORPUS.map((d) => join(SIGMA, d))).length;
    t.diagnostic(`${files} files, ${loaded.rules.length} rules loaded, ${loaded.rejected.length} rejected`);
    for (const r of loaded.rejected) t.diagnostic(`rejected ${r.file.slice(SIGMA.length + 1)}:${r.line}: ${r.reason}`);
    assert.ok(loaded.rules.length > 3700, `${loaded.rules.length} rules`);
    assert.ok(loaded.rejected.length <= 30, `${loaded.rejected.length} rejected`);
    for (const r of loaded.rejected) {
      assert.ok(
        ACCEPTED_REASONS.some((re) => re.test(reasonKind(r.reason))),
        `${r.file}: ${r.reason}`,
      );
    }
  });

  it('loads the placeholder rules once their placeholders have values', () => {
    const names = new Set<string>();
    for (const r of loaded.rejected) {
      const m = /placeholder %([^%]+)%/.exec(r.reason);
      if (m) names.add(m[1]);
    }
    const placeholders = Object.fromEntries([...names].map((n) => [n, ['value-*']]));
    // A rule can use several placeholders: values for the first missing one reveal the next.
    let result = loadSigmaRules(join(SIGMA, 'rules-placeholder'), { placeholders });
    for (let i = 0; i < 5 && result.rejected.length > 0; i++) {
      for (const r of result.rejected) {
        const m = /placeholder %([^%]+)%/.exec(r.reason);
        if (m) placeholders[m[1]] = ['value-*'];
      }
      result = loadSigmaRules(join(SIGMA, 'rules-placeholder'), { placeholders });
    }
    assert.deepEqual(result.rejected, []);
    assert.equal(result.rules.length, 23);
  });

  it('loads the deprecated and unsupported folders, rejecting only v1 syntax and placeholders', (t) => {
    const legacy = loadSigmaRules([join(SIGMA, 'deprecated'), join(SIGMA, 'unsupported')]);
    t.diagnostic(`${legacy.rules.length} loaded, ${legacy.rejected.length} rejected`);
    for (const r of legacy.rejected) {
      assert.ok(
        ACCEPTED_LEGACY.some((re) => re.test(reasonKind(r.reason))),
        `${r.file}: ${r.reason}`,
      );
    }
    assert.ok(legacy.rules.filter((r) => r.deprecated).length > 150);
    assert.ok(legacy.rules.some((r) => r.unsupported));
  });

  it('binds every loaded rule in every layout without errors', () => {
    const engine = createSigmaEngine({ rules: loaded.rules, filters: loaded.filters });
    const layouts: EventLayout[] = ['windows', 'evtx', 'ecs', 'syslog', 'json'];
    for (const layout of layouts) {
      engine.match({
        id: 'x',
        timestamp: 0,
        ingested: 0,
        tenant: 't',
        source: 's',
        layout,
        raw: '',
        fields: layout === 'ecs' ? { 'winlog.channel': 'Security' } : {},
      });
    }
    assert.deepEqual(engine.rejected, []);
    assert.equal(engine.rules.length, loaded.rules.length - 0);
  });
});

describe('the needle prefilter', () => {
  it('changes no result on Mordor events and the regression events', (t) => {
    const loaded = loadCorpus();
    const fast = createSigmaEngine({ rules: loaded.rules, filters: loaded.filters });
    const slow = createSigmaEngine({ rules: loaded.rules, filters: loaded.filters, prefilter: false });
    const zip = join(SIGMA, '../datasets/mordor-windows/execution/cmd_sharpview_pcre_net.zip');
    const events = execFileSync('unzip', ['-p', zip], { maxBuffer: 1 << 28 })
      .toString('utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => eventFromJson(l, 'windows'));
    for (const f of listRuleFiles(join(SIGMA, 'regression')).filter((x) => x.endsWith('/info.yml'))) {
      const dir = f.slice(0, -'/info.yml'.length);
      const info = parse(readFileSync(f, 'utf8')) as RegressionInfo;
      const json = join(dir, `${info.rule_metadata[0].id}.json`);
      events.push(...eventsFromJson(readFileSync(json, 'utf8'), 'evtx'));
    }
    let matches = 0;
    for (const e of events) {
      const a = fast.match(e).map((m) => m.rule.id);
      const b = slow.match(e).map((m) => m.rule.id);
      assert.deepEqual(a, b, e.raw.slice(0, 200));
      matches += a.length;
    }
    t.diagnostic(
      `${events.length} events, ${matches} matches, evaluations ${fast.stats().evaluations} vs ${slow.stats().evaluations}`,
    );
    assert.ok(fast.stats().evaluations * 5 < slow.stats().evaluations);
  });
});

interface RegressionInfo {
  rule_metadata: { id: string; title: string }[];
  regression_tests_info: { name: string; type: string; match_count?: number; path: string }[];
}

describe('the SigmaHQ regression tests (positive, evtx_dump JSON)', () => {
  let engine: SigmaEngine;
  let infos: string[];
  before(() => {
    const loaded = loadCorpus();
    engine = createSigmaEngine({ rules: loaded.rules, filters: loaded.filters });
    infos = listRuleFiles(join(SIGMA, 'regression')).filter((f) => f.endsWith('/info.yml'));
  });

  it('fires each named rule at least match_count times with the whole corpus loaded', (t) => {
    const failures: string[] = [];
    const others = new Map<string, number>();
    let passed = 0;
    let total = 0;
    for (const file of infos) {
      const info = parse(readFileSync(file, 'utf8')) as RegressionInfo;
      const ids = new Set(info.rule_metadata.map((m) => m.id));
      for (const test of info.regression_tests_info) {
        total++;
        const json = join(SIGMA, 'regression', test.path.replace(/^regression_data\//, '').replace(/\.evtx$/, '.json'));
        let fired = 0;
        for (const event of eventsFromJson(readFileSync(json, 'utf8'), 'evtx')) {
          for (const m of engine.match(event)) {
            if (ids.has(m.rule.id)) fired++;
            else {
              const key = `${m.rule.title} (${m.rule.id}) in ${info.rule_metadata[0].title}`;
              others.set(key, (others.get(key) ?? 0) + 1);
            }
          }
        }
        const want = test.match_count ?? 1;
        if (fired >= want) passed++;
        else failures.push(`${info.rule_metadata[0].title} (${[...ids].join(',')}): fired ${fired}, want ${want}`);
      }
    }
    t.diagnostic(`regression: ${passed}/${total} passed`);
    for (const f of failures) t.diagnostic(`FAILED ${f}`);
    t.diagnostic(`other rules firing on the regression events (${others.size}):`);
    for (const [k, n] of [...others].sort()) t.diagnostic(`  ${n}x ${k}`);
    assert.ok(total >= 90, `${total} regression tests found`);
    assert.deepEqual(failures, []);
  });
});
