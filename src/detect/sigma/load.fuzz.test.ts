/**
 * Fuzzing the Sigma loader and engine (issue 16): a rule is user input (the rules API, hunts). Whatever YAML a
 * client sends (random text, random rules, alias-heavy and deeply nested documents, random regular
 * expressions), loading with the request limits gives rules or rejections with a reason, within a bounded
 * time, never a thrown TypeError; compiling the loaded rules and matching events throws nothing either, and a
 * match costs a bounded time per event. Cases: VIGIL_FUZZ_RUNS (test/harness/fuzz.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { fuzzParams } from '../../../test/harness/fuzz.ts';
import type { FieldValue, NormalizedEvent } from '../../lib/event.ts';
import { VigilError } from '../../lib/errors.ts';
import { compileCorrelation } from '../correlation/compile.ts';
import { KNOWN_MODIFIERS } from './detection.ts';
import { createSigmaEngine } from './engine.ts';
import { loadSigmaText, REQUEST_LIMITS } from './load.ts';
import type { SigmaLoadResult } from './types.ts';

/** A 64 KiB request of the worst nesting loads in about 0.3 s; CI's cores are shared with other tests. */
const MAX_LOAD_MS = 2_000;
/** One event against one rule: RE2 and the needle scans are linear in the event's size (at most 10 KB here). */
const MAX_MATCH_MS = 250;

function timed<T>(what: string, limitMs: number, fn: () => T): T {
  const t0 = performance.now();
  const out = fn();
  const ms = performance.now() - t0;
  if (ms > limitMs) throw new Error(`${what} took ${ms.toFixed(0)} ms (bound ${limitMs} ms)`);
  return out;
}

/** Only a VigilError with a 4xx status may escape: anything else answers 500. */
function expectClientError(what: string, err: unknown): void {
  if (err instanceof VigilError && err.status >= 400 && err.status < 500) return;
  throw new Error(`${what} threw ${(err as Error)?.name}: ${(err as Error)?.message}`, { cause: err });
}

const EVENT_TEXT = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.constantFrom('powershell.exe -enc', 'C:\\Windows\\System32\\cmd.exe', '10.1.2.3', '4625', ''),
  fc
    .tuple(
      fc.constantFrom('a', 'ab', 'x', '\u00e9'),
      fc.integer({ min: 1, max: 10_000 }),
      fc.constantFrom('', '!', '\n'),
    )
    .map(([s, n, end]) => s.repeat(n) + end),
);
const FIELD_NAMES = ['CommandLine', 'Image', 'EventID', 'Channel', 'User', 'TargetFilename', 'src_ip', 'message'];
const eventArb = fc
  .tuple(
    fc.dictionary(
      fc.constantFrom(...FIELD_NAMES, 'constructor', '__proto__', 'x.y'),
      fc.oneof(EVENT_TEXT, fc.integer()),
      {
        maxKeys: 6,
      },
    ),
    fc.constantFrom('json', 'windows', 'evtx', 'ecs', 'syslog'),
    fc.option(
      fc.record({
        product: fc.constantFrom('windows', 'linux', 'test'),
        service: fc.constantFrom('system', 'security', 'sysmon'),
      }),
    ),
  )
  .map(
    ([fields, layout, logsource]): NormalizedEvent => ({
      id: 'e',
      timestamp: 0,
      ingested: 0,
      tenant: 't',
      source: 'http',
      layout: layout as NormalizedEvent['layout'],
      logsource: logsource ?? undefined,
      raw: JSON.stringify(fields),
      fields: fields as Record<string, FieldValue>,
    }),
  );

/** Loads, compiles and matches; checks the loader's contract and the time bounds. */
function exercise(text: string, events: NormalizedEvent[] = []): SigmaLoadResult {
  const loaded = timed(`loading ${JSON.stringify(text.slice(0, 200))}`, MAX_LOAD_MS, () =>
    loadSigmaText(text, 'request', { limits: REQUEST_LIMITS }),
  );
  for (const r of loaded.rejected) {
    assert.equal(typeof r.reason, 'string');
    assert.ok(r.reason.length > 0, 'a rejection says why');
    assert.ok(!/\bat .+:\d+:\d+\)?$/m.test(r.reason), `a rejection shows a stack: ${r.reason}`);
  }
  for (const c of loaded.correlations) {
    try {
      compileCorrelation(c.doc, c.file);
    } catch (err) {
      expectClientError('compileCorrelation', err);
    }
  }
  const engine = timed('createSigmaEngine', MAX_LOAD_MS, () =>
    createSigmaEngine({ rules: loaded.rules, filters: loaded.filters, placeholders: {} }),
  );
  for (const event of events) {
    timed(
      `matching ${JSON.stringify(event.fields).slice(0, 200)}`,
      MAX_MATCH_MS * Math.max(1, loaded.rules.length),
      () => engine.match(event),
    );
  }
  return loaded;
}

