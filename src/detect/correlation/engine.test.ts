import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { InputError } from '../../lib/errors.ts';
import type { FieldValue } from '../../lib/event.ts';
import { type CompiledCorrelation, compileCorrelation } from './compile.ts';
import {
  type CorrelationAlert,
  type CorrelationEngineOptions,
  createCorrelationEngine,
  type SigmaMatch,
} from './engine.ts';

const T0 = Date.UTC(2025, 0, 1);
const S = 1000;
const M = 60 * S;

function corr(correlation: Record<string, unknown>, top: Record<string, unknown> = {}): CompiledCorrelation {
  return compileCorrelation({ title: 'test correlation', ...top, correlation }, 'test.yml');
}

let nextId = 0;
/** A match of the rule named `rule` (id `id-<rule>`) on an event at T0 + `at` ms. */
function match(rule: string, at: number, fields: Record<string, FieldValue> = {}, id?: string): SigmaMatch {
  const eventId = id ?? `e${++nextId}`;
  return {
    rule: { id: `id-${rule}`, name: rule, title: rule, level: 'low', tags: [] },
    event: {
      id: eventId,
      timestamp: T0 + at,
      ingested: T0 + at,
      tenant: 'default',
      source: 'http',
      layout: 'json',
      raw: '',
      fields,
    },
  };
}

function engineOf(correlations: CompiledCorrelation[], opts: CorrelationEngineOptions = {}) {
  return createCorrelationEngine(correlations, opts);
}

function feedAll(
  correlations: CompiledCorrelation[],
  matches: SigmaMatch[],
  opts: CorrelationEngineOptions = {},
): CorrelationAlert[] {
  const engine = engineOf(correlations, opts);
  return matches.flatMap((m) => engine.onMatch(m));
}

const count3in10s = corr({
  type: 'event_count',
  rules: ['fail'],
  'group-by': ['host'],
  timespan: '10s',
  condition: { gte: 3 },
});

test('event_count: the window is inclusive: matches exactly timespan apart are together', () => {
  const h = { host: 'a' };
  const alerts = feedAll([count3in10s], [match('fail', 0, h), match('fail', 5 * S, h), match('fail', 10 * S, h)]);
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0].value, 3);
  assert.equal(alerts[0].firstTimestamp, T0);
  assert.equal(alerts[0].lastTimestamp, T0 + 10 * S);
  assert.deepEqual(alerts[0].groupBy, { host: 'a' });
  assert.equal(alerts[0].correlation.type, 'event_count');
});

test('event_count: one millisecond past the timespan is outside the window', () => {
  const h = { host: 'a' };
  const alerts = feedAll([count3in10s], [match('fail', 0, h), match('fail', 5 * S, h), match('fail', 10 * S + 1, h)]);
  assert.equal(alerts.length, 0);
});

test('event_count: an out-of-order match inside the window counts; one older than the window is ignored', () => {
  const h = { host: 'a' };
  const registry = new Registry();
  const inside = feedAll([count3in10s], [match('fail', 0, h), match('fail', 10 * S, h), match('fail', 4 * S, h)]);
  assert.equal(inside.length, 1);
  assert.deepEqual(inside[0].eventIds.length, 3);
  const engine = engineOf([count3in10s], { metrics: registry });
  const tooLate = [match('fail', 11 * S, h), match('fail', 20 * S, h), match('fail', 9 * S, h)].flatMap((m) =>
    engine.onMatch(m),
  );
  assert.equal(tooLate.length, 0, 'the match at 9s is older than 20s - 10s');
  const late = registry.getSingleMetric('vigil_correlation_late_matches_total');
  assert.ok(late);
  return late.get().then((v) => assert.equal(v.values[0].value, 1));
});

test('group-by keeps groups apart, and a match without the group-by field is skipped', () => {
  const alerts = feedAll(
    [count3in10s],
    [
      match('fail', 0, { host: 'a' }),
      match('fail', 1, { host: 'b' }),
      match('fail', 2, { host: 'a' }),
      match('fail', 3, { host: 'b' }),
      match('fail', 4, {}),
      match('fail', 5, { host: null }),
      match('fail', 6, { host: 'a' }),
    ],
  );
  assert.equal(alerts.length, 1);
  assert.deepEqual(alerts[0].groupBy, { host: 'a' });
});

