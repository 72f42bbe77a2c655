import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InputError } from '../lib/errors.ts';
import type { FilterNode } from './ast.ts';
import { MAX_QUERY_LENGTH, MAX_TERMS, parseQuery, QuerySyntaxError } from './index.ts';

/** A filter as a compact S-expression, so each case fits on one line. */
function show(node: FilterNode | null): string {
  if (node === null) return '';
  switch (node.type) {
    case 'and':
    case 'or':
      return `(${node.type} ${node.children.map(show).join(' ')})`;
    case 'not':
      return `(not ${show(node.child)})`;
    case 'all':
      return '*';
    case 'text':
      return node.value.parts ? `text~${node.value.text}` : `text=${JSON.stringify(node.value.text)}`;
    case 'match':
      return node.value.parts ? `${node.field}~${node.value.text}` : `${node.field}=${JSON.stringify(node.value.text)}`;
    case 'exists':
      return `${node.field}:*`;
    case 'cidr':
      return `${node.field} in ${node.cidr}`;
    case 'range': {
      const lo = node.lower ? `${node.lower.inclusive ? '[' : '{'}${node.lower.value}` : '(*';
      const hi = node.upper ? `${node.upper.value}${node.upper.inclusive ? ']' : '}'}` : '*)';
      return `${node.field}${lo}..${hi}`;
    }
  }
}

describe('filter constructs parse to the expected tree', () => {
  const cases: [string, string, string][] = [
    ['field:value', 'user.name:bob', 'user.name="bob"'],
    ['KQL space after the colon', 'user.name: bob', 'user.name="bob"'],
    ['Splunk field=value', 'EventID=4625', 'EventID="4625"'],
    ['field!=value is a negation', 'EventID!=4625', '(not EventID="4625")'],
    ['quoted phrase value', 'message:"failed login"', 'message="failed login"'],
    ['wildcards in a value', 'user.name:ad*m?n', 'user.name~ad*m?n'],
    ['wildcards inside quotes are literal', 'user.name:"ad*"', 'user.name="ad*"'],
    ['a value may hold colons', 'url:http://x/y', 'url="http://x/y"'],
    ['field:* is exists', 'user.name:*', 'user.name:*'],
    ['bare word', 'failed', 'text="failed"'],
    ['bare phrase', '"failed login"', 'text="failed login"'],
    ['bare wildcard word', 'fail*', 'text~fail*'],
    ['a word with a colon but no field start is a bare word', '12:30', 'text="12:30"'],
    ['lone * matches all', '*', '*'],
    ['*:* matches all', '*:*', '*'],
    ['implicit AND', 'a b c', '(and text="a" text="b" text="c")'],
    ['explicit AND, OR, NOT', 'a AND b OR NOT c', '(or (and text="a" text="b") (not text="c"))'],
    ['NOT binds tighter than AND, AND tighter than OR', 'a OR b c', '(or text="a" (and text="b" text="c"))'],
    ['&&, ||, !', 'a && b || !c', '(or (and text="a" text="b") (not text="c"))'],
    ['-term', 'a -b', '(and text="a" (not text="b"))'],
    ['lowercase and/or are words', 'a or b', '(and text="a" text="or" text="b")'],
    ['parentheses', '(a OR b) c', '(and (or text="a" text="b") text="c")'],
    ['NOT before a group', 'NOT (a OR b)', '(not (or text="a" text="b"))'],
    ['field group', 'user.name:(bob OR "al ice")', '(or user.name="bob" user.name="al ice")'],
    ['inclusive range', 'bytes:[1 TO 5]', 'bytes[1..5]'],
    ['exclusive range', 'bytes:{1 TO 5}', 'bytes{1..5}'],
    ['mixed range, lowercase to', 'bytes:[1 to 5}', 'bytes[1..5}'],
    ['open range', 'bytes:[10 TO *]', 'bytes[10..*)'],
    ['fully open range is exists', 'bytes:[* TO *]', 'bytes:*'],
    ['range of times', '@timestamp:[now-1h TO now]', '@timestamp[now-1h..now]'],
    ['range with quoted bounds', 'name:["a b" TO "c d"]', 'name[a b..c d]'],
    ['field>=x', 'bytes>=10', 'bytes[10..*)'],
    ['field>x', 'bytes>10', 'bytes{10..*)'],
    ['field<x', 'bytes<10', 'bytes(*..10}'],
    ['field<=x', 'bytes<=10', 'bytes(*..10]'],
    ['KQL spaced comparison', 'bytes >= 10', 'bytes[10..*)'],
    ['ES field:>x', 'bytes:>10', 'bytes{10..*)'],
    ['comparison with an ISO time', '@timestamp>=2024-01-02T03:04:05Z', '@timestamp[2024-01-02T03:04:05Z..*)'],
    ['IPv4 CIDR', 'source.ip:10.0.0.0/8', 'source.ip in 10.0.0.0/8'],
    ['IPv6 CIDR quoted', 'source.ip:"2001:db8::/32"', 'source.ip in 2001:db8::/32'],
    ['IPv6 CIDR unquoted', 'source.ip:2001:db8::/32', 'source.ip in 2001:db8::/32'],
    ['a plain IP is a value', 'source.ip:10.1.2.3', 'source.ip="10.1.2.3"'],
    ['escapes in a bare value', 'path:C\\:\\\\Windows\\\\*', 'path~C:\\Windows\\*'],
    ['an escaped wildcard is literal', 'name:a\\*b', 'name="a*b"'],
    ['escaped quote and backslash inside quotes', 'm:"say \\"hi\\" \\\\o/"', 'm="say \\"hi\\" \\\\o/"'],
    ['other backslashes inside quotes stay', 'p:"C:\\Windows"', 'p="C:\\\\Windows"'],
    ['field names with @ # - _', '@odd#key-1_x:v', '@odd#key-1_x="v"'],
    ['an empty query has no filter', '   ', ''],
  ];
  for (const [name, query, expected] of cases) {
    test(`${name}: ${query}`, () => {
      assert.equal(show(parseQuery(query).filter), expected);
    });
  }

  test('wildcard values keep their parts', () => {
    const ast = parseQuery('f:a\\*b*c?');
    assert.deepEqual(ast.filter, {
      type: 'match',
      field: 'f',
      value: {
        text: 'a*b*c?',
        quoted: false,
        parts: [{ text: 'a*b' }, { wildcard: '*' }, { text: 'c' }, { wildcard: '?' }],
      },
      position: 1,
    });
  });

  test('nodes carry their 1-based position', () => {
    const ast = parseQuery('a  user.name:bob');
    assert.equal(ast.filter?.type, 'and');
    if (ast.filter?.type === 'and')
      assert.deepEqual(
        ast.filter.children.map((c) => c.position),
        [1, 4],
      );
  });
});

