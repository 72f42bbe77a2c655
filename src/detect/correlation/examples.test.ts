/**
 * The correlation examples of the Sigma specification: each compiles, and behaves as its title says when fed
 * synthetic matches of the rules it references.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import type { FieldValue } from '../../lib/event.ts';
import { type CompiledCorrelation, compileCorrelation, isCorrelationDocument } from './compile.ts';
import { type CorrelationAlert, createCorrelationEngine, type SigmaMatch } from './engine.ts';

const SPEC = '/work/shared/sigma/spec';
const EXAMPLES = `${SPEC}/tests/schema/correlation`;
const T0 = Date.UTC(2025, 5, 1);
const S = 1000;
const M = 60 * S;
const H = 60 * M;

function load(name: string): CompiledCorrelation {
  const file = `${EXAMPLES}/${name}`;
  return compileCorrelation(parse(readFileSync(file, 'utf8')), file);
}

let nextId = 0;
/** A match of the referenced rule `ref` (used as both id and name, as the spec allows either). */
function match(ref: string, at: number, fields: Record<string, FieldValue>): SigmaMatch {
  return {
    rule: { id: ref, name: ref, title: ref, level: 'low', tags: [] },
    event: {
      id: `ev-${++nextId}`,
      timestamp: T0 + at,
      ingested: T0 + at,
      tenant: 'default',
      source: 'http',
      layout: 'windows',
      raw: '',
      fields,
    },
  };
}

function run(c: CompiledCorrelation | CompiledCorrelation[], matches: SigmaMatch[]): CorrelationAlert[] {
  const engine = createCorrelationEngine(Array.isArray(c) ? c : [c]);
  return matches.flatMap((m) => engine.onMatch(m));
}

const FAILED_LOGIN = '5638f7c0-ac70-491d-8465-2a65075e0d86';

test('event_count.yml: 100 failed logins on one computer within an hour', () => {
  const c = load('event_count.yml');
  assert.equal(c.id, '0e95725d-7320-415d-80f7-004da920fc11');
  assert.equal(c.timespanMs, H);
  const on = (computer: string) => (i: number, spacing: number) =>
    match(FAILED_LOGIN, i * spacing, { ComputerName: computer });
  const dc1 = on('DC1');
  const alerts = run(
    c,
    Array.from({ length: 100 }, (_, i) => dc1(i, 30 * S)),
  );
  assert.equal(alerts.length, 1);
  assert.deepEqual(alerts[0].groupBy, { ComputerName: 'DC1' });
  assert.equal(alerts[0].value, 100);
  assert.equal(alerts[0].eventIds.length, 100);
  assert.equal(
    run(
      c,
      Array.from({ length: 99 }, (_, i) => dc1(i, 30 * S)),
    ).length,
    0,
    '99 are not enough',
  );
  const first99 = Array.from({ length: 99 }, (_, i) => dc1(i, 30 * S));
  const hundredth = (at: number) => match(FAILED_LOGIN, at, { ComputerName: 'DC1' });
  assert.equal(run(c, [...first99, hundredth(H)]).length, 1, 'the first and the 100th exactly an hour apart');
  assert.equal(run(c, [...first99, hundredth(H + 1)]).length, 0, 'an hour and a millisecond apart');
  const split = Array.from({ length: 100 }, (_, i) => on(i % 2 ? 'DC1' : 'DC2')(i, S));
  assert.equal(run(c, split).length, 0, '50 each on two computers');
});

test('event_count_ecs.yml: the same correlation grouped by an ECS dotted field', () => {
  const c = load('event_count_ecs.yml');
  assert.deepEqual(c.groupBy, ['dns.question.name']);
  const alerts = run(
    c,
    Array.from({ length: 100 }, (_, i) => match(FAILED_LOGIN, i * S, { 'dns.question.name': 'evil.example' })),
  );
  assert.equal(alerts.length, 1);
  assert.deepEqual(alerts[0].groupBy, { 'dns.question.name': 'evil.example' });
});

test('temporal.yml: recon commands a, b and c in any order within 5 minutes by one user on one computer', () => {
  const c = load('temporal.yml');
  assert.match(c.id, /^derived-/);
  const who = { ComputerName: 'WS7', User: 'mallory' };
  const alerts = run(c, [
    match('recon_cmd_b', 0, who),
    match('recon_cmd_c', 2 * M, who),
    match('recon_cmd_a', 5 * M, who),
  ]);
  assert.equal(alerts.length, 1);
  assert.deepEqual(alerts[0].groupBy, who);
  assert.equal(
    run(c, [match('recon_cmd_b', 0, who), match('recon_cmd_c', 2 * M, who), match('recon_cmd_a', 5 * M + 1, who)])
      .length,
    0,
  );
  const other = { ComputerName: 'WS7', User: 'bob' };
  assert.equal(
    run(c, [match('recon_cmd_a', 0, who), match('recon_cmd_b', 1, who), match('recon_cmd_c', 2, other)]).length,
    0,
  );
});

test('temporal_ordered.yml: recon commands a, then b, then c within 5 minutes', () => {
  const c = load('temporal_ordered.yml');
  const who = { ComputerName: 'WS7', User: 'mallory' };
  const seq = (refs: string[]) => refs.map((r, i) => match(r, i * M, who));
  assert.equal(run(c, seq(['recon_cmd_a', 'recon_cmd_b', 'recon_cmd_c'])).length, 1);
  assert.equal(run(c, seq(['recon_cmd_c', 'recon_cmd_b', 'recon_cmd_a'])).length, 0);
  assert.equal(run(c, seq(['recon_cmd_b', 'recon_cmd_a', 'recon_cmd_c'])).length, 0);
});