const YAML_PIECES = [
  '---\n',
  '...\n',
  '&a ',
  '*a',
  '<<: *a\n',
  '? ',
  ': ',
  '- ',
  '  ',
  '\n',
  '[',
  ']',
  '{',
  '}',
  ',',
  '"',
  "'",
  '#',
  '|\n',
  '>-\n',
  '!!binary ',
  '!!js/function ',
  '!!map ',
  '!!set ',
  '!!timestamp ',
  '!!float ',
  '%YAML 1.1\n',
  '%TAG ! tag:x,2000:\n',
  'title: t\n',
  'detection:\n',
  'condition: ',
  'selection:\n',
  'logsource:\n',
  'action: global\n',
  'action: repeat\n',
  'correlation:\n',
  'filter:\n',
  '|re: ',
  '|contains|all: ',
  '1 of ',
  ' and not ',
  'them',
  '\u0000',
  '\ufeff',
  '~',
  'null',
  '0x1f',
  '1e400',
];
const yamlishArb = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 200 }),
  fc
    .array(fc.oneof(fc.constantFrom(...YAML_PIECES), fc.string({ maxLength: 8 })), { maxLength: 60 })
    .map((p) => p.join('')),
);

/** A random regular expression, weighted to PCRE constructs RE2 refuses and to catastrophic backtracking. */
const REGEX_PIECES = [
  'a',
  '.',
  '+',
  '*',
  '?',
  '+?',
  '*+',
  '{2,5}',
  '{1000}',
  '{99999}',
  '(',
  ')',
  '(?:',
  '(?i)',
  '(?s)',
  '(?=',
  '(?!',
  '(?<=',
  '(?<!',
  '(?>',
  '(?P<n>',
  '(?<n>',
  '\\1',
  '\\k<n>',
  '|',
  '^',
  '$',
  '\\Z',
  '\\z',
  '\\A',
  '\\b',
  '\\d',
  '\\w',
  '\\s',
  '\\p{L}',
  '\\x{41}',
  '[a-z]',
  '[^\\]]',
  '[[:alpha:]]',
  '[',
  ']',
  '\\',
  '\\Q',
  '\\E',
  '(a+)+',
  '(a|aa)*',
  '(.*a){12}',
];
const regexArb = fc.oneof(
  fc.array(fc.constantFrom(...REGEX_PIECES), { maxLength: 30 }).map((p) => p.join('')),
  fc.string({ maxLength: 40 }),
  fc
    .integer({ min: 1000, max: 3000 })
    .map((n) => `${'(a'.repeat(n % 200)}${')*'.repeat(n % 200)}${'x'.repeat(n - 1000)}`),
);

const modifierArb = fc
  .array(fc.oneof(fc.constantFrom(...KNOWN_MODIFIERS), fc.constantFrom('bogus', '', 'RE', 'contains ')), {
    maxLength: 3,
  })
  .map((ms) => ms.map((m) => `|${m}`).join(''));
