import { describe, expect, test } from 'vitest';
import { addFilterTerm, histogramQuery, isTableQuery, isTimeOrdered, quoteValue, splitPipes } from './query.ts';

describe('query edits', () => {
  test.each([
    ['a | stats count()', 'a', ['stats count()']],
    ['a || b', 'a || b', []],
    ['msg:"x | y" | head 5', 'msg:"x | y"', ['head 5']],
    ['a\\|b', 'a\\|b', []],
  ])('splitPipes(%s)', (q, filter, pipes) => {
    expect(splitPipes(q)).toEqual({ filter, pipes });
  });

  test.each([
    ['*', 'host.name', 'web-1', false, 'host.name:web-1'],
    ['user.name:bob', 'host.name', 'web 1', false, 'user.name:bob host.name:"web 1"'],
    ['a OR b', 'x', 'y', true, '(a OR b) NOT x:y'],
    ['a | stats count() by h', 'x', 'C:\\Win "q"', false, 'a x:"C:\\\\Win \\"q\\"" | stats count() by h'],
    ['(a OR b) c', 'x', 'OR', false, '(a OR b) c x:"OR"'],
  ])('addFilterTerm(%s, %s, %s, %s)', (q, f, v, ex, want) => {
    expect(addFilterTerm(q, f, v, ex)).toBe(want);
  });

  test('values that would be read as syntax are quoted', () => {
    expect(quoteValue('10.1.2.3')).toBe('10.1.2.3');
    expect(quoteValue('-1')).toBe('"-1"');
    expect(quoteValue('a*b')).toBe('"a*b"');
    expect(quoteValue(42)).toBe('42');
  });

  test('the histogram counts the filter and its where pipes only', () => {
    expect(histogramQuery('a | where b:1 | sort -x | head 5', '1m')).toBe('a | where b:1 | timechart span=1m count()');
    expect(histogramQuery('', '5m')).toBe('* | timechart span=5m count()');
  });

  test('kinds of query', () => {
    expect(isTableQuery('a | stats count()')).toBe(true);
    expect(isTableQuery('a | TIMECHART count()')).toBe(true);
    expect(isTableQuery('a || stats')).toBe(false);
    expect(isTimeOrdered('a | where b:1')).toBe(true);
    expect(isTimeOrdered('a | head 3')).toBe(false);
  });
});