describe('pipes parse to the expected steps', () => {
  test('stats with aggregations, aliases and by', () => {
    const { filter, pipes } = parseQuery(
      'error | stats count(), dc(user.name) AS users, sum(bytes) by host.name, user.name',
    );
    assert.equal(show(filter), 'text="error"');
    assert.equal(pipes.length, 1);
    const stats = pipes[0];
    assert.equal(stats.type, 'stats');
    if (stats.type !== 'stats') return;
    assert.deepEqual(
      stats.aggregates.map((a) => [a.fn, a.field, a.name]),
      [
        ['count', undefined, 'count'],
        ['dc', 'user.name', 'users'],
        ['sum', 'bytes', 'sum(bytes)'],
      ],
    );
    assert.deepEqual(stats.by, ['host.name', 'user.name']);
  });

  const aggregateCases: [string, string, [string, string | undefined, string][]][] = [
    ['count without parentheses', '| stats count', [['count', undefined, 'count']]],
    ['count(*)', '| stats count(*)', [['count', undefined, 'count']]],
    ['count(field)', '| stats count(bytes)', [['count', 'bytes', 'count(bytes)']]],
    ['distinct_count is dc, named as written', '| stats distinct_count(u)', [['dc', 'u', 'distinct_count(u)']]],
    [
      'aggregations separated by spaces (Splunk)',
      '| stats count dc(u) values(h)',
      [
        ['count', undefined, 'count'],
        ['dc', 'u', 'dc(u)'],
        ['values', 'h', 'values(h)'],
      ],
    ],
    [
      'every function',
      '| STATS avg(b), min(b) as lo, max(b)',
      [
        ['avg', 'b', 'avg(b)'],
        ['min', 'b', 'lo'],
        ['max', 'b', 'max(b)'],
      ],
    ],
  ];
  for (const [name, query, expected] of aggregateCases) {
    test(`stats: ${name}`, () => {
      const pipe = parseQuery(query).pipes[0];
      assert.ok(pipe.type === 'stats');
      assert.deepEqual(
        pipe.aggregates.map((a) => [a.fn, a.field, a.name]),
        expected,
      );
    });
  }

  test('timechart with span, aggregation and by', () => {
    const pipe = parseQuery('* | timechart span=15m count by host.name').pipes[0];
    assert.ok(pipe.type === 'timechart');
    assert.deepEqual(pipe.span, { count: 15, unit: 'm', seconds: 900 });
    assert.deepEqual(pipe.by, ['host.name']);
    assert.equal(parseQuery('| timechart span = 2h avg(bytes)').pipes[0].type, 'timechart');
    const noSpan = parseQuery('| timechart count').pipes[0];
    assert.ok(noSpan.type === 'timechart' && noSpan.span === undefined);
  });

  test('sort keys with - + asc desc', () => {
    const pipe = parseQuery('| sort -count, +host.name, user.name desc, b asc c').pipes[0];
    assert.ok(pipe.type === 'sort');
    assert.deepEqual(
      pipe.keys.map((k) => [k.field, k.descending]),
      [
        ['count', true],
        ['host.name', false],
        ['user.name', true],
        ['b', false],
        ['c', false],
      ],
    );
    const byColumn = parseQuery('| sort -dc(user.name)').pipes[0];
    assert.ok(byColumn.type === 'sort' && byColumn.keys[0].field === 'dc(user.name)');
  });

  test('head, limit, fields and where', () => {
    const { pipes } = parseQuery('a | head 5 | limit 7 | head | fields user.name, host.name b | where x:1 OR y');
    assert.deepEqual(
      pipes.map((p) => p.type),
      ['head', 'head', 'head', 'fields', 'where'],
    );
    assert.deepEqual(
      pipes.slice(0, 3).map((p) => p.type === 'head' && p.count),
      [5, 7, 10],
    );
    assert.ok(pipes[3].type === 'fields');
    assert.deepEqual(pipes[3].fields, ['user.name', 'host.name', 'b']);
    assert.ok(pipes[4].type === 'where');
    assert.equal(show(pipes[4].filter), '(or x="1" y)'.replace('y', 'text="y"'));
  });

  test('|| in a filter is OR, not a pipe', () => {
    const { filter, pipes } = parseQuery('a || b | head 1');
    assert.equal(show(filter), '(or text="a" text="b")');
    assert.equal(pipes.length, 1);
  });
});

