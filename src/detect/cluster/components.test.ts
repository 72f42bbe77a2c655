import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CompiledCorrelation } from '../correlation/index.ts';
import { correlationComponents } from './components.ts';

const corr = (id: string, rules: string[], name?: string) =>
  ({ id, name, rules, title: id, groupBy: [], timespanMs: 60000 }) as unknown as CompiledCorrelation;

test('a chain of correlations is one component; rules feed the components that reference them', () => {
  const c = correlationComponents([
    corr('z-outer', ['inner', 'rule-c']),
    corr('a-inner', ['rule-a', 'rule-b'], 'inner'),
    corr('m-alone', ['rule-a']),
  ]);
  assert.deepEqual(c.fedBy(['rule-a']).sort(), ['a-inner', 'm-alone']);
  assert.deepEqual(c.fedBy(['rule-b']), ['a-inner']);
  assert.deepEqual(c.fedBy(['rule-c']), ['a-inner'], 'the outer correlation lives in its chain component');
  assert.deepEqual(c.fedBy(['x', 'rule-c-name']), []);
  assert.deepEqual(
    c
      .correlations('a-inner')
      .map((x) => x.id)
      .sort(),
    ['a-inner', 'z-outer'],
  );
  assert.deepEqual(c.fedBy(['inner']), [], 'a correlation reference is internal to its component');
});