test('value_avg.yml: average BytesOut above 500 per source IP and user over 24 hours', () => {
  const c = load('value_avg.yml');
  const who = { SourceIP: '10.1.1.1', User: 'carol' };
  const m = (at: number, BytesOut: number) => match('rule_a_id', at, { ...who, BytesOut });
  assert.equal(run(c, [m(0, 400), m(H, 600)]).length, 0, 'average 500 is not above 500');
  const alerts = run(c, [m(0, 400), m(H, 600), m(23 * H, 800)]);
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0].value, 600);
  assert.equal(run(c, [m(0, 1), m(24 * H + 1, 501)]).length, 1, 'the small one left the window');
});

test('value_count.yml: 100 distinct users failing on one source/destination pair within a day', () => {
  const c = load('value_count.yml');
  const pair = { ComputerName: 'DC1', WorkstationName: 'KIOSK3' };
  const users = (n: number, spacing: number) =>
    Array.from({ length: n }, (_, i) => match(FAILED_LOGIN, i * spacing, { ...pair, User: `user${i}` }));
  const alerts = run(c, users(100, 10 * M));
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0].value, 100);
  assert.equal(run(c, users(99, M)).length, 0);
  const sameUser = Array.from({ length: 200 }, (_, i) => match(FAILED_LOGIN, i * S, { ...pair, User: 'admin' }));
  assert.equal(run(c, sameUser).length, 0, 'many failures of one user are not 100 users');
});

test('value_percentile.yml: a process name that is 1% or less of the processes a computer spawned in 24h', () => {
  const c = load('value_percentile.yml');
  assert.equal(c.condition.percentile, undefined);
  const proc = (at: number, computer: string, Image: string) =>
    match('process_creation', at, { ComputerName: computer, Image });
  const common = Array.from({ length: 199 }, (_, i) =>
    proc(i * M, 'WS1', i % 2 ? 'C:\\Windows\\svchost.exe' : 'C:\\Windows\\explorer.exe'),
  );
  const alerts = run(c, [...common, proc(200 * M, 'WS1', 'C:\\Users\\Public\\x.exe')]);
  assert.equal(alerts.length, 1);
  assert.deepEqual(alerts[0].groupBy, { ComputerName: 'WS1' });
  assert.equal(alerts[0].value, 0.5, '1 of 200');
  const young = [proc(0, 'WS2', 'a.exe'), proc(1, 'WS2', 'b.exe')];
  assert.equal(run(c, young).length, 0, 'with few processes nothing is 1% of them');
});

test('value_sum.yml: more than 1,000,000 bytes sent to websites per source IP and user within an hour', () => {
  const c = load('value_sum.yml');
  const who = { SourceIP: '10.2.2.2', User: 'dave' };
  const m = (at: number, bytes_sent: number) => match('website_access', at, { ...who, bytes_sent });
  assert.equal(run(c, [m(0, 500_000), m(30 * M, 500_000)]).length, 0, 'exactly 1,000,000 is not more');
  const alerts = run(c, [m(0, 500_000), m(30 * M, 500_000), m(H, 1)]);
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0].value, 1_000_001);
  assert.equal(run(c, [m(0, 500_000), m(30 * M, 500_000), m(H + 1, 1)]).length, 0);
});

test('the specification example: multiple failed logins followed by a successful login (a chain)', () => {
  const spec = readFileSync(`${SPEC}/specification/sigma-correlation-rules-specification.md`, 'utf8');
  const section = spec.slice(spec.indexOf('### Failed Logins Followed by Successful Login'));
  const yml = /```yml\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(yml);
  const docs = parseAllDocuments(yml).map((d) => d.toJS());
  const correlations = docs.filter(isCorrelationDocument).map((d) => compileCorrelation(d, 'spec-example.yml'));
  assert.equal(correlations.length, 2);
  const engine = createCorrelationEngine(correlations);
  const rule = (name: string, id: string) => ({ id, name, title: name, level: 'low', tags: [] });
  const failed = rule('failed_login', '53ba33fd-3a50-4468-a5ef-c583635cfa92');
  const success = rule('successful_login', '4d0a2c83-c62c-4ed4-b475-c7e23a9269b8');
  assert.equal(engine.suppresses(failed), true, 'generate is not set, so base rules do not alert alone');
  assert.equal(engine.suppresses(success), true);
  const ev = (r: typeof failed, at: number, User: string): SigmaMatch => ({
    rule: r,
    event: { ...match('x', at, { User, EventID: r === failed ? 4625 : 4624 }).event },
  });
  const tries = Array.from({ length: 10 }, (_, i) => ev(failed, i * 30 * S, 'alice'));
  const alerts = [...tries, ev(success, 6 * M, 'alice')].flatMap((m) => engine.onMatch(m));
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0].correlation.id, 'b180ead8-d58f-40b2-ae54-c8940995b9b6');
  assert.equal(alerts[0].correlation.level, 'high');
  assert.deepEqual(alerts[0].groupBy, { User: 'alice' });
  assert.equal(alerts[0].eventIds.length, 11);

  const engine2 = createCorrelationEngine(correlations);
  const nine = [...tries.slice(0, 9), ev(success, 6 * M, 'alice')].flatMap((m) => engine2.onMatch(m));
  assert.equal(nine.length, 0, 'nine failures are not "multiple" (gte 10)');
  const engine3 = createCorrelationEngine(correlations);
  const otherUser = [...tries, ev(success, 6 * M, 'bob')].flatMap((m) => engine3.onMatch(m));
  assert.equal(otherUser.length, 0, 'the success must be of the same user');
});
