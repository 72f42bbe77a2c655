import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { eventLoopTurnsDuring } from '../../test/harness/event-loop.ts';
import { type JsonElement, type JsonErrorElement, splitJson, splitJsonYielding } from './json-stream.ts';

/** A concatenated, pretty-printed evtx_dump file of the Sigma regression set: three events. */
const REGRESSION_FILE =
  '/work/shared/sigma/regression/rules/windows/process_creation/proc_creation_win_findstr_recon_everyone/47e4bab7-c626-47dc-967b-255608c9a920.json';

/** A compact view of elements: [line, value] for values, [line, 'error', at.line, at.column] for errors. */
function summary(elements: JsonElement[]): unknown[] {
  return elements.map((e) => ('error' in e ? [e.line, 'error', e.at.line, e.at.column] : [e.line, e.value]));
}

describe('NDJSON', () => {
  const cases: { name: string; body: string; expected: unknown[] }[] = [
    {
      name: 'one value a line, line numbers count from 1',
      body: '{"a":1}\n{"a":2}\n{"a":3}\n',
      expected: [
        [1, { a: 1 }],
        [2, { a: 2 }],
        [3, { a: 3 }],
      ],
    },
    {
      name: 'blank and whitespace-only lines are skipped, not errors, and still counted',
      body: '\n{"a":1}\n   \n\t\n{"a":2}\n\n',
      expected: [
        [2, { a: 1 }],
        [5, { a: 2 }],
      ],
    },
    {
      name: 'CRLF line ends',
      body: '{"a":1}\r\n{"a":2}\r\n',
      expected: [
        [1, { a: 1 }],
        [2, { a: 2 }],
      ],
    },
    {
      name: 'a malformed line is reported with its column and the next lines are read',
      body: '{"a":1}\n{"b":}\n{"c":3}\n',
      expected: [
        [1, { a: 1 }],
        [2, 'error', 2, 6],
        [3, { c: 3 }],
      ],
    },
    {
      name: 'a truncated line does not swallow the following lines',
      body: '{"a":1\n{"b":2}\n',
      expected: [
        [1, 'error', 1, 7],
        [2, { b: 2 }],
      ],
    },
    {
      name: 'an unterminated string ends at its line',
      body: '{"a":"oops}\n{"b":2}\n',
      expected: [
        [1, 'error', 1, 6],
        [2, { b: 2 }],
      ],
    },
    {
      name: 'a garbage line that does not start with { is one error',
      body: '{"a":1}\nhello world\n{"b":2}\n',
      expected: [
        [1, { a: 1 }],
        [2, 'error', 2, 1],
        [3, { b: 2 }],
      ],
    },
    {
      name: 'scalars are values too (the normalizer refuses them, not the splitter)',
      body: '42\n"s"\n',
      expected: [
        [1, 42],
        [2, 's'],
      ],
    },
    { name: 'a byte order mark before the first value is ignored', body: '\uFEFF{"a":1}\n', expected: [[1, { a: 1 }]] },
    { name: 'an empty body has no elements', body: '', expected: [] },
    { name: 'a whitespace-only body has no elements', body: ' \n\r\n\t', expected: [] },
  ];
  for (const c of cases) test(c.name, () => assert.deepEqual(summary(splitJson(c.body)), c.expected));

  test('raw is the line as sent, without its line end', () => {
    const [e] = splitJson('{ "a" : 1 }\r\n');
    assert.equal(e.raw, '{ "a" : 1 }');
  });

  test('an error names the reason and position and does not quote the whole input', () => {
    const long = `{"a":${'1'.repeat(10000)},}`;
    const [e] = splitJson(long) as JsonErrorElement[];
    assert.match(e.error, /^unexpected "}": expected a property name in double quotes at line 1, column 10007$/);
    assert.equal(e.reason, 'unexpected "}": expected a property name in double quotes');
  });
});

describe('a JSON array', () => {
  const cases: { name: string; body: string; expected: unknown[] }[] = [
    {
      name: 'each element is an event, numbered index + 1',
      body: '[{"a":1},\n{"a":2},{"a":3}]',
      expected: [
        [1, { a: 1 }],
        [2, { a: 2 }],
        [3, { a: 3 }],
      ],
    },
    { name: 'an empty array has no elements', body: ' [ ] ', expected: [] },
    {
      name: 'a malformed element is reported at its body position; its neighbours are kept',
      body: '[{"a":1},\n {"b":},\n {"c":[1,2]}]',
      expected: [
        [1, { a: 1 }],
        [2, 'error', 2, 7],
        [3, { c: [1, 2] }],
      ],
    },
    {
      name: 'a truncated array keeps the complete elements and reports the truncation',
      body: '[{"a":1},{"b":2}',
      expected: [
        [1, { a: 1 }],
        [2, { b: 2 }],
        [3, 'error', 1, 17],
      ],
    },
    {
      name: 'commas and brackets inside strings do not split elements',
      body: '[{"a":"x,]}"},{"b":"\\"],"} , {"c":}]',
      expected: [
        [1, { a: 'x,]}' }],
        [2, { b: '"],' }],
        [3, 'error', 1, 35],
      ],
    },
    {
      name: 'arrays on separate lines are NDJSON, not one array',
      body: '[1,2]\n[3]\n',
      expected: [
        [1, [1, 2]],
        [2, [3]],
      ],
    },
  ];
  for (const c of cases) test(c.name, () => assert.deepEqual(summary(splitJson(c.body)), c.expected));

  test('the raw text of an element is its JSON', () => {
    const els = splitJson('[ {"a": 1,  "b": [true]} ]');
    assert.equal(els[0].raw, '{"a":1,"b":[true]}');
  });
});