test('group-by values compare by canonical text, so a number and its string group together', () => {
  const alerts = feedAll(
    [corr({ type: 'event_count', rules: ['fail'], 'group-by': ['uid'], timespan: '10s', condition: { gte: 2 } })],
    [match('fail', 0, { uid: 1000 }), match('fail', 1, { uid: '1000' })],
  );
  assert.equal(alerts.length, 1);
  assert.deepEqual(alerts[0].groupBy, { uid: '1000' }, 'the completing match supplies the values');
});

test('without group-by every match falls in one group', () => {
  const c = corr({ type: 'event_count', rules: ['fail'], timespan: '10s', condition: { gte: 2 } });
  const alerts = feedAll([c], [match('fail', 0, { host: 'a' }), match('fail', 1, { host: 'b' })]);
  assert.equal(alerts.length, 1);
  assert.deepEqual(alerts[0].groupBy, {});
});

test('one event matched by two referenced rules counts once for event_count', () => {
  const c = corr({
    type: 'event_count',
    rules: ['a', 'b'],
    'group-by': ['host'],
    timespan: '10s',
    condition: { gte: 2 },
  });
  const alerts = feedAll([c], [match('a', 0, { host: 'h' }, 'same'), match('b', 0, { host: 'h' }, 'same')]);
  assert.equal(alerts.length, 0);
});

test('conditions with ranges: gt + lte fires entering the range and re-arms after leaving it', () => {
  const c = corr({
    type: 'event_count',
    rules: ['fail'],
    'group-by': ['host'],
    timespan: '1m',
    condition: { gt: 2, lte: 3 },
  });
  const engine = engineOf([c]);
  const h = { host: 'a' };
  const counts = [0, 1, 2, 3, 4].map((i) => engine.onMatch(match('fail', i * S, h)).length);
  // Counts 1,2 below; 3 enters the range (fires); 4,5 above it.
  assert.deepEqual(counts, [0, 0, 1, 0, 0]);
  // After a gap of more than a minute the window holds 1, 2, then 3 again: a new episode.
  const later = [0, 1, 2].map((i) => engine.onMatch(match('fail', 2 * M + i * S, h)).length);
  assert.deepEqual(later, [0, 0, 1]);
});

test('conditions: every operator, alone', () => {
  const cases: Array<[Record<string, number>, number[]]> = [
    // condition, alerts at counts 1..4 of a single growing window (edge-triggered)
    [{ gt: 2 }, [3]],
    [{ gte: 2 }, [2]],
    [{ lt: 3 }, [1]],
    [{ lte: 1 }, [1]],
    [{ eq: 3 }, [3]],
    [{ neq: 1 }, [2]],
  ];
  for (const [condition, expected] of cases) {
    const c = corr({ type: 'event_count', rules: ['x'], timespan: '1h', condition });
    const engine = engineOf([c]);
    const fired = [1, 2, 3, 4].filter((n) => engine.onMatch(match('x', n * S)).length > 0);
    assert.deepEqual(fired, expected, JSON.stringify(condition));
  }
});

test('an alert does not fire again while its condition keeps holding, and fires again after it stopped', () => {
  const engine = engineOf([count3in10s]);
  const h = { host: 'a' };
  // A steady stream of one match per 2 s keeps 6 matches in every 10 s window: one alert for the episode.
  const steady = Array.from({ length: 30 }, (_, i) => engine.onMatch(match('fail', i * 2 * S, h))).flat();
  assert.equal(steady.length, 1);
  // A quiet minute, then a burst: a new episode, a new alert with a new id.
  const burst = [0, 1, 2].flatMap((i) => engine.onMatch(match('fail', 2 * M + i * S, h)));
  assert.equal(burst.length, 1);
  assert.notEqual(burst[0].id, steady[0].id);
});

test('value_count: distinct values in the window, with the window edges', () => {
  const c = corr({
    type: 'value_count',
    rules: ['fail'],
    'group-by': ['host'],
    timespan: '10s',
    condition: { field: 'user', gte: 3 },
  });
  const m = (at: number, user?: string) => match('fail', at, user === undefined ? { host: 'a' } : { host: 'a', user });
  assert.equal(feedAll([c], [m(0, 'u1'), m(1, 'u1'), m(2, 'u1'), m(3, 'u2')]).length, 0, 'repeats do not count');
  assert.equal(feedAll([c], [m(0, 'u1'), m(1), m(2, 'u2'), m(3)]).length, 0, 'matches without the field do not count');
  const inside = feedAll([c], [m(0, 'u1'), m(5 * S, 'u2'), m(10 * S, 'u3')]);
  assert.equal(inside.length, 1);
  assert.equal(inside[0].value, 3);
  assert.equal(feedAll([c], [m(0, 'u1'), m(5 * S, 'u2'), m(10 * S + 1, 'u3')]).length, 0);
  assert.equal(feedAll([c], [m(0, 'u1'), m(10 * S, 'u2'), m(3 * S, 'u3')]).length, 1, 'out of order inside');
  assert.equal(feedAll([c], [m(11 * S, 'u1'), m(21 * S + 1, 'u2'), m(11 * S, 'u3')]).length, 0, 'too late');
});

