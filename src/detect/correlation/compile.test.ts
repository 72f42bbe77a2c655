import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InputError } from '../../lib/errors.ts';
import { compileCorrelation, isCorrelationDocument, parseTimespan } from './compile.ts';

function doc(correlation: Record<string, unknown>, top: Record<string, unknown> = {}): Record<string, unknown> {
  return { title: 'Test correlation', correlation, ...top };
}

const base = { type: 'event_count', rules: ['r1'], 'group-by': ['host'], timespan: '10m', condition: { gte: 3 } };

function compileError(d: unknown): InputError {
  try {
    compileCorrelation(d, 'rules/bad.yml');
  } catch (err) {
    assert.ok(err instanceof InputError, `expected InputError, got ${err}`);
    return err;
  }
  assert.fail('expected the document to be rejected');
}

test('timespans parse to milliseconds for every unit, and malformed ones are rejected', () => {
  const cases: Array<[unknown, number | undefined]> = [
    ['30s', 30_000],
    ['10m', 600_000],
    ['90m', 5_400_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['2w', 1_209_600_000],
    ['1M', 2_629_746_000],
    ['1y', 31_556_952_000],
    ['0m', undefined],
    ['1H', undefined],
    ['10', undefined],
    ['m', undefined],
    ['1.5h', undefined],
    [' 1h', undefined],
    ['1h30m', undefined],
    [10, undefined],
    [undefined, undefined],
  ];
  for (const [spec, ms] of cases) assert.equal(parseTimespan(spec), ms, String(spec));
});

test('each correlation type compiles with its required parts', () => {
  const cases: Array<Record<string, unknown>> = [
    base,
    { ...base, type: 'value_count', condition: { field: 'user', gte: 3 } },
    { ...base, type: 'value_sum', condition: { field: 'bytes', gt: 1000 } },
    { ...base, type: 'value_avg', condition: { field: 'bytes', gt: 500.5 } },
    { ...base, type: 'value_percentile', condition: { field: 'image', lte: 1 } },
    { ...base, type: 'value_percentile', condition: { field: 'bytes', percentile: 95, gt: 1000 } },
    { type: 'temporal', rules: ['a', 'b'], 'group-by': ['host'], timespan: '5m' },
    { type: 'temporal_ordered', rules: ['a', 'b'], 'group-by': ['host'], timespan: '5m' },
  ];
  for (const c of cases) {
    const compiled = compileCorrelation(doc(c), 'rules/ok.yml');
    assert.equal(compiled.type, c.type);
    assert.equal(compiled.timespanMs, c.timespan === '5m' ? 300_000 : 600_000);
    assert.equal(compiled.file, 'rules/ok.yml');
    assert.ok(Object.isFrozen(compiled));
  }
});

test('temporal types default to requiring every referenced rule', () => {
  const c = compileCorrelation(doc({ type: 'temporal', rules: ['a', 'b', 'c'], timespan: '5m' }), 'f.yml');
  assert.deepEqual(c.condition.ops, { gte: 3 });
  assert.deepEqual(c.groupBy, []);
});

test('conditions combine operators into a range and keep field and percentile', () => {
  const c = compileCorrelation(
    doc({ ...base, type: 'value_percentile', condition: { field: 'b', percentile: 90, gt: 100, lte: 200 } }),
    'f.yml',
  );
  assert.deepEqual(c.condition, { ops: { gt: 100, lte: 200 }, field: ['b'], percentile: 90 });
  const vc = compileCorrelation(doc({ ...base, type: 'value_count', condition: { field: ['a', 'b'], gte: 2 } }), 'f');
  assert.deepEqual(vc.condition.field, ['a', 'b']);
});

test('metadata: id and name are kept, level defaults to medium, tags are kept', () => {
  const c = compileCorrelation(doc(base, { id: 'abc', name: 'brute', level: 'high', tags: ['attack.t1110'] }), 'f');
  assert.equal(c.id, 'abc');
  assert.equal(c.name, 'brute');
  assert.equal(c.level, 'high');
  assert.deepEqual(c.tags, ['attack.t1110']);
  assert.equal(compileCorrelation(doc(base), 'f').level, 'medium');
});

test('a correlation without id gets a stable id derived from its content', () => {
  const a = compileCorrelation(doc(base), 'one.yml');
  const b = compileCorrelation(doc({ ...base }), 'elsewhere/two.yml');
  const c = compileCorrelation(doc({ ...base, timespan: '11m' }), 'one.yml');
  assert.match(a.id, /^derived-[0-9a-f]{32}$/);
  assert.equal(a.id, b.id, 'the file path does not change the id, so every node derives the same one');
  assert.notEqual(a.id, c.id);
});

test('generate defaults to false and is read from the top level or the correlation section', () => {
  assert.equal(compileCorrelation(doc(base), 'f').generate, false);
  assert.equal(compileCorrelation(doc(base, { generate: true }), 'f').generate, true);
  assert.equal(compileCorrelation(doc({ ...base, generate: true }), 'f').generate, true);
  const err = compileError(doc({ ...base, generate: false }, { generate: true }));
  assert.match(err.message, /generate: given twice/);
});

test('group-by and rules accept a single string', () => {
  const c = compileCorrelation(doc({ ...base, rules: 'r1', 'group-by': 'host' }), 'f');
  assert.deepEqual(c.rules, ['r1']);
  assert.deepEqual(c.groupBy, ['host']);
});

test('aliases compile to alias -> rule -> field', () => {
  const c = compileCorrelation(
    doc({ ...base, 'group-by': ['ip'], aliases: { ip: { rule_a: 'source.ip', rule_b: 'destination.ip' } } }),
    'f',
  );
  assert.deepEqual(c.aliases, { ip: { rule_a: 'source.ip', rule_b: 'destination.ip' } });
});

test('invalid documents are rejected with every reason, naming the file', () => {
  const cases: Array<[unknown, RegExp]> = [
    ['just a string', /must be a mapping/],
    [{ correlation: base }, /title: required/],
    [{ title: 't' }, /correlation: required/],
    [doc({ ...base, type: 'event_sum' }), /correlation.type: must be one of/],
    [doc({ ...base, rules: undefined }), /correlation.rules: required/],
    [doc({ ...base, rules: [] }), /at least one rule/],
    [doc({ ...base, rules: ['a', 'a'] }), /must not repeat/],
    [doc({ ...base, rules: [1] }), /list of non-empty strings/],
    [doc({ ...base, timespan: '1 hour' }), /correlation.timespan/],
    [doc({ ...base, timespan: undefined }), /correlation.timespan: required/],
    [doc({ ...base, condition: undefined }), /condition: required for event_count/],
    [doc({ ...base, condition: 'a and b' }), /must be a mapping of operators/],
    [doc({ ...base, condition: {} }), /needs at least one of/],
    [doc({ ...base, condition: { gte: '3' } }), /condition.gte: must be a number/],
    [doc({ ...base, condition: { gte: 3, above: 4 } }), /condition.above: unknown key/],
    [doc({ ...base, condition: { gt: 10, lt: 5 } }), /range is empty/],
    [doc({ ...base, condition: { gt: 5, lte: 5 } }), /range is empty/],
    [doc({ ...base, condition: { eq: 5, lt: 5 } }), /range is empty/],
    [doc({ ...base, condition: { field: 'x', gte: 3 } }), /field: not used by event_count/],
    [doc({ ...base, type: 'value_count' }), /field: required for value_count/],
    [doc({ ...base, type: 'value_sum', condition: { field: ['a', 'b'], gt: 1 } }), /aggregates one field/],
    [doc({ ...base, condition: { gte: 3, percentile: 50 } }), /only for value_percentile/],
    [doc({ ...base, type: 'value_percentile', condition: { field: 'b', percentile: 101, gt: 1 } }), /0 to 100/],
    [doc({ ...base, aliases: ['ip'] }), /aliases: must be a mapping/],
    [doc({ ...base, aliases: { ip: { r1: 5 } } }), /aliases.ip.r1: must be a field name/],
    [doc({ ...base, groupby: ['host'] }), /correlation.groupby: unknown key/],
    [doc(base, { level: 'severe' }), /level: must be one of/],
    [doc(base, { tags: 'a' }), /tags: must be a list/],
    [doc(base, { id: '' }), /id: must be a non-empty string/],
    [doc(base, { generate: 'yes' }), /generate: must be true or false/],
  ];
  for (const [d, reason] of cases) {
    const err = compileError(d);
    assert.equal(err.code, 'invalid_correlation');
    assert.equal(err.status, 400);
    assert.match(err.message, /^rules\/bad\.yml: invalid correlation rule: /);
    assert.match(err.message, reason);
    assert.equal(err.details?.file, 'rules/bad.yml');
  }
});

test('all problems of a document are reported together', () => {
  const err = compileError({ title: '', correlation: { type: 'nope', rules: [], timespan: 'x' } });
  const reasons = err.details?.errors as string[];
  assert.ok(reasons.length >= 4, reasons.join('\n'));
});

test('isCorrelationDocument tells correlation documents from detection rules', () => {
  assert.equal(isCorrelationDocument(doc(base)), true);
  assert.equal(isCorrelationDocument({ title: 'x', detection: {} }), false);
  assert.equal(isCorrelationDocument(null), false);
});