const scalarArb: fc.Arbitrary<unknown> = fc.oneof(
  EVENT_TEXT,
  regexArb,
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom('*', '?', '\\*', '%var%', '10.0.0.0/8', '::1/200', 'dGVzdA==', 'a*b?c\\'),
);
const valueArb = fc.oneof(
  scalarArb,
  fc.array(scalarArb, { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 5 }), scalarArb, { maxKeys: 2 }),
);
const searchArb = fc.oneof(
  fc.dictionary(
    fc.tuple(fc.constantFrom(...FIELD_NAMES, 'constructor', '__proto__', ''), modifierArb).map(([f, m]) => f + m),
    valueArb,
    { maxKeys: 4 },
  ),
  fc.array(fc.oneof(scalarArb, fc.dictionary(fc.constantFrom(...FIELD_NAMES), valueArb, { maxKeys: 2 })), {
    maxLength: 3,
  }),
  scalarArb,
);
/** A search of known fields and modifiers with plain values: most of these load. */
const plainSearchArb = fc.dictionary(
  fc
    .tuple(
      fc.constantFrom(...FIELD_NAMES),
      fc.constantFrom(
        '',
        '|contains',
        '|startswith',
        '|endswith',
        '|contains|all',
        '|re',
        '|cidr',
        '|base64offset|contains',
        '|windash',
        '|gt',
        '|exists',
        '|cased',
        '|wide|base64',
      ),
    )
    .map(([f, m]) => f + m),
  fc.oneof(EVENT_TEXT, regexArb, fc.integer(), fc.boolean(), fc.array(EVENT_TEXT, { minLength: 1, maxLength: 3 })),
  { minKeys: 1, maxKeys: 3 },
);
const conditionArb = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom('sel', 'sel and not filter', '1 of sel*', 'all of them', 'sel or sel1', 'not filter'),
  },
  fc
    .array(
      fc.constantFrom(
        'sel',
        'sel1',
        'filter',
        'not',
        'and',
        'or',
        '(',
        ')',
        '1 of',
        'all of',
        'them',
        'sel*',
        '|',
        'count() > 5',
        'near',
      ),
      { minLength: 1, maxLength: 12 },
    )
    .map((p) => p.join(' ')),
  fc
    .integer({ min: 1, max: 5000 })
    .map((n) => `${'not '.repeat(n % 500)}${'('.repeat(n % 300)}sel${')'.repeat(n % 300)}`),
  fc.string({ maxLength: 30 }),
);
const ruleArb = fc
  .record(
    {
      title: fc.oneof({ weight: 4, arbitrary: fc.string({ minLength: 1, maxLength: 20 }) }, fc.integer()),
      id: fc.oneof(fc.uuid(), fc.string({ maxLength: 10 })),
      status: fc.constantFrom('test', 'stable', 'deprecated', 'unsupported', 'bogus'),
      level: fc.constantFrom('low', 'medium', 'high', 'critical', 'informational', 7),
      logsource: fc.oneof(
        { weight: 10, arbitrary: fc.constant({ product: 'windows' }) },
        fc.record(
          {
            product: fc.constantFrom('windows', 'linux', 'test'),
            service: fc.constantFrom('system', 'security', 'sysmon'),
          },
          { requiredKeys: [] },
        ),
        scalarArb,
      ),
      detection: fc.oneof(
        {
          weight: 10,
          arbitrary: fc.record(
            { sel: plainSearchArb, sel1: plainSearchArb, filter: plainSearchArb, condition: conditionArb },
            { requiredKeys: ['sel', 'condition'] },
          ),
        },
        fc.record(
          {
            sel: searchArb,
            sel1: searchArb,
            filter: searchArb,
            condition: fc.oneof(conditionArb, fc.array(conditionArb, { maxLength: 2 })),
          },
          { requiredKeys: ['condition'] },
        ),
        scalarArb,
      ),
      tags: fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }),
      action: fc.constantFrom('global', 'repeat', 'reset', 'bogus'),
      correlation: fc.record(
        {
          type: fc.constantFrom('event_count', 'value_count', 'temporal', 'temporal_ordered', 'bogus'),
          rules: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
          timespan: fc.constantFrom('5m', '1h', '0s', '99999999999d', 'x', ''),
          'group-by': fc.array(fc.constantFrom(...FIELD_NAMES), { maxLength: 2 }),
          condition: fc.oneof(fc.record({ gte: fc.integer() }), scalarArb),
        },
        { requiredKeys: [] },
      ),
      filter: fc.record(
        { rules: fc.array(fc.string({ maxLength: 8 }), { maxLength: 2 }), sel: searchArb, condition: conditionArb },
        { requiredKeys: [] },
      ),
    },
    { requiredKeys: ['title', 'logsource', 'detection'] },
  )
  .map((doc) => {
    // Mostly plain rules: a rule with `correlation` or `filter` is read as those, so add them rarely.
    const { action, correlation, filter, ...rule } = doc;
    return { rule, action, correlation, filter };
  });
const documentsArb = fc
  .array(
    fc.tuple(ruleArb, fc.nat(9)).map(([d, pick]) => {
      const out: Record<string, unknown> = { ...d.rule };
      if (pick === 0 && d.action) out.action = d.action;
      if (pick === 1 && d.correlation) out.correlation = d.correlation;
      if (pick === 2 && d.filter) out.filter = d.filter;
      return out;
    }),
    { minLength: 1, maxLength: 3 },
  )
  .map((docs) => docs.map((d) => stringify(d)).join('---\n'));

