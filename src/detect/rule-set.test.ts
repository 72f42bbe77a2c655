import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { NormalizedEvent } from '../lib/event.ts';
import { evaluateEvents } from './evaluate.ts';
import { RuleRepository } from './rule-set.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function repo(maxRulesPerTenant?: number) {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-rule-set-'));
  dirs.push(dir);
  return { dir, repository: new RuleRepository(dir, [], {}, maxRulesPerTenant) };
}

const rule = (id: string, word = 'foo') => `title: Rule ${id}
id: ${id}
status: test
logsource:
  product: linux
detection:
  sel:
    message|contains: ${word}
  condition: sel
level: high
`;

test('a tenant rule change recompiles that tenant only: the global engine and other tenants are reused', () => {
  const { repository } = repo();
  repository.save(rule('g1'), { create: true, tenant: null });
  repository.save(rule('a1'), { create: true, tenant: 'acme' });
  repository.save(rule('b1'), { create: true, tenant: 'beta' });
  const first = repository.compile();
  repository.save(rule('a2'), { create: true, tenant: 'acme' });
  const second = repository.compile();
  assert.equal(second.engine, first.engine, 'the global engine is reused');
  assert.equal(second.tenants.get('beta')?.engine, first.tenants.get('beta')?.engine, 'beta is reused');
  assert.notEqual(second.tenants.get('acme')?.engine, first.tenants.get('acme')?.engine);
  assert.deepEqual(
    second.tenants
      .get('acme')
      ?.engine.rules.map((r) => r.id)
      .sort(),
    ['a1', 'a2'],
  );
  assert.equal(second.version, repository.version);
  repository.setEnabled('b1', false, 'beta');
  const third = repository.compile();
  assert.equal(third.engine, first.engine);
  assert.equal(third.tenants.get('acme')?.engine, second.tenants.get('acme')?.engine);
  assert.equal(third.tenants.has('beta'), false, 'beta has no enabled rule left');
  assert.equal(third.rules.find((r) => r.id === 'b1')?.enabled, false);
  repository.remove('a2', 'acme');
  const fourth = repository.compile();
  assert.deepEqual(
    fourth.tenants.get('acme')?.engine.rules.map((r) => r.id),
    ['a1'],
  );
  assert.equal(fourth.engine, first.engine);
});

test('a global change rebuilds the tenants whose ids it takes or frees, and only those', () => {
  const { repository } = repo();
  repository.save(rule('x'), { create: true, tenant: 'acme' });
  repository.save(rule('b1'), { create: true, tenant: 'beta' });
  const first = repository.compile();
  // The repository stores what it is given; the API refuses the clash before (see routes/rules.ts).
  repository.save(rule('x'), { create: true, tenant: null });
  const second = repository.compile();
  assert.notEqual(second.engine, first.engine);
  assert.equal(second.tenants.has('acme'), false, "acme's x is refused: a global rule takes its id");
  assert.ok(second.rejected.some((r) => r.tenant === 'acme' && /taken by a global rule/.test(r.reason)));
  assert.equal(second.tenants.get('beta')?.engine, first.tenants.get('beta')?.engine);
  repository.remove('x', null);
  const third = repository.compile();
  assert.deepEqual(
    third.tenants.get('acme')?.engine.rules.map((r) => r.id),
    ['x'],
  );
  assert.equal(third.rejected.length, 0);
});

test('detect.max_rules_per_tenant refuses one more rule of a tenant with 409 too_many_rules, and counts it', () => {
  const { repository } = repo(2);
  const limits: string[] = [];
  repository.onLimit = (limit, source) => limits.push(`${limit}/${source}`);
  repository.save(rule('a1'), { create: true, tenant: 'acme' });
  repository.save(rule('a2'), { create: true, tenant: 'acme' });
  assert.throws(
    () => repository.save(rule('a3'), { create: true, tenant: 'acme' }),
    (err: Error & { code?: string; status?: number; details?: Record<string, unknown> }) => {
      assert.equal(err.code, 'too_many_rules');
      assert.equal(err.status, 409);
      assert.deepEqual(err.details, { limit: 'max_rules_per_tenant', max: 2 });
      assert.match(err.message, /detect\.max_rules_per_tenant allows \(2\)/);
      return true;
    },
  );
  assert.deepEqual(limits, ['max_rules_per_tenant/request']);
  // Replacing a rule, another tenant and the global scope are not bounded by acme's count.
  repository.save(rule('a2', 'bar'), { create: false, expectedId: 'a2', tenant: 'acme' });
  repository.save(rule('b1'), { create: true, tenant: 'beta' });
  repository.save(rule('g1'), { create: true, tenant: null });
  repository.remove('a1', 'acme');
  repository.save(rule('a3'), { create: true, tenant: 'acme' });
  assert.deepEqual(
    repository
      .compile()
      .tenants.get('acme')
      ?.engine.rules.map((r) => r.id)
      .sort(),
    ['a2', 'a3'],
  );
});

test("DELETE and PUT of an unknown tenant's rule make no folder", () => {
  const { dir, repository } = repo();
  assert.throws(() => repository.remove('r1', 'ghost'), { code: 'not_found' });
  assert.throws(() => repository.save(rule('r1'), { create: false, expectedId: 'r1', tenant: 'ghost' }), {
    code: 'not_found',
  });
  assert.equal(existsSync(join(dir, 'tenant-rules', 'ghost')), false);
  repository.save(rule('r1'), { create: true, tenant: 'ghost' });
  assert.equal(existsSync(join(dir, 'tenant-rules', 'ghost', 'r1.yml')), true);
});

test("save runs the caller's check on the validated document before storing, and stores nothing when it throws", () => {
  const { dir, repository } = repo();
  const seen: string[] = [];
  assert.throws(
    () =>
      repository.save(rule('r1'), {
        create: true,
        tenant: 'acme',
        check: (v) => {
          seen.push(`${v.kind}:${v.id}`);
          throw new Error('clash');
        },
      }),
    /clash/,
  );
  assert.deepEqual(seen, ['rule:r1']);
  assert.equal(existsSync(join(dir, 'tenant-rules', 'acme', 'r1.yml')), false);
});

test("evaluation: global rules on every tenant's events, a tenant's rules on its own, both when both match", () => {
  const { repository } = repo();
  repository.save(rule('g1', 'foo'), { create: true, tenant: null });
  repository.save(rule('a1', 'bar'), { create: true, tenant: 'acme' });
  const set = repository.compile();
  let n = 0;
  const ev = (tenant: string, message: string): NormalizedEvent => ({
    id: `e${++n}`,
    timestamp: 0,
    ingested: 0,
    tenant,
    source: 'http',
    layout: 'json',
    logsource: { product: 'linux' },
    raw: message,
    fields: { message },
  });
  const ruleIds = (e: NormalizedEvent) =>
    evaluateEvents([e], set, new Map(), { maxCorrelationState: 100 }).alerts.map((a) => `${a.tenant}:${a.rule.id}`);
  assert.deepEqual(ruleIds(ev('acme', 'foo bar')), ['acme:g1', 'acme:a1']);
  assert.deepEqual(ruleIds(ev('acme', 'bar')), ['acme:a1']);
  assert.deepEqual(ruleIds(ev('acme', 'foo')), ['acme:g1']);
  assert.deepEqual(ruleIds(ev('acme', 'baz')), []);
  assert.deepEqual(ruleIds(ev('beta', 'foo bar')), ['beta:g1']);
});