test('value_count with several fields counts distinct tuples', () => {
  const c = corr({
    type: 'value_count',
    rules: ['x'],
    timespan: '1m',
    condition: { field: ['user', 'domain'], gte: 2 },
  });
  const alerts = feedAll(
    [c],
    [
      match('x', 0, { user: 'a', domain: 'd1' }),
      match('x', 1, { user: 'a', domain: 'd1' }),
      match('x', 2, { user: 'a', domain: 'd2' }),
    ],
  );
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0].value, 2);
});

const temporal = corr({ type: 'temporal', rules: ['a', 'b', 'c'], 'group-by': ['host'], timespan: '5m' });
const ordered = corr({ type: 'temporal_ordered', rules: ['a', 'b', 'c'], 'group-by': ['host'], timespan: '5m' });

test('temporal: all rules in any order within the timespan, with the window edges', () => {
  const h = { host: 'x' };
  const inside = feedAll([temporal], [match('c', 0, h), match('a', 1 * M, h), match('b', 5 * M, h)]);
  assert.equal(inside.length, 1);
  assert.equal(inside[0].value, 3);
  assert.equal(feedAll([temporal], [match('c', 0, h), match('a', 1 * M, h), match('b', 5 * M + 1, h)]).length, 0);
  assert.equal(feedAll([temporal], [match('a', 0, h), match('a', 1, h), match('b', 2, h)]).length, 0);
  const late = feedAll([temporal], [match('a', 5 * M, h), match('b', 6 * M, h), match('c', 2 * M, h)]);
  assert.equal(late.length, 1, 'a late match inside the window completes it');
  const tooLate = feedAll([temporal], [match('a', 5 * M, h), match('b', 10 * M, h), match('c', 5 * M - 1, h)]);
  assert.equal(tooLate.length, 0);
  assert.equal(
    feedAll([temporal], [match('a', 0, h), match('b', 1, { host: 'y' }), match('c', 2, h)]).length,
    0,
    'groups are separate',
  );
});

test('temporal: one event matched by several referenced rules counts for each', () => {
  const h = { host: 'x' };
  const alerts = feedAll([temporal], [match('a', 0, h, 'e'), match('b', 0, h, 'e'), match('c', 1, h)]);
  assert.equal(alerts.length, 1);
  assert.deepEqual(alerts[0].eventIds.sort(), ['e', `e${nextId}`].sort());
});

test('temporal with a condition counts the distinct rules seen', () => {
  const c = corr({ type: 'temporal', rules: ['a', 'b', 'c'], timespan: '5m', condition: { gte: 2 } });
  assert.equal(feedAll([c], [match('a', 0), match('c', 1)]).length, 1);
});

test('temporal_ordered: the rules in order by event time, with the window edges', () => {
  const h = { host: 'x' };
  const cases: Array<[string, SigmaMatch[], number]> = [
    ['in order', [match('a', 0, h), match('b', 1 * M, h), match('c', 5 * M, h)], 1],
    ['in order, last one just outside', [match('a', 0, h), match('b', 1 * M, h), match('c', 5 * M + 1, h)], 0],
    ['out of order', [match('b', 0, h), match('a', 1 * M, h), match('c', 2 * M, h)], 0],
    [
      'arrival out of order, event times in order',
      [match('c', 3 * S, h), match('a', 1 * S, h), match('b', 2 * S, h)],
      1,
    ],
    ['equal timestamps count as in order', [match('b', 1 * S, h), match('a', 1 * S, h), match('c', 1 * S, h)], 1],
    [
      'an earlier b does not help, a later one does',
      [match('b', 0, h), match('a', 1, h), match('c', 2, h), match('b', 3, h), match('c', 4, h)],
      1,
    ],
    ['late match older than the window', [match('b', 6 * M, h), match('c', 7 * M, h), match('a', 1 * M, h)], 0],
  ];
  for (const [name, matches, expected] of cases) {
    assert.equal(feedAll([ordered], matches).length, expected, name);
  }
});