describe('syntax errors name the position and a hint', () => {
  const cases: [string, string, number, string][] = [
    ['a field without a value', 'user.name:', 11, "expected a value after ':'"],
    ['a field without a value before a pipe', 'user.name: | stats count', 12, "expected a value after ':'"],
    ['a comparison without a value', 'bytes>=', 8, "expected a value after '>='"],
    ['field= without a value', 'a= b', 3, "expected a value after '='"],
    ['missing closing parenthesis', 'a (b OR c', 3, "unbalanced parenthesis: missing ')'"],
    ['extra closing parenthesis', 'a b) c', 4, "unbalanced parenthesis: unexpected ')'"],
    ['empty parentheses', 'a ()', 4, 'empty parentheses'],
    ['unterminated quote', 'a "bc', 3, 'unterminated quoted string'],
    ['dangling escape', 'a\\', 2, "nothing to escape after '\\'"],
    ['dangling AND', 'a AND', 6, "expected a term after 'AND'"],
    ['dangling OR', 'a OR ', 6, "expected a term after 'OR'"],
    ['dangling NOT', 'NOT ', 5, "expected a term after 'NOT'"],
    ['AND OR', 'a AND OR b', 7, "expected a term after 'AND'"],
    ['range without TO', 'b:[1 5]', 6, "expected 'TO' in range"],
    ['unclosed range', 'b:[1 TO 5', 10, "expected ']' or '}' to close the range"],
    ['invalid IPv4 CIDR', 'ip:10.0.0.0/33', 1, "invalid CIDR '10.0.0.0/33'"],
    ['invalid IPv6 CIDR', 'ip:"2001:db8::/129"', 1, "invalid CIDR '2001:db8::/129'"],
    ['not an address', 'ip:999.0.0.0/8', 1, "invalid CIDR '999.0.0.0/8'"],
    [
      'unknown pipe',
      'a | foo x',
      5,
      "unknown pipe 'foo', expected one of stats, timechart, where, sort, head, limit, fields",
    ],
    ['empty pipe', 'a |', 4, "expected a pipe command after '|'"],
    ['unknown aggregation', '| stats median(x)', 9, "unknown aggregation 'median'"],
    ['aggregation without field', '| stats sum()', 9, 'sum() needs a field'],
    ['aggregation without parentheses', '| stats avg', 9, 'avg() needs a field'],
    ['unclosed aggregation', '| stats dc(x', 13, "expected ')' to close the aggregation"],
    ['as without a name', '| stats count as', 17, "expected a name after 'as'"],
    ['duplicate column', '| stats count, count', 16, "duplicate column name 'count'"],
    ['by without a field', '| stats count by', 17, "expected a field name after 'by'"],
    ['trailing junk after a pipe', '| stats count by h; drop', 19, "unexpected '; drop'"],
    ['bad span', '| timechart span=5x count', 18, 'invalid span'],
    ['zero span', '| timechart span=0m count', 18, 'invalid span'],
    ['head without a number', '| head x', 8, "expected a number after 'head'"],
    ['head 0', '| limit 0', 9, "'limit' needs a positive number"],
    ['sort without a field', '| sort -', 9, 'expected a field to sort by'],
    ['where without a filter', '| where', 8, "expected a filter after 'where'"],
    ['a backtick is not a field name', '| fields `a`', 10, "expected a field name after 'fields'"],
  ];
  for (const [name, query, position, hint] of cases) {
    test(`${name}: ${query}`, () => {
      assert.throws(
        () => parseQuery(query),
        (e: unknown) => {
          assert.ok(e instanceof QuerySyntaxError);
          assert.ok(e.hint.startsWith(hint), `hint was: ${e.hint}`);
          assert.equal(e.position, position, `position for hint ${e.hint}`);
          assert.deepEqual(e.details, { position, hint: e.hint });
          assert.equal(e.message, `Query syntax error at column ${position}: ${e.hint}`);
          return true;
        },
      );
    });
  }

  test('QuerySyntaxError is a 400 InputError with code query_syntax', () => {
    const e = new QuerySyntaxError('x', 3);
    assert.ok(e instanceof InputError);
    assert.equal(e.status, 400);
    assert.equal(e.code, 'query_syntax');
    assert.equal(e.name, 'QuerySyntaxError');
  });
});