/** Anchors that alias earlier anchors: fan-out and depth chosen at random, sometimes through merge keys. */
const aliasArb = fc
  .record({
    levels: fc.integer({ min: 1, max: 30 }),
    fanout: fc.integer({ min: 1, max: 12 }),
    merge: fc.boolean(),
    where: fc.constantFrom('value', 'search', 'detection', 'title'),
  })
  .map(({ levels, fanout, merge, where }) => {
    const lines = ['a0: &a0 ["lol", "lol"]'];
    for (let i = 1; i <= levels; i++) {
      if (merge) {
        const keys = Array.from({ length: fanout }, (_, k) => `k${k}: *a${i - 1}`).join(', ');
        lines.push(`a${i}: &a${i} {<<: *a${Math.max(0, i - 2)}, ${keys}}`);
      } else {
        lines.push(
          `a${i}: &a${i} [${Array(fanout)
            .fill(`*a${i - 1}`)
            .join(', ')}]`,
        );
      }
    }
    const top = `*a${levels}`;
    const body =
      where === 'title'
        ? `title: ${top}\nlogsource: {product: windows}\ndetection: {sel: {CommandLine: x}, condition: sel}\n`
        : where === 'detection'
          ? `title: t\nlogsource: {product: windows}\ndetection: ${top}\n`
          : where === 'search'
            ? `title: t\nlogsource: {product: windows}\ndetection:\n  sel: ${top}\n  condition: sel\n`
            : `title: t\nlogsource: {product: windows}\ndetection:\n  sel:\n    CommandLine|contains: ${top}\n  condition: sel\n`;
    return `${lines.join('\n')}\n${body}`;
  });

/** Deep nesting of flow or block collections, within and past the depth limit. */
const deepArb = fc
  .record({
    depth: fc.integer({ min: 1, max: 20_000 }),
    kind: fc.constantFrom('flow-seq', 'flow-map', 'block-map', 'block-seq'),
  })
  .map(({ depth, kind }) => {
    const n = kind.startsWith('block') ? Math.min(depth, 2_000) : depth;
    switch (kind) {
      case 'flow-seq':
        return `title: t\nlogsource: {product: windows}\ndetection: {sel: {CommandLine: ${'['.repeat(n)}x${']'.repeat(n)}}, condition: sel}\n`;
      case 'flow-map':
        return `title: t\nlogsource: {product: windows}\ndetection: {sel: ${'{a: '.repeat(n)}x${'}'.repeat(n)}, condition: sel}\n`;
      case 'block-map':
        return `title: t\nlogsource: {product: windows}\ndetection:\n${Array.from({ length: n }, (_, i) => `${' '.repeat(i + 1)}k${i}:`).join('\n')} x\n`;
      default:
        return `title: t\nlogsource: {product: windows}\ndetection:\n sel:\n${Array.from({ length: n }, (_, i) => `${' '.repeat(2 * i + 2)}-`).join('\n')} x\n condition: sel\n`;
    }
  });

const regexRuleArb = fc
  .tuple(regexArb, fc.constantFrom('', '|i', '|m', '|s', '|i|m|s'), fc.constantFrom('CommandLine', 'Image'))
  .map(
    ([re, flags, field]) =>
      `title: re\nid: 0f5e1a40-0000-4000-8000-000000000001\nlogsource: {product: windows}\ndetection:\n  sel:\n    ${field}|re${flags}: ${JSON.stringify(re)}\n  condition: sel\n`,
  );

describe('Sigma loader fuzzing', () => {
  test('random YAML-like text loads or is rejected with a reason, within the time bound', () => {
    fc.assert(
      fc.property(yamlishArb, (text) => {
        exercise(text);
      }),
      fuzzParams(800),
    );
  });

  test('random rule documents load, compile and match without throwing', (t) => {
    let rules = 0;
    fc.assert(
      fc.property(documentsArb, fc.array(eventArb, { maxLength: 3 }), (text, events) => {
        rules += exercise(text, events).rules.length;
      }),
      fuzzParams(300, { maxRuns: 10_000 }),
    );
    t.diagnostic(`${rules} rules loaded`);
  });

  test('alias-heavy documents are refused by a limit or loaded, within the time bound', () => {
    fc.assert(
      fc.property(aliasArb, (text) => {
        const loaded = exercise(text);
        if (loaded.rejected.length === 0) return;
        assert.ok(loaded.rejected.every((r) => r.reason.length > 0));
      }),
      fuzzParams(150, { maxRuns: 3000 }),
    );
  });

  test('deeply nested documents are refused by a limit or loaded, within the time bound', () => {
    fc.assert(
      fc.property(deepArb, (text) => {
        exercise(text);
      }),
      fuzzParams(60, { maxRuns: 1500 }),
    );
  });

  test('random regular expressions compile on RE2 or are refused, and match in bounded time', (t) => {
    let rules = 0;
    fc.assert(
      fc.property(regexRuleArb, fc.array(eventArb, { minLength: 1, maxLength: 3 }), (text, events) => {
        rules += exercise(text, events).rules.length;
      }),
      fuzzParams(300),
    );
    t.diagnostic(`${rules} regular expressions loaded`);
  });
});