test('temporal_ordered with a condition compares the longest prefix seen in order', () => {
  const c = corr({ type: 'temporal_ordered', rules: ['a', 'b', 'c'], timespan: '5m', condition: { gte: 2 } });
  assert.equal(feedAll([c], [match('b', 0), match('c', 1)]).length, 0);
  const alerts = feedAll([c], [match('a', 0), match('b', 1)]);
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0].value, 2);
});

test('value_sum: the sum of a numeric field in the window, numeric strings included', () => {
  const c = corr({
    type: 'value_sum',
    rules: ['w'],
    'group-by': ['ip'],
    timespan: '1h',
    condition: { field: 'bytes', gt: 1000 },
  });
  const m = (at: number, bytes: FieldValue) => match('w', at, { ip: '10.0.0.1', bytes });
  assert.equal(feedAll([c], [m(0, 600), m(1 * M, 400)]).length, 0, '1000 is not > 1000');
  const inside = feedAll([c], [m(0, 600), m(30 * M, 'x'), m(60 * M, '401')]);
  assert.equal(inside.length, 1);
  assert.equal(inside[0].value, 1001);
  assert.equal(feedAll([c], [m(0, 600), m(60 * M + 1, 401)]).length, 0, 'just outside');
  assert.equal(feedAll([c], [m(0, 600), m(60 * M, 1), m(30 * M, 400)]).length, 1, 'out of order inside');
});

test('value_sum with fractions depends only on the window, not on what left it', () => {
  const c = corr({ type: 'value_sum', rules: ['w'], timespan: '10s', condition: { field: 'v', gte: 0.3, lte: 1 } });
  const alerts = feedAll(
    [c],
    [match('w', 0, { v: 1e16 }), match('w', 20 * S, { v: 0.1 }), match('w', 21 * S, { v: 0.2 })],
  );
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0].value, 0.1 + 0.2);
});

test('value_avg: the average of a numeric field in the window', () => {
  const c = corr({
    type: 'value_avg',
    rules: ['n'],
    'group-by': ['ip'],
    timespan: '1h',
    condition: { field: 'out', gt: 500 },
  });
  const m = (at: number, out: number) => match('n', at, { ip: 'a', out });
  const alerts = feedAll([c], [m(0, 100), m(1, 900), m(2, 600)]);
  assert.equal(alerts.length, 1, 'avg(100, 900, 600) = 533.3 > 500; avg(100, 900) = 500 is not');
  assert.ok(Math.abs((alerts[0].value ?? 0) - 1600 / 3) < 1e-9);
  assert.equal(feedAll([c], [m(0, 100), m(60 * M, 900), m(60 * M + 1, 600)]).length, 1, 'the 100 left: 750');
  assert.equal(feedAll([c], [m(0, 1000), m(60 * M + 1, 100)]).length, 1, 'first alone fires');
});

test('value_percentile with percentile: that percentile of the numeric field', () => {
  const c = corr({
    type: 'value_percentile',
    rules: ['req'],
    'group-by': ['svc'],
    timespan: '1m',
    condition: { field: 'ms', percentile: 90, gt: 1000 },
  });
  const engine = engineOf([c]);
  const values = [100, 100, 100, 100, 100, 100, 100, 100, 100, 5000];
  const alerts = values.flatMap((ms, i) => engine.onMatch(match('req', i * S, { svc: 'api', ms })));
  // p90 of 9 x 100 and 5000 = 100 + 0.1 * 4900 = 590: below; one more slow request: p90 = 5000.
  assert.equal(alerts.length, 0);
  const more = engine.onMatch(match('req', 10 * S, { svc: 'api', ms: 5000 }));
  assert.equal(more.length, 1);
  assert.equal(more[0].value, 5000);
  assert.equal(engine.onMatch(match('req', 70 * S + 1, { svc: 'api', ms: 1 })).length, 0, 'window slid');
});

test('value_percentile without percentile: the share of the arriving value, once per value', () => {
  const c = corr({
    type: 'value_percentile',
    rules: ['proc'],
    'group-by': ['host'],
    timespan: '1h',
    condition: { field: 'image', lte: 10 },
  });
  const engine = engineOf([c]);
  const common = Array.from({ length: 9 }, (_, i) =>
    engine.onMatch(match('proc', i * S, { host: 'h', image: 'svchost.exe' })),
  );
  assert.equal(common.flat().length, 0);
  const rare = engine.onMatch(match('proc', 10 * S, { host: 'h', image: 'evil.exe' }));
  assert.equal(rare.length, 1, '1 of 10 is 10%');
  assert.equal(rare[0].value, 10);
  assert.equal(engine.onMatch(match('proc', 11 * S, { host: 'h', image: 'evil.exe' })).length, 0, '2 of 11: 18%');
  assert.equal(
    engine.onMatch(match('proc', 12 * S, { host: 'h', image: 'other.exe' })).length,
    1,
    'another rare value',
  );
});