describe('limits', () => {
  test(`a query longer than ${MAX_QUERY_LENGTH} characters is refused`, () => {
    assert.doesNotThrow(() => parseQuery('a'.repeat(MAX_QUERY_LENGTH)));
    assert.throws(
      () => parseQuery('a'.repeat(MAX_QUERY_LENGTH + 1)),
      (e: unknown) => e instanceof QuerySyntaxError && e.position === MAX_QUERY_LENGTH + 1,
    );
  });

  test(`more than ${MAX_TERMS} terms are refused at the first extra term`, () => {
    assert.doesNotThrow(() => parseQuery(Array(MAX_TERMS).fill('a').join(' ')));
    assert.throws(
      () =>
        parseQuery(
          Array(MAX_TERMS + 1)
            .fill('a')
            .join(' '),
        ),
      (e: unknown) =>
        e instanceof QuerySyntaxError && e.position === MAX_TERMS * 2 + 1 && /too many terms/.test(e.hint),
    );
  });

  test('deep nesting is refused instead of overflowing the stack', () => {
    assert.throws(
      () => parseQuery(`${'('.repeat(1000)}a${')'.repeat(1000)}`),
      (e: unknown) => e instanceof QuerySyntaxError && /nested too deeply/.test(e.hint),
    );
    assert.throws(
      () => parseQuery(`${'NOT '.repeat(1000)}a`),
      (e: unknown) => e instanceof QuerySyntaxError && /nested too deeply/.test(e.hint),
    );
  });
});
