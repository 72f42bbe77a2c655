import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { learnShape, MAX_SHAPE_FIELDS, MAX_SHAPE_KEY_CHARS, MAX_SHAPE_KEYS, shapeKeysHeld } from './field-shapes.ts';
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

test('a shape with a key longer than MAX_SHAPE_KEY_CHARS or more than MAX_SHAPE_FIELDS keys is not learned', () => {
  const start = shapeKeysHeld();
  const long: Record<string, unknown> = { a: 1, [`k${'x'.repeat(MAX_SHAPE_KEY_CHARS)}`]: 2 };
  learnShape(long);
  const wide: Record<string, unknown> = {};
  for (let i = 0; i <= MAX_SHAPE_FIELDS; i++) wide[`wide${i}`] = i;
  learnShape(wide);
  assert.equal(shapeKeysHeld(), start, 'nothing kept for either');
  // Normalized all the same.
  const normalizer = createNormalizer();
  const body = JSON.stringify(long);
  assert.deepEqual(normalizer.fromJson(JSON.parse(body), body, ctx).fields[`k${'x'.repeat(MAX_SHAPE_KEY_CHARS)}`], 2);
  // A shape at both limits is learned, and counted once per trie key and once per key of its object.
  const edge: Record<string, unknown> = {};
  for (let i = 0; i < MAX_SHAPE_FIELDS; i++)
    edge[`${'e'.repeat(MAX_SHAPE_KEY_CHARS - 3)}${String(i).padStart(3, '0')}`] = i;
  learnShape(edge);
  assert.equal(shapeKeysHeld(), start + 2 * MAX_SHAPE_FIELDS);
  learnShape({ ...edge });
  assert.equal(shapeKeysHeld(), start + 2 * MAX_SHAPE_FIELDS, 'a shape seen again costs nothing more');
});

test('the shapes kept are bounded: past MAX_SHAPE_KEYS, new shapes are not learned', () => {
  const start = shapeKeysHeld();
  // Shapes of 100 keys never seen before (200 each: trie keys and the shape's object), enough to pass the bound.
  const shapes = Math.ceil((MAX_SHAPE_KEYS - start) / 200) + 20;
  for (let s = 0; s < shapes; s++) {
    const fields: Record<string, unknown> = {};
    for (let i = 0; i < 100; i++) fields[`bound${s}_${i}`] = i;
    learnShape(fields);
    assert.ok(shapeKeysHeld() <= MAX_SHAPE_KEYS);
  }
  assert.ok(shapeKeysHeld() > MAX_SHAPE_KEYS - 200, `${shapeKeysHeld()} held`);
  // Shapes sharing all keys but one cost a trie key and the shape's keys each: bounded the same way.
  const held = shapeKeysHeld();
  for (let s = 0; s < 50; s++) {
    const fields: Record<string, unknown> = {};
    for (let i = 0; i < 99; i++) fields[`bound0_${i}`] = i;
    fields[`tail${s}`] = s;
    learnShape(fields);
  }
  assert.equal(shapeKeysHeld(), held, 'none learned past the bound');
  // A new shape past the bound is still normalized, its fields a hash table as before.
  const normalizer = createNormalizer();
  normalizer.fromJson(event(30, 'Late', 'x'), '{}', ctx);
  const late = normalizer.fromJson(event(30, 'Late', 'y'), '{}', ctx);
  assert.equal(late.fields.Late3, 'y-3');
  assert.equal(hasFastProperties(late.fields), false);
});