test('aliases: the same logical field named differently per rule (the specification example)', () => {
  const c = corr({
    type: 'temporal',
    rules: ['internal_error', 'new_network_connection'],
    'group-by': ['internal_ip', 'remote_ip'],
    timespan: '10s',
    aliases: {
      internal_ip: { internal_error: 'destination.ip', new_network_connection: 'source.ip' },
      remote_ip: { internal_error: 'source.ip', new_network_connection: 'destination.ip' },
    },
  });
  const err = (at: number, src: string, dst: string) =>
    match('internal_error', at, { 'source.ip': src, 'destination.ip': dst });
  const conn = (at: number, src: string, dst: string) =>
    match('new_network_connection', at, { 'source.ip': src, 'destination.ip': dst });
  const alerts = feedAll([c], [err(0, '203.0.113.9', '10.0.0.5'), conn(5 * S, '10.0.0.5', '203.0.113.9')]);
  assert.equal(alerts.length, 1);
  assert.deepEqual(alerts[0].groupBy, { internal_ip: '10.0.0.5', remote_ip: '203.0.113.9' });
  assert.equal(feedAll([c], [err(0, '203.0.113.9', '10.0.0.5'), conn(5 * S, '203.0.113.9', '10.0.0.5')]).length, 0);
  assert.equal(
    feedAll([c], [err(0, '203.0.113.9', '10.0.0.5'), conn(10 * S + 1, '10.0.0.5', '203.0.113.9')]).length,
    0,
  );
});

test('aliases are looked up by rule id as well as by name', () => {
  const c = corr({
    type: 'event_count',
    rules: ['id-a', 'b'],
    'group-by': ['ip'],
    timespan: '10s',
    condition: { gte: 2 },
    aliases: { ip: { 'id-a': 'src', b: 'dst' } },
  });
  assert.equal(feedAll([c], [match('a', 0, { src: '1.1.1.1' }), match('b', 1, { dst: '1.1.1.1' })]).length, 1);
});

const failedLogins = corr(
  { type: 'event_count', rules: ['failed_login'], 'group-by': ['User'], timespan: '10m', condition: { gte: 3 } },
  { id: 'a8418a5a-5fc4-46b5-b23b-6c73beb19d41', name: 'multiple_failed_login', title: 'Multiple failed logons' },
);
const bruteForce = corr(
  {
    type: 'temporal_ordered',
    rules: ['multiple_failed_login', 'successful_login'],
    'group-by': ['User'],
    timespan: '10m',
  },
  { id: 'b180ead8-d58f-40b2-ae54-c8940995b9b6', title: 'Failed logins followed by success', level: 'high' },
);

test('chaining: an alert of an inner correlation is a match for the correlations referencing it', () => {
  const u = { User: 'alice', Computer: 'ws1' };
  const matches = [
    match('failed_login', 0, u),
    match('failed_login', 1 * M, u),
    match('failed_login', 2 * M, u),
    match('successful_login', 3 * M, u),
  ];
  const alerts = feedAll([failedLogins, bruteForce], matches);
  assert.equal(alerts.length, 1, 'the inner alert is withheld: the outer correlation has generate: false');
  const [outer] = alerts;
  assert.equal(outer.correlation.id, bruteForce.id);
  assert.equal(outer.correlation.level, 'high');
  assert.deepEqual(outer.groupBy, { User: 'alice' });
  assert.deepEqual(
    outer.eventIds,
    matches.map((m) => m.event.id),
    'base events flow through the chain',
  );
  assert.equal(outer.firstTimestamp, T0 + 2 * M, 'the inner alert is a match at its lastTimestamp');
  assert.equal(outer.lastTimestamp, T0 + 3 * M);
  assert.equal(
    feedAll([failedLogins, bruteForce], [match('successful_login', 0, u), ...matches.slice(0, 3)]).length,
    0,
    'success before the failures is not in order',
  );
});

