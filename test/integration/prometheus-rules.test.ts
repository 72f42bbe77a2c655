import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

// The Prometheus alert rules and the Grafana dashboard shipped in packaging/ (issue 18): promtool checks
// and unit-tests the rules (Debian's prometheus package, installed by scripts/test-setup.sh), and every Vigil
// metric they and the dashboard name is one Vigil exports.

const ROOT = resolve(import.meta.dirname, '../..');
const RULES = join(ROOT, 'packaging/prometheus/vigil-alerts.yml');
const RULES_TEST = join(ROOT, 'packaging/prometheus/vigil-alerts.test.yml');
const DASHBOARD = join(ROOT, 'packaging/grafana/vigil-dashboard.json');
const run = promisify(execFile);

test('promtool check rules accepts the alert rules', async () => {
  const { stdout } = await run('promtool', ['check', 'rules', RULES]);
  assert.match(stdout, /SUCCESS: 11 rules found/);
});

test('promtool test rules: each alert fires past its threshold and not below it', async () => {
  const { stdout } = await run('promtool', ['test', 'rules', RULES_TEST], { cwd: join(ROOT, 'packaging/prometheus') });
  assert.match(stdout, /SUCCESS/);
});

/** Metric names Vigil registers: the `vigil_...` string literals of src/ (tests left out). */
function exported(): Set<string> {
  const names = new Set<string>();
  const visit = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) visit(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) {
        for (const m of readFileSync(p, 'utf8').matchAll(/'(vigil_[a-z0-9_]+)'/g)) names.add(m[1]);
      }
    }
  };
  visit(join(ROOT, 'src'));
  return names;
}

const metricsIn = (text: string) =>
  new Set([...text.matchAll(/\b(vigil_[a-z0-9_]+)/g)].map((m) => m[1].replace(/_(bucket|sum|count)$/, '')));

test('the rules and the dashboard name only metrics Vigil exports, and the dashboard shows every alert', () => {
  const known = exported();
  const rules = readFileSync(RULES, 'utf8');
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    uid: string;
    panels: { title: string; targets: { expr: string }[] }[];
  };
  assert.equal(dashboard.uid, 'vigil-overview');
  const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n');
  for (const name of [...metricsIn(rules), ...metricsIn(exprs)]) assert.ok(known.has(name), `${name} is exported`);
  for (const name of metricsIn(rules)) assert.ok(exprs.includes(name), `the dashboard shows ${name}`);
  for (const outside of ['pg_replication_lag_seconds', 'up{job="vigil"']) {
    assert.ok(rules.includes(outside) && exprs.includes(outside), outside);
  }
  // Unique panel ids and titles: Grafana keys panels by id.
  const ids = dashboard.panels.map((p) => (p as unknown as { id: number }).id);
  assert.equal(new Set(ids).size, ids.length);
});
