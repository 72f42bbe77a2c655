import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { learnShape, MAX_SHAPE_KEYS, shapeKeysHeld } from './field-shapes.ts';
import { createNormalizer } from './index.ts';

// V8's own test of an object's mode; the flag only lets the function below be compiled.
setFlagsFromString('--allow-natives-syntax');
const hasFastProperties = new Function('o', 'return %HasFastProperties(o)') as (o: object) => boolean;

/** A Windows event with `n` fields in EventData, all named `${prefix}${i}`. */
function event(n: number, prefix: string, value: string): Record<string, unknown> {
  const data: Record<string, string> = {};
  for (let i = 0; i < n; i++) data[`${prefix}${i}`] = `${value}-${i}`;
  return { EventID: 4688, Channel: 'Security', Hostname: 'h', EventTime: '2021-01-01 10:00:00', ...data };
}

const ctx = { source: 'http', receivedAt: 1_700_000_000_000, tenant: 'default' };

test('after the first event of a shape, events with the same keys get fast fields, with the same keys and values', () => {
  const normalizer = createNormalizer();
  const first = normalizer.fromJson(event(60, 'Field', 'a'), '{}', ctx);
  // V8 made this one a hash table: past about 16 keys added one by one, without hidden classes to follow.
  assert.equal(hasFastProperties(first.fields), false);
  const second = normalizer.fromJson(event(60, 'Field', 'b'), '{}', ctx);
  assert.equal(hasFastProperties(second.fields), true);
  assert.deepEqual(Object.keys(second.fields), Object.keys(first.fields));
  assert.equal(second.fields.Field7, 'b-7');
  assert.equal(first.fields.Field7, 'a-7', 'the learned shape keeps no value of the event it came from');
  // Another shape: learned at its first event too.
  normalizer.fromJson(event(40, 'Other', 'c'), '{}', ctx);
  assert.equal(hasFastProperties(normalizer.fromJson(event(40, 'Other', 'd'), '{}', ctx).fields), true);
});

test('a key named __proto__ stays an own field, whether or not its shape is learned', () => {
  const normalizer = createNormalizer();
  const body = '{"a":1,"__proto__":"x","b":2}';
  for (let i = 0; i < 3; i++) {
    const e = normalizer.fromJson(JSON.parse(body), body, ctx);
    assert.deepEqual(Object.keys(e.fields).slice(0, 3), ['a', '__proto__', 'b']);
    assert.equal(Object.getOwnPropertyDescriptor(e.fields, '__proto__')?.value, 'x');
    assert.equal(Object.getPrototypeOf(e.fields), Object.prototype);
  }
  const shaped: Record<string, unknown> = JSON.parse('{"x":1,"__proto__":2}');
  learnShape(shaped);
  learnShape(shaped);
  assert.deepEqual(Object.entries(shaped), [
    ['x', 1],
    ['__proto__', 2],
  ]);
  assert.equal(Object.getPrototypeOf(shaped), Object.prototype);
});

test('the shapes kept are bounded: past MAX_SHAPE_KEYS keys, new shapes are not learned', () => {
  const start = shapeKeysHeld();
  // Shapes of 100 keys never seen before, enough to pass the bound.
  const shapes = Math.ceil((MAX_SHAPE_KEYS - start) / 100) + 20;
  for (let s = 0; s < shapes; s++) {
    const fields: Record<string, unknown> = {};
    for (let i = 0; i < 100; i++) fields[`bound${s}_${i}`] = i;
    learnShape(fields);
    assert.ok(shapeKeysHeld() <= MAX_SHAPE_KEYS);
  }
  assert.equal(shapeKeysHeld(), MAX_SHAPE_KEYS);
  // A new shape past the bound is still normalized, its fields a hash table as before.
  const normalizer = createNormalizer();
  normalizer.fromJson(event(30, 'Late', 'x'), '{}', ctx);
  const late = normalizer.fromJson(event(30, 'Late', 'y'), '{}', ctx);
  assert.equal(late.fields.Late3, 'y-3');
  assert.equal(hasFastProperties(late.fields), false);
});
