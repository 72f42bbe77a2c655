/**
 * Fuzzing the query language (issue 16): arbitrary text and grammar-shaped queries. Whatever a client sends in
 * `q`, parsing and compiling either give SQL or throw a VigilError with a 4xx status, never anything else
 * (a TypeError would answer 500); user values reach the SQL only as bound parameters; every placeholder has
 * its parameter; and a query compiles within a bounded time. Cases: VIGIL_FUZZ_RUNS (test/harness/fuzz.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Session } from 'chdb';
import fc from 'fast-check';
import { fuzzParams } from '../../test/harness/fuzz.ts';
import { VigilError } from '../lib/errors.ts';
import { EVENTS_TABLE, eventsTableDdl } from '../store/schema.ts';
import { type CompiledQuery, type CompileOptions, compileQuery } from './index.ts';

const NOW = Date.UTC(2026, 11, 1);
const OPTS: CompileOptions = { from: NOW - 86_400_000, to: NOW, limit: 100, tenants: ['t1'], now: NOW };
/** Generous for CI's shared cores: a 10,000-character query compiles in a few milliseconds. */
const MAX_COMPILE_MS = 500;

/** Compiles, and returns the result or the error; fails the property on anything but a 4xx VigilError. */
function compileChecked(q: string, opts: CompileOptions = OPTS): { compiled?: CompiledQuery; error?: VigilError } {
  const t0 = performance.now();
  let out: { compiled?: CompiledQuery; error?: VigilError };
  try {
    out = { compiled: compileQuery(q, opts) };
  } catch (err) {
    if (!(err instanceof VigilError)) {
      throw new Error(`query ${JSON.stringify(q)} threw ${(err as Error)?.name}: ${(err as Error)?.message}`);
    }
    if (err.status < 400 || err.status >= 500) {
      throw new Error(`query ${JSON.stringify(q)} threw ${err.code} with status ${err.status}: ${err.message}`);
    }
    // The message may quote the query itself, so look for what only the compiled SQL holds.
    if (/vigil\.events|\{[A-Za-z0-9_]+:[A-Z]|fromUnixTimestamp64Milli|lowerUTF8\(/.test(err.message)) {
      throw new Error(`the error of ${JSON.stringify(q)} shows SQL: ${err.message}`);
    }
    out = { error: err };
  }
  const ms = performance.now() - t0;
  if (ms > MAX_COMPILE_MS) throw new Error(`query ${JSON.stringify(q)} took ${ms.toFixed(0)} ms to compile`);
  if (out.compiled) checkSql(q, out.compiled);
  return out;
}

/** Every `{name:Type}` placeholder has a bound value, and no value is missing or not a number. */
function checkSql(q: string, c: CompiledQuery): void {
  const texts = c.kind === 'events' ? [c.sql, c.countSql] : [c.sql];
  for (const sql of texts) {
    for (const m of sql.matchAll(/\{([A-Za-z0-9_]+):[^}]+\}/g)) {
      assert.ok(Object.hasOwn(c.params, m[1]), `query ${JSON.stringify(q)}: placeholder ${m[0]} has no value`);
    }
    assert.doesNotMatch(sql, /\bundefined\b|\bNaN\b|\[object /, `query ${JSON.stringify(q)}: ${sql}`);
  }
  for (const [k, v] of Object.entries(c.params)) {
    const bad = v === undefined || v === null || (typeof v === 'number' && !Number.isFinite(v));
    assert.ok(!bad, `query ${JSON.stringify(q)}: parameter ${k} is ${String(v)}`);
  }
}

// Characters that mean something to the grammar, to SQL or to JavaScript objects, weighted into random text.
const PUNCT = [...':=!<>()[]{}"\'\\*?|,-+/ .@#&;`$%^~\n\t', ' AND ', ' OR ', ' NOT ', ' TO ', '--', '/*'];
const NAMES = [
  'host',
  'message',
  'user.name',
  'source.ip',
  'EventID',
  'Channel',
  '@timestamp',
  'event.ingested',
  'event.category',
  'tenant.id',
  'bytes',
  'constructor',
  '__proto__',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'count',
  '_time',
];

const textArb = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc
    .array(fc.oneof(fc.constantFrom(...PUNCT), fc.constantFrom(...NAMES), fc.string({ maxLength: 6 })), {
      maxLength: 40,
    })
    .map((parts) => parts.join('')),
);

/** A value marker: text that the SQL must never contain, only the parameters. */
const markerArb = fc.stringMatching(/^[0-9a-f]{8}$/).map((h) => `zq${h}`);
/** A string value: a marker, then characters that would break out of a SQL literal if pasted. */
const valueArb = fc
  .tuple(
    markerArb,
    fc.array(fc.constantFrom("'", '"', '\\', ';', '--', ')', '%', '_', '\u0000', 'é', '😀', ' '), { maxLength: 5 }),
  )
  .map(([m, tail]) => ({ marker: m, text: m + tail.join('') }));

/** Writes a value so the parser reads it back as `text`: quoted with escapes, or bare with backslashes. */
function quoted(text: string): string {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
function bare(text: string): string {
  return text.replace(/[^A-Za-z0-9_.@#-]/g, (c) => (c === '\u0000' ? '' : `\\${c}`));
}

const fieldArb = fc.oneof(fc.constantFrom(...NAMES), fc.stringMatching(/^[A-Za-z_@#][A-Za-z0-9_@#.-]{0,12}$/));
const numberArb = fc.oneof(
  fc.integer().map(String),
  fc.double({ noNaN: true }).map(String),
  fc.constantFrom('1e20', '-1e308', '9007199254740993', '0x10', '1e-400', '007', '-0', '.5', '5.'),
);
const timeArb = fc.oneof(
  fc.constantFrom('now', 'now-15m', 'now-1d', 'now+1w', 'now-99999999d', '2024-01-15', '2024-02-30', '9999-12-31'),
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  fc.integer({ min: -1e15, max: 1e15 }).map(String),
);
const boundArb = fc.oneof(
  numberArb,
  timeArb,
  valueArb.map((v) => quoted(v.text)),
  fc.constant('*'),
);

interface Gen {
  q: string;
  markers: string[];
}
const leaf: fc.Arbitrary<Gen> = fc.oneof(
  fc.tuple(fieldArb, valueArb, fc.constantFrom(':', '=', ': ', '!=')).map(([f, v, op]) => ({
    q: `${f}${op}${quoted(v.text)}`,
    markers: [v.marker],
  })),
  fc.tuple(fieldArb, valueArb, fc.constantFrom('', '*', '?')).map(([f, v, w]) => ({
    q: `${f}:${bare(v.text)}${w}`,
    markers: [v.marker],
  })),
  valueArb.map((v) => ({ q: quoted(v.text), markers: [v.marker] })),
  valueArb.map((v) => ({ q: `${bare(v.text)}*`, markers: [v.marker] })),
  fieldArb.map((f) => ({ q: `${f}:*`, markers: [] })),
  fc
    .tuple(
      fieldArb,
      fc.constantFrom('[', '{'),
      boundArb,
      fc.constantFrom(' TO ', ' to '),
      boundArb,
      fc.constantFrom(']', '}'),
    )
    .map(([f, o, a, to, b, c]) => ({ q: `${f}:${o}${a}${to}${b}${c}`, markers: [] })),
  fc
    .tuple(fieldArb, fc.constantFrom('>', '>=', '<', '<=', ':>', ':<='), fc.oneof(numberArb, timeArb))
    .map(([f, op, v]) => ({ q: `${f}${op}${v}`, markers: [] })),
  fc
    .tuple(fieldArb, fc.ipV4(), fc.integer({ min: 0, max: 40 }))
    .map(([f, ip, bits]) => ({ q: `${f}:${ip}/${bits}`, markers: [] })),
  fc.tuple(fieldArb, fc.ipV6(), fc.integer({ min: 0, max: 140 })).map(([f, ip, bits]) => ({
    q: `${f}:"${ip}/${bits}"`,
    markers: [],
  })),
  fc.constantFrom('*', '*:*').map((q): Gen => ({ q, markers: [] })),
);
const { filter } = fc.letrec<{ filter: Gen }>((tie) => ({
  filter: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc
      .tuple(fc.constantFrom('NOT ', '-', '!'), tie('filter'))
      .map(([op, g]) => ({ q: `${op}${g.q}`, markers: g.markers })),
    tie('filter').map((g) => ({ q: `(${g.q})`, markers: g.markers })),
    fc
      .tuple(
        fc.array(tie('filter'), { minLength: 2, maxLength: 4 }),
        fc.constantFrom(' ', ' AND ', ' OR ', ' && ', ' || '),
      )
      .map(([gs, op]) => ({ q: gs.map((g) => g.q).join(op), markers: gs.flatMap((g) => g.markers) })),
  ),
}));

const aggArb = fc
  .tuple(
    fc.constantFrom(
      'count',
      'count()',
      'count(*)',
      'count(F)',
      'dc(F)',
      'distinct_count(F)',
      'sum(F)',
      'avg(F)',
      'min(F)',
      'max(F)',
      'values(F)',
      'bogus(F)',
    ),
    fieldArb,
    fc.option(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,8}$/), { nil: undefined }),
  )
  .map(([fn, f, as]) => `${fn.replace('F', f)}${as ? ` as ${as}` : ''}`);
const pipeArb: fc.Arbitrary<Gen> = fc.oneof(
  fc
    .tuple(fc.array(aggArb, { minLength: 1, maxLength: 3 }), fc.array(fieldArb, { maxLength: 3 }))
    .map(([aggs, by]) => ({ q: `stats ${aggs.join(', ')}${by.length ? ` by ${by.join(', ')}` : ''}`, markers: [] })),
  fc
    .tuple(
      fc.option(fc.tuple(fc.integer({ min: 0, max: 2_000_000 }), fc.constantFrom('s', 'm', 'h', 'd', 'x'))),
      aggArb,
      fc.option(fieldArb),
    )
    .map(([span, agg, by]) => ({
      q: `timechart ${span ? `span=${span[0]}${span[1]} ` : ''}${agg}${by ? ` by ${by}` : ''}`,
      markers: [],
    })),
  filter.map((g) => ({ q: `where ${g.q}`, markers: g.markers })),
  fc
    .array(fc.tuple(fc.constantFrom('', '-', '+'), fieldArb, fc.constantFrom('', ' desc', ' asc')), {
      minLength: 1,
      maxLength: 3,
    })
    .map((keys) => ({ q: `sort ${keys.map(([s, f, d]) => `${s}${f}${d}`).join(', ')}`, markers: [] })),
  fc
    .tuple(fc.constantFrom('head', 'limit'), fc.oneof(fc.nat().map(String), numberArb, fc.constant('')))
    .map(([c, n]) => ({ q: `${c} ${n}`, markers: [] })),
  fc.array(fieldArb, { minLength: 1, maxLength: 4 }).map((fs) => ({ q: `fields ${fs.join(', ')}`, markers: [] })),
);
const queryArb: fc.Arbitrary<Gen> = fc
  .tuple(fc.option(filter), fc.array(pipeArb, { maxLength: 4 }))
  .map(([f, pipes]) => ({
    q: [f?.q ?? '', ...pipes.map((p) => p.q)].filter((s, i) => i === 0 || s).join(' | '),
    markers: [...(f?.markers ?? []), ...pipes.flatMap((p) => p.markers)],
  }));

describe('query language fuzzing', () => {
  // The engine runs what the compiler makes: a query it refuses answers 500 store_query_failed.
  const dir = mkdtempSync(join(tmpdir(), 'vigil-query-fuzz-'));
  let session: Session;
  before(async () => {
    session = new Session(dir);
    await session.queryAsync('CREATE DATABASE IF NOT EXISTS vigil');
    await session.queryAsync(eventsTableDdl(3650));
    const rows = ['bob', 'alice', '["a","b"]', '12', '1e20', ''].map((v, i) =>
      JSON.stringify({
        ts: NOW - (i + 1) * 60_000,
        ingested: NOW - i * 60_000,
        id: `e${i}`,
        tenant: 't1',
        source: 'http',
        layout: 'json',
        host: `h${i}`,
        message: `m ${v}`,
        raw: `raw ${v} zq`,
        parse_error: '',
        fields: { 'user.name': v, bytes: String(i * 100), 'event.category': v, constructor: v },
      }),
    );
    await session.insert({ table: EVENTS_TABLE, values: Buffer.from(rows.join('\n')), format: 'JSONEachRow' });
  });
  after(() => {
    session?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the engine runs every compiled grammar-shaped query', async () => {
    await fc.assert(
      fc.asyncProperty(queryArb, async ({ q }) => {
        const { compiled: c } = compileChecked(q);
        if (!c) return;
        for (const sql of c.kind === 'events' ? [c.sql, c.countSql] : [c.sql]) {
          try {
            await session.queryBindAsync(sql, c.params, { format: 'JSONEachRow' });
          } catch (err) {
            throw new Error(`query ${JSON.stringify(q)}: the engine refused ${sql}\n${(err as Error).message}`);
          }
        }
      }),
      fuzzParams(150, { maxRuns: 5000 }),
    );
  });

  test('arbitrary text parses and compiles, or answers a 4xx VigilError, within the time bound', () => {
    fc.assert(
      fc.property(textArb, (q) => {
        compileChecked(q);
      }),
      fuzzParams(2000),
    );
  });

  test('grammar-shaped queries never put a user value into the SQL text', (t) => {
    let compiled = 0;
    let total = 0;
    fc.assert(
      fc.property(queryArb, ({ q, markers }) => {
        total++;
        const { compiled: c } = compileChecked(q);
        if (!c) return;
        compiled++;
        const texts = c.kind === 'events' ? [c.sql, c.countSql] : [c.sql];
        for (const m of markers) {
          for (const sql of texts) assert.ok(!sql.includes(m), `query ${JSON.stringify(q)}: ${m} is in the SQL`);
        }
      }),
      fuzzParams(1500),
    );
    t.diagnostic(`${compiled} of ${total} generated queries compiled`);
    // The generator must often produce valid queries, or the SQL property tests little.
    assert.ok(compiled > total / 10, `only ${compiled} of ${total} generated queries compiled`);
  });

  test('large and deeply nested queries are refused or compiled within the time bound', () => {
    const big = fc.oneof(
      fc.integer({ min: 1, max: 300 }).map((n) => `${'('.repeat(n)}a${')'.repeat(n)}`),
      fc.integer({ min: 1, max: 300 }).map((n) => `${'NOT '.repeat(n)}a`),
      fc.integer({ min: 1, max: 300 }).map((n) => `${'-'.repeat(n)}a`),
      fc.integer({ min: 1, max: 400 }).map((n) => Array.from({ length: n }, (_, i) => `f${i}:v${i}`).join(' OR ')),
      fc.integer({ min: 1, max: 12_000 }).map((n) => 'a'.repeat(n)),
      fc.integer({ min: 1, max: 3_000 }).map((n) => '*'.repeat(n)),
      fc.integer({ min: 1, max: 2_000 }).map((n) => `x:${'a*'.repeat(n)}`),
      fc.integer({ min: 1, max: 2_000 }).map((n) => `* ${'| head 1 '.repeat(n)}`),
      fc
        .integer({ min: 1, max: 500 })
        .map((n) => `* | stats ${Array.from({ length: n }, (_, i) => `dc(f${i})`).join(', ')}`),
      fc
        .integer({ min: 1, max: 500 })
        .map((n) => `* | stats count by ${Array.from({ length: n }, (_, i) => `f${i}`).join(', ')}`),
    );
    fc.assert(
      fc.property(big, (q) => {
        compileChecked(q);
      }),
      fuzzParams(200),
    );
  });

  test('compile options from a client (from, to, limit, maxLimit, tenants) give SQL or a 4xx VigilError', () => {
    const num = fc.oneof(
      fc.integer({ min: -1e15, max: 1e15 }),
      fc.double(),
      fc.constantFrom(0, -1, 2 ** 53, 2 ** 63, Number.MAX_VALUE, Number.NaN, Number.POSITIVE_INFINITY),
    );
    const opts = fc.record(
      {
        from: num,
        to: num,
        limit: num,
        maxLimit: num,
        // `now` is the node's clock, not a client's input.
        now: fc.integer({ min: 0, max: 4e12 }),
        tenants: fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }),
      },
      { requiredKeys: ['limit', 'tenants'] },
    );
    fc.assert(
      fc.property(queryArb, opts, ({ q }, o) => {
        compileChecked(q, o as CompileOptions);
      }),
      fuzzParams(1000),
    );
  });
});