test('chaining: the outer group-by may use a field of the completing event beyond the inner group-by', () => {
  const inner = corr(
    { type: 'event_count', rules: ['failed_login'], 'group-by': ['Computer'], timespan: '10m', condition: { gte: 2 } },
    { name: 'many_failed' },
  );
  const outer = corr({
    type: 'temporal_ordered',
    rules: ['many_failed', 'successful_login'],
    'group-by': ['User'],
    timespan: '10m',
  });
  const alerts = feedAll(
    [inner, outer],
    [
      match('failed_login', 0, { Computer: 'ws1', User: 'bob' }),
      match('failed_login', 1, { Computer: 'ws1', User: 'bob' }),
      match('successful_login', 2, { Computer: 'ws9', User: 'bob' }),
    ],
  );
  assert.equal(alerts.length, 1);
  assert.deepEqual(alerts[0].groupBy, { User: 'bob' });
});

test('generate: false withholds the referenced rules and inner correlations; true keeps them', () => {
  const engine = engineOf([failedLogins, bruteForce]);
  assert.equal(engine.suppresses({ id: 'x', name: 'failed_login' }), true);
  assert.equal(engine.suppresses({ id: 'id-successful_login', name: 'successful_login' }), true);
  assert.equal(engine.suppresses({ id: failedLogins.id, name: 'multiple_failed_login' }), true);
  assert.equal(engine.suppresses({ id: bruteForce.id }), false);
  assert.equal(engine.suppresses({ id: 'unrelated', name: 'unrelated' }), false);

  const generating = corr(
    {
      ...{ type: 'temporal_ordered', rules: ['multiple_failed_login', 'successful_login'], 'group-by': ['User'] },
      timespan: '10m',
      generate: true,
    },
    { id: 'outer-generating' },
  );
  const engine2 = engineOf([failedLogins, generating]);
  assert.equal(engine2.suppresses({ id: 'x', name: 'successful_login' }), false);
  const u = { User: 'alice' };
  const alerts = [
    match('failed_login', 0, u),
    match('failed_login', 1, u),
    match('failed_login', 2, u),
    match('successful_login', 3, u),
  ].flatMap((m) => engine2.onMatch(m));
  assert.deepEqual(
    alerts.map((a) => a.correlation.id),
    [failedLogins.id, 'outer-generating'],
  );
  assert.equal(
    engine2.suppresses({ id: 'x', name: 'failed_login' }),
    true,
    'the inner correlation has generate: false',
  );
});

test('engine creation rejects cycles and duplicate ids or names', () => {
  const a = corr({ type: 'event_count', rules: ['b'], timespan: '1m', condition: { gte: 1 } }, { name: 'a' });
  const b = corr({ type: 'event_count', rules: ['a'], timespan: '1m', condition: { gte: 1 } }, { name: 'b' });
  assert.throws(
    () => createCorrelationEngine([a, b]),
    (e: unknown) => e instanceof InputError && /cycle: a -> b -> a|cycle: b -> a -> b/.test(e.message),
  );
  const self = corr({ type: 'event_count', rules: ['s'], timespan: '1m', condition: { gte: 1 } }, { name: 's' });
  assert.throws(() => createCorrelationEngine([self]), /cycle/);
  assert.throws(() => createCorrelationEngine([a, { ...a }]), /already used/);
  assert.throws(() => createCorrelationEngine([count3in10s], { maxStateEntries: 0 }), /maxStateEntries/);
});

test('alert ids are sha256 hex, deterministic, and differ by correlation, group and completing event', () => {
  const h = { host: 'a' };
  const ms = [match('fail', 0, h, 'x1'), match('fail', 1, h, 'x2'), match('fail', 2, h, 'x3')];
  const [a1] = feedAll([count3in10s], ms);
  const [a2] = feedAll([count3in10s], ms);
  assert.match(a1.id, /^[0-9a-f]{64}$/);
  assert.equal(a1.id, a2.id);
  const [other] = feedAll([count3in10s], [ms[0], ms[1], match('fail', 2, h, 'x4')]);
  assert.notEqual(other.id, a1.id);
  const [otherGroup] = feedAll(
    [count3in10s],
    ms.map((m) => ({ ...m, event: { ...m.event, fields: { host: 'b' } } })),
  );
  assert.notEqual(otherGroup.id, a1.id);
});

