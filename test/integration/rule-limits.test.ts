/**
 * A Sigma rule cannot stop a node (issue 16, defect 2): a rule of nested YAML aliases is refused in
 * milliseconds by the hunt and rules endpoints and skipped at start; a catastrophic `|re` pattern runs in
 * linear time in a hunt while /health/live keeps answering. A condition nested thousands of levels deep
 * (parentheses or `not`s) overflowed the parser's stack: a 500 on the API, a node that would not start.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { aliasBomb } from '../../src/detect/sigma/fixtures.ts';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

const REDOS = `title: ReDoS
id: 0f5e1a40-0000-4000-8000-00000000bad1
logsource:
  product: windows
detection:
  selection:
    CommandLine|re: '^(a+)+$'
  condition: selection
`;

/** A rule whose condition nests `depth` parentheses, or `depth` `not`s. */
function deepRule(kind: 'parens' | 'not', depth: number): string {
  const cond = kind === 'parens' ? `${'('.repeat(depth)}sel${')'.repeat(depth)}` : `${'not '.repeat(depth)}sel`;
  return `title: Deep ${kind}
id: 0f5e1a40-0000-4000-8000-00000000dee${kind === 'parens' ? 1 : 2}
logsource:
  product: windows
detection:
  sel:
    EventID: 1
  condition: ${cond}
`;
}

describe('rules cannot stop the event loop', () => {
  let node: VigilNode;
  let rulesDir: string;
  before(async () => {
    rulesDir = mkdtempSync(join(tmpdir(), 'vigil-bomb-rules-'));
    // A stored rule past the limits: the node must start, skip it and count it.
    writeFileSync(join(rulesDir, 'bomb.yml'), aliasBomb());
    writeFileSync(join(rulesDir, 'deep-parens.yml'), deepRule('parens', 3_000));
    writeFileSync(join(rulesDir, 'deep-not.yml'), deepRule('not', 5_000));
    node = await startVigil({ env: { VIGIL_DETECT__RULES_DIRS: JSON.stringify([rulesDir]) } });
  });
  after(async () => {
    await node?.close();
    rmSync(rulesDir, { recursive: true, force: true });
  });

  test('a stored alias bomb is skipped at start, listed and counted', async () => {
    const rules = await node.get('/api/v1/rules');
    assert.equal(rules.status, 200);
    const rejected = (rules.body.rejected as { file: string; limit?: string }[]).find((r) =>
      r.file.endsWith('bomb.yml'),
    );
    assert.equal(rejected?.limit, 'max_nodes');
    const metrics = await node.get('/metrics');
    assert.match(String(metrics.body), /vigil_detect_rules_refused_total\{limit="max_nodes",source="stored"\} [1-9]/);
  });

  test('stored rules with conditions nested thousands deep are skipped at start, listed and counted', async () => {
    const rules = await node.get('/api/v1/rules');
    const rejected = rules.body.rejected as { file: string; limit?: string }[];
    for (const name of ['deep-parens.yml', 'deep-not.yml']) {
      assert.equal(rejected.find((r) => r.file.endsWith(name))?.limit, 'max_condition_depth', name);
    }
    const metrics = await node.get('/metrics');
    assert.match(
      String(metrics.body),
      /vigil_detect_rules_refused_total\{limit="max_condition_depth",source="stored"\} [2-9]/,
    );
  });

  for (const [method, path, kind, depth] of [
    ['POST', '/api/v1/rules', 'parens', 3_000],
    ['POST', '/api/v1/rules', 'not', 5_000],
    ['POST', '/api/v1/hunt', 'parens', 3_000],
    ['POST', '/api/v1/hunt', 'not', 5_000],
  ] as const) {
    test(`${method} ${path} refuses a condition of ${depth} nested ${kind} with 400 rule_too_large`, async () => {
      const yaml = deepRule(kind, depth);
      const body = path === '/api/v1/hunt' ? JSON.stringify({ rule: yaml, from: 'now-1h', to: 'now' }) : yaml;
      const type = path === '/api/v1/hunt' ? 'application/json' : 'application/yaml';
      const res = await node.post(path, body, { 'content-type': type });
      assert.equal(res.status, 400, JSON.stringify(res.body).slice(0, 500));
      assert.equal(res.body.error.code, 'rule_too_large');
      assert.equal(res.body.error.details.limit, 'max_condition_depth');
      assert.match(res.body.error.message, /more than 64 levels deep \(limit max_condition_depth\)/);
    });
  }

  test('POST /api/v1/hunt accepts a condition nested 64 levels deep', async () => {
    const res = await node.post(
      '/api/v1/hunt',
      JSON.stringify({ rule: deepRule('parens', 64), from: 'now-1h', to: 'now' }),
      { 'content-type': 'application/json' },
    );
    assert.equal(res.status, 200, JSON.stringify(res.body).slice(0, 500));
  });

  for (const [method, path] of [
    ['POST', '/api/v1/rules'],
    ['POST', '/api/v1/hunt'],
  ] as const) {
    test(`${method} ${path} refuses an alias bomb with 400 rule_too_large in under a second`, async () => {
      const yaml = aliasBomb();
      const body = path === '/api/v1/hunt' ? JSON.stringify({ rule: yaml, from: 'now-1h', to: 'now' }) : yaml;
      const type = path === '/api/v1/hunt' ? 'application/json' : 'application/yaml';
      const t0 = performance.now();
      const res = await node.post(path, body, { 'content-type': type });
      const ms = performance.now() - t0;
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'rule_too_large');
      assert.equal(res.body.error.details.limit, 'max_nodes');
      assert.match(res.body.error.message, /limit max_nodes/);
      assert.ok(ms < 1000, `${ms.toFixed(0)} ms`);
    });
  }

  test('a hunt with a catastrophic |re pattern finishes quickly and /health/live keeps answering', async () => {
    const events = [`${'a'.repeat(31)}!`, 'a'.repeat(32), `${'a'.repeat(9_999)}!`].map((cmd, i) =>
      JSON.stringify({
        '@timestamp': new Date(Date.now() - 30_000 + i).toISOString(),
        EventID: 1,
        Channel: 'Microsoft-Windows-Sysmon/Operational',
        CommandLine: cmd,
      }),
    );
    assert.equal((await node.post('/api/v1/ingest', events.join('\n'))).body.accepted, 3);
    let stored = 0;
    for (let i = 0; i < 100 && stored < 3; i++) {
      await new Promise((r) => setTimeout(r, 100));
      stored = (await node.get('/api/v1/search?q=EventID:1&from=now-1h&limit=10')).body.total ?? 0;
    }
    let live = 0;
    let worst = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const t0 = performance.now();
        const res = await fetch(`${node.url}/health/live`);
        worst = Math.max(worst, performance.now() - t0);
        if (res.status === 200) live++;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const t0 = performance.now();
    const res = await node.post('/api/v1/hunt', JSON.stringify({ rule: REDOS, from: 'now-1h', to: 'now' }), {
      'content-type': 'application/json',
    });
    const ms = performance.now() - t0;
    polling = false;
    await poll;
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.total, 1, 'only the run of 32 a matches');
    assert.ok(ms < 3000, `hunt took ${ms.toFixed(0)} ms (9.1 s for one 32-character event before)`);
    assert.ok(live >= 1 && worst < 1000, `/health/live: ${live} answers, slowest ${worst.toFixed(0)} ms`);
  });
});