describe('concatenated JSON objects', () => {
  test('a real evtx_dump file: each pretty-printed object is one element, numbered by its first line', () => {
    const body = readFileSync(REGRESSION_FILE, 'utf8');
    const lines = body.split('\n');
    const starts = lines.flatMap((l, i) => (l.startsWith('{') ? [i + 1] : []));
    const els = splitJson(body);
    assert.equal(starts.length, 3);
    assert.deepEqual(
      els.map((e) => e.line),
      starts,
    );
    for (const e of els) {
      assert.ok(!('error' in e));
      assert.equal(typeof (e.value as { Event: { System: object } }).Event.System, 'object');
      assert.deepEqual(JSON.parse(e.raw), e.value);
    }
  });

  const cases: { name: string; body: string; expected: unknown[] }[] = [
    {
      name: 'a malformed object: the error is located and reading resumes at the next line starting with {',
      body: '{\n  "a": 1\n}\n{\n  "b": ,\n  "c": 2\n}\n{\n  "d": 4\n}\n',
      expected: [
        [1, { a: 1 }],
        [4, 'error', 5, 8],
        [8, { d: 4 }],
      ],
    },
    {
      name: 'an object left open does not consume the next one',
      body: '{\n  "a": {\n    "b": 1\n}\n{\n  "c": 3\n}\n',
      expected: [
        [1, 'error', 4, 2],
        [5, { c: 3 }],
      ],
    },
    {
      name: 'compact objects on one line, with or without spaces between them',
      body: '{"a":1}{"b":2} {"c":3}\n',
      expected: [
        [1, { a: 1 }],
        [1, { b: 2 }],
        [1, { c: 3 }],
      ],
    },
    {
      name: 'an unindented nested object that starts a line still belongs to its parent',
      body: '{\n"a":\n{\n"b": 1\n}\n}\n{"c":2}\n',
      expected: [
        [1, { a: { b: 1 } }],
        [7, { c: 2 }],
      ],
    },
    {
      name: 'pretty objects closed with "}{" on one line',
      body: '{\n  "a": 1\n}{\n  "b": 2\n}\n',
      expected: [
        [1, { a: 1 }],
        [3, { b: 2 }],
      ],
    },
  ];
  for (const c of cases) test(c.name, () => assert.deepEqual(summary(splitJson(c.body)), c.expected));
});

test('malformed input is split in linear time (no rescanning to the end for every line)', () => {
  const body = '{\n'.repeat(50000) + '{"ok":true}\n';
  const started = performance.now();
  const els = splitJson(body);
  const ms = performance.now() - started;
  assert.equal(els.length, 50001);
  assert.deepEqual(els.at(-1)?.line, 50001);
  assert.ok(ms < 3000, `took ${ms} ms`);
});

test('an absurdly deep array element is split by its text (JSON.stringify would overflow the stack)', () => {
  const deep = `${'['.repeat(100000)}${']'.repeat(100000)}`;
  const els = splitJson(`[{"a":1},${deep}]`);
  assert.equal(els.length, 2);
  assert.equal(els[1].raw, deep);
});

test('split with turns: the same elements as in one go, the event loop turning between budgets, none when told never', async () => {
  const body = `${Array.from({ length: 1000 }, (_, i) => `{"n":${i}}`).join('\n')}\nnot json\n{"n":1000}\n`;
  const whole = splitJson(body);
  // A budget of 0 turns at every look at the clock (every 32 elements).
  const { result: sliced, turns } = await eventLoopTurnsDuring(() => splitJsonYielding(body, Infinity, 0));
  assert.deepEqual(summary(sliced), summary(whole));
  assert.ok(turns >= 30, `the event loop turned ${turns} times`);
  const limited = await splitJsonYielding(body, 101, 0);
  assert.deepEqual(summary(limited), summary(whole.slice(0, 101)));
  const never = await eventLoopTurnsDuring(() => splitJsonYielding(body, Infinity, Infinity));
  assert.deepEqual(summary(never.result), summary(whole));
  assert.equal(never.turns, 0);
});