/** A deterministic pseudo-random stream over several groups and rules, in mostly-increasing time. */
function stream(n: number, seed: number): SigmaMatch[] {
  let s = seed;
  const rnd = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const out: SigmaMatch[] = [];
  let t = 0;
  for (let i = 0; i < n; i++) {
    t += Math.floor(rnd() * 4 * S);
    const jitter = rnd() < 0.1 ? -Math.floor(rnd() * 20 * S) : 0; // some arrive out of order
    const rule = ['a', 'b', 'c', 'fail'][Math.floor(rnd() * 4)];
    const fields = {
      host: `h${Math.floor(rnd() * 3)}`,
      user: `u${Math.floor(rnd() * 5)}`,
      bytes: Math.floor(rnd() * 100),
    };
    out.push(match(rule, t + jitter, fields, `s${seed}-${i}`));
  }
  return out;
}

const mixed = [
  corr(
    { type: 'event_count', rules: ['fail', 'a'], 'group-by': ['host'], timespan: '30s', condition: { gte: 5 } },
    { name: 'burst' },
  ),
  corr({
    type: 'value_count',
    rules: ['fail'],
    'group-by': ['host'],
    timespan: '1m',
    condition: { field: 'user', gte: 4 },
  }),
  corr({ type: 'temporal', rules: ['a', 'b', 'c'], 'group-by': ['host'], timespan: '20s' }),
  corr({ type: 'temporal_ordered', rules: ['burst', 'c'], 'group-by': ['host'], timespan: '1m' }),
  corr({
    type: 'value_sum',
    rules: ['b'],
    'group-by': ['user'],
    timespan: '1m',
    condition: { field: 'bytes', gt: 300 },
  }),
];

test('replaying the same matches into a fresh engine yields the same alerts and ids', () => {
  const matches = stream(3000, 7);
  const first = feedAll(mixed, matches);
  const second = feedAll(mixed, matches);
  assert.ok(first.length > 20, `the stream should produce alerts, got ${first.length}`);
  assert.deepEqual(second, first);
});

test('one engine never returns the same alert id twice, even when matches are delivered twice', () => {
  const matches = stream(3000, 11);
  const engine = engineOf(mixed);
  const alerts: CorrelationAlert[] = [];
  for (const [i, m] of matches.entries()) {
    alerts.push(...engine.onMatch(m));
    // At-least-once delivery: redeliver some matches right away and some much later.
    if (i % 7 === 0) alerts.push(...engine.onMatch(m));
    if (i % 13 === 0 && i > 100) alerts.push(...engine.onMatch(matches[i - 100]));
  }
  const ids = alerts.map((a) => a.id);
  assert.equal(new Set(ids).size, ids.length);
  const clean = feedAll(mixed, matches).map((a) => a.id);
  assert.deepEqual(ids, clean, 'redelivered matches change nothing');
});

test('failover: a fresh engine replaying from checkpoint - replayHorizonMs reproduces every later alert', () => {
  const matches = stream(4000, 23);
  const engine = engineOf(mixed);
  const original = matches.map((m) => engine.onMatch(m));
  const horizon = engine.replayHorizonMs();
  assert.equal(horizon, 2 * 60 * S + 2 * 30 * S, 'temporal_ordered over burst: 2 x 1m + 2 x 30s');
  for (const checkpoint of [1000, 2000, 3100]) {
    const checkpointTime = matches[checkpoint].event.timestamp;
    const replay = engineOf(mixed);
    const reproduced: CorrelationAlert[] = [];
    for (const [i, m] of matches.entries()) {
      if (i < checkpoint && m.event.timestamp < checkpointTime - horizon) continue; // not replayed
      const alerts = replay.onMatch(m);
      if (i >= checkpoint) reproduced.push(...alerts); // alerts of warm-up matches are dropped
    }
    const expected = original.slice(checkpoint).flat();
    assert.ok(expected.length > 5);
    assert.deepEqual(reproduced, expected, `checkpoint ${checkpoint}`);
  }
});

test('state expires by event-time watermark', () => {
  const engine = engineOf([count3in10s]);
  for (let i = 0; i < 50; i++) engine.onMatch(match('fail', i, { host: `h${i}` }));
  assert.equal(engine.stateSize(), 50);
  engine.onMatch(match('fail', 10 * S + 49, { host: 'h0' }));
  assert.equal(engine.stateSize(), 2, 'idle groups older than the window are dropped; h49 sits on the edge');
  engine.onMatch(match('fail', 30 * S, { host: 'other' }));
  assert.equal(engine.stateSize(), 1);
});

test('one event far in the future does not expire everything', () => {
  const engine = engineOf([count3in10s], { now: () => T0 + 1 * S, maxFutureSkewMs: 5 * S });
  engine.onMatch(match('fail', 0, { host: 'a' }));
  engine.onMatch(match('fail', 1 * S, { host: 'a' }));
  engine.onMatch(match('fail', 365 * 24 * 60 * M, { host: 'skewed' }));
  assert.equal(engine.stateSize(), 3, 'the watermark stops at now() + 5s');
  assert.equal(engine.onMatch(match('fail', 2 * S, { host: 'a' })).length, 1);
});

test('memory cap: the least recently updated groups are evicted and counted', async () => {
  const registry = new Registry();
  const engine = engineOf([count3in10s], { maxStateEntries: 10, metrics: registry });
  for (let i = 0; i < 8; i++) engine.onMatch(match('fail', i, { host: `h${i}` }));
  engine.onMatch(match('fail', 8, { host: 'h0' }));
  engine.onMatch(match('fail', 9, { host: 'h0' }) /* h0 completes: 3 matches */);
  assert.equal(engine.stateSize(), 10);
  engine.onMatch(match('fail', 10, { host: 'h8' }));
  engine.onMatch(match('fail', 11, { host: 'h9' }));
  assert.equal(engine.stateSize(), 10, 'h1 and h2 (least recently updated) went');
  const evictions = await registry.getSingleMetric('vigil_correlation_evictions_total')?.get();
  assert.equal(evictions?.values[0].value, 2);
  const state = await registry.getSingleMetric('vigil_correlation_state_entries')?.get();
  assert.equal(state?.values[0].value, 10);
  // h1 was evicted: it starts over and needs three fresh matches.
  assert.equal(engine.onMatch(match('fail', 12, { host: 'h1' })).length, 0);
  assert.equal(engine.onMatch(match('fail', 13, { host: 'h0' })).length, 0, 'h0 kept its episode');
});

test('metrics: engines sharing a registry reuse the registered metrics; no registry, no metrics', async () => {
  const registry = new Registry();
  const e1 = engineOf([count3in10s], { metrics: registry });
  const e2 = engineOf([count3in10s], { metrics: registry });
  const h = { host: 'a' };
  for (const e of [e1, e2]) for (let i = 0; i < 3; i++) e.onMatch(match('fail', i, h, `m${i}`));
  const alerts = await registry.getSingleMetric('vigil_correlation_alerts_total')?.get();
  assert.equal(alerts?.values[0].value, 2);
  assert.doesNotThrow(() => engineOf([count3in10s]).onMatch(match('fail', 0, h)));
});

test('eventIds are capped at 100, the newest, keeping the completing event', () => {
  const c = corr({ type: 'event_count', rules: ['x'], timespan: '1h', condition: { gte: 150 } });
  const engine = engineOf([c]);
  const ms = Array.from({ length: 150 }, (_, i) => match('x', (i + 1) * S, {}, `ev${i}`));
  const late = match('x', 0, {}, 'completing-late');
  const alerts = [...ms.slice(0, 149), late].flatMap((m) => engine.onMatch(m));
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0].eventIds.length, 100);
  assert.equal(alerts[0].eventIds[0], 'completing-late', 'kept, and in event-time order');
  assert.equal(alerts[0].eventIds.at(-1), 'ev148');
});

test('matches of unreferenced rules and matches with non-finite timestamps are ignored', () => {
  const engine = engineOf([count3in10s]);
  assert.deepEqual(engine.onMatch(match('other', 0, { host: 'a' })), []);
  const bad = match('fail', 0, { host: 'a' });
  bad.event.timestamp = Number.NaN;
  assert.deepEqual(engine.onMatch(bad), []);
  assert.equal(engine.stateSize(), 0);
});

test('a group-by field named __proto__ or constructor is shown in the alert like any other', () => {
  const c = corr({
    type: 'event_count',
    rules: ['fail'],
    'group-by': ['__proto__', 'constructor'],
    timespan: '10s',
    condition: { gte: 2 },
  });
  const fields: Record<string, FieldValue> = JSON.parse('{"__proto__": "a", "constructor": "b"}');
  const alerts = feedAll([c], [match('fail', 0, fields), match('fail', S, fields)]);
  assert.equal(alerts.length, 1);
  assert.equal(Object.getPrototypeOf(alerts[0].groupBy), Object.prototype);
  assert.deepEqual(Object.entries(alerts[0].groupBy), [
    ['__proto__', 'a'],
    ['constructor', 'b'],
  ]);
});
