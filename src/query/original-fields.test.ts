import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Session } from 'chdb';
import type { NormalizedEvent } from '../lib/event.ts';
import { createNormalizer } from '../parse/index.ts';
import { compileQuery } from './index.ts';
import { isFieldName } from './parser.ts';
import { insertFromFileSql } from '../store/index.ts';
import { OMITTED_MARK } from '../store/original-fields.ts';
import { eventsToRowBinary } from '../store/row-binary.ts';
import { type EventRow, rowToEvent, rowToNormalized, storedValue } from '../store/rows.ts';
import { COLUMN_FIELDS, EVENTS_TABLE, eventsTableDdl } from '../store/schema.ts';

const T0 = Date.UTC(2026, 0, 15, 12, 0, 0);

test('the normalizer names the leading original fields found at plain paths, unless the engine may read the text otherwise', () => {
  const normalizer = createNormalizer({ max_depth: 100 });
  const inRaw = (raw: string) =>
    normalizer.fromJson(JSON.parse(raw), raw, { source: 'http', receivedAt: T0, tenant: 't' }).inRaw;
  assert.deepEqual(inRaw('{"EventID":4688,"Image":"C:\\\\Windows\\\\cmd.exe","a":{"b":"x"},"k\\u0065y":"z"}'), [
    4,
    'key',
  ]);
  // A dotted key is no path: counting stops at it (the fields after it stay in the map).
  assert.deepEqual(inRaw('{"c":"y","a.b":"x","d":"z"}'), [1, 'c']);
  assert.equal(inRaw('{"a.b":"x","c":"y"}'), undefined);
  // -2^63 and 2^64 - 1 are read; one more is not, and the engine then finds no field of the text at all.
  assert.ok(inRaw('{"Keywords":-9223372036854775808,"s":"v"}'));
  assert.ok(inRaw('{"n":18446744073709551615,"s":"v"}'));
  assert.ok(inRaw('{"f":1e300,"g":123456789012345678901234567890.5,"s":"v"}'));
  for (const text of [
    '{"n":18446744073709551616,"s":"v"}',
    '{"n":-9223372036854775809,"s":"v"}',
    '{"n":[1,99999999999999999999],"s":"v"}',
    '{"n":1e400,"s":"v"}',
    '{"s":"\\ud800"}',
    '{"\\udc00":"v"}',
    '{"l":["\\ud800"]}',
    '{"l":[{"x":"y"}],"s":"v"}',
    // A repeated key: V8 drops a value no check saw (the engine then refuses the text), or the engine reads
    // the other one; and a field whose dotted and nested spellings meet.
    '{"n":99999999999999999999,"n":1,"s":"v"}',
    '{"n":1e400,"n":1,"s":"v"}',
    '{"x":"\\ud800","x":"ok","s":"v"}',
    '{"s":"v","a":1,"a":"x"}',
    '{"a":{"b":"x","b":"y"},"s":"v"}',
    '{"s":"v","k" :"x","k":"y"}',
    '{"z":"1","a.b":null,"a":{"b":"evil"}}',
    `${'{"a":'.repeat(70)}"v"${'}'.repeat(70)}`,
  ]) {
    assert.equal(inRaw(text), undefined, text);
  }
  // The text must be the object's own: one that is not leaves nothing out.
  const e = normalizer.fromJson({ s: 'v' }, ' {"s":"v"}', { source: 'http', receivedAt: T0, tenant: 't' });
  assert.equal(e.inRaw, undefined);
});

test('the check of long integers costs linear time: a long digit run before a dot in a string', () => {
  const normalizer = createNormalizer();
  // A number of 2^63 or more makes the text's digit runs checked; this run, a regular expression with a
  // lookahead walked back digit by digit from every start (about 10^11 steps here).
  const raw = `{"big":1e19,"s":"${'1'.repeat(500_000)}.","t":"v"}`;
  const started = performance.now();
  const e = normalizer.fromJson(JSON.parse(raw), raw, { source: 'http', receivedAt: T0, tenant: 't' });
  assert.deepEqual(e.inRaw, [3, 't'], 'digits a dot follows are no integer to the engine');
  assert.ok(performance.now() - started < 2000, `took ${performance.now() - started} ms`);
  const long = `{"big":1e19,"s":"${'1'.repeat(500_000)}"}`;
  assert.equal(
    normalizer.fromJson(JSON.parse(long), long, { source: 'http', receivedAt: T0, tenant: 't' }).inRaw,
    undefined,
  );
  const ok = '{"big":1e19,"n":-9223372036854775808,"f":1234567890123456789012.5,"s":"v"}';
  assert.ok(normalizer.fromJson(JSON.parse(ok), ok, { source: 'http', receivedAt: T0, tenant: 't' }).inRaw);
});

// Events whose fields the writer leaves in `raw` in part, in whole or not at all; every one must be found
// by every one of its fields, and read back with the fields it was normalized with.
const TEXTS = [
  '{"EventID":4688,"Channel":"Security","CommandLine":"cmd.exe /c whoami","Keywords":-9223372036854775808,"Image":"C:\\\\Windows\\\\cmd.exe","Hostname":"ws1"}',
  '{"a":{"b":"x","c":{"d":"y"}},"msg":"hi","t":true,"n":12,"list":["p","q"]}',
  '{"a.b":"flat first","a":{"b":"nested second"},"z":"v"}',
  '{"a":{"b":"nested first"},"a.b":"flat second","z":"v"}',
  '{"k\\u0065y":"escaped key","other":"w","\\u00e9t\\u00e9":"\\u00e9t\\u00e9 \\ud83d\\ude00"}',
  '{"big":18446744073709551616,"s":"beside a big integer"}',
  '{"max":18446744073709551615,"s":"beside the largest integer read"}',
  '{"s":"123","t":"true","e":"","arr":[{"x":"in an array"}]}',
  '{"s":"line1\\nline2\\t\\"q\\" \\\\ end","p":"a\\/b","a/b":"slash key"}',
  '{"s":"café ☕ 𝄞","tenant":{"id":"not the tenant"},"input":{"type":"not the input"}}',
  '{"__proto__":"p","constructor":"c","toString":"s","":"an empty key","e":{"":"under an empty key"}}',
  `{"deep":${'{"a":'.repeat(70)}"v"${'}'.repeat(70)},"s":"beside deep nesting"}`,
];

const dir = mkdtempSync(join(tmpdir(), 'vigil-original-fields-'));
let session: Session;
let events: NormalizedEvent[];

before(async () => {
  const normalizer = createNormalizer({ max_depth: 100 });
  events = TEXTS.map((raw, i) =>
    normalizer.fromJson(JSON.parse(raw), raw, { source: 'http', receivedAt: T0 + i, tenant: 't1', idSeed: 'k' }),
  );
  session = new Session(dir);
  await session.queryAsync('CREATE DATABASE IF NOT EXISTS vigil');
  await session.queryAsync(eventsTableDdl(3650));
  const file = join(dir, 'rows.bin');
  writeFileSync(file, eventsToRowBinary(events));
  await session.queryAsync(insertFromFileSql(file));
});

after(() => {
  session.close();
  rmSync(dir, { recursive: true, force: true });
});

async function select(query: string): Promise<EventRow[]> {
  const compiled = compileQuery(query, {
    from: T0 - 3600_000,
    to: T0 + 3600_000,
    limit: 100,
    tenants: ['t1'],
    now: T0,
  });
  if (compiled.kind !== 'events') throw new Error(`${query} selects no events`);
  const text = (await session.queryBindAsync(compiled.sql, compiled.params, { format: 'JSONEachRow' })).text().trim();
  return text === '' ? [] : text.split('\n').map((l) => JSON.parse(l) as EventRow);
}

const quoted = (v: string) => `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

test('the writer leaves string fields in raw only where the engine reads them back, and marks those rows', async () => {
  const text = (
    await session.queryAsync(`SELECT id, mapKeys(fields) AS keys FROM ${EVENTS_TABLE} ORDER BY ts`, {
      format: 'JSONEachRow',
    })
  )
    .text()
    .trim();
  const keys = text.split('\n').map((l) => (JSON.parse(l) as { keys: string[] }).keys);
  // The Windows event: its strings in raw, its promoted and ECS fields and numbers in the map.
  assert.ok(keys[0].includes(OMITTED_MARK) && !keys[0].includes('CommandLine') && !keys[0].includes('Image'));
  assert.ok(keys[0].includes('Channel') && keys[0].includes('EventID') && keys[0].includes('process.command_line'));
  assert.ok(keys[0].includes('Keywords'));
  // The big integer and the deep nesting keep every field in the map, unmarked; an escaped key is read unescaped.
  for (const i of [5, 11]) assert.ok(!keys[i].includes(OMITTED_MARK), TEXTS[i]);
  assert.ok(keys[4].includes(OMITTED_MARK) && !keys[4].includes('key'));
  // Of two spellings of one key, the one the text's path reaches is left out; the other stays.
  // Where a dotted and a nested spelling of one key meet, nothing is left out either.
  assert.ok(keys[2].includes('a.b') && !keys[2].includes(OMITTED_MARK));
  assert.ok(keys[3].includes('a.b') && !keys[3].includes(OMITTED_MARK));
});

test('every field of every event finds it, with its value, and the row reads back as it was normalized', async () => {
  let checked = 0;
  for (const e of events) {
    for (const [key, field] of Object.entries(e.fields)) {
      // Columns' names search the column (rows.ts): a field of the same name is only in the map and the text.
      if (!isFieldName(key) || COLUMN_FIELDS[key] !== undefined || key === 'message') continue;
      const value = storedValue(field);
      if (value === undefined || value.startsWith('[')) continue;
      const found = await select(`event.id:${quoted(e.id)} AND ${key}:${quoted(value)}`);
      assert.deepEqual(
        found.map((r) => r.id),
        [e.id],
        `${key}:${value} in ${e.raw}`,
      );
      const missing = await select(`event.id:${quoted(e.id)} AND NOT ${key}:*`);
      assert.deepEqual(missing, [], `${key} exists in ${e.raw}`);
      checked++;
    }
    const [row] = await select(`event.id:${quoted(e.id)}`);
    const expected: Record<string, string> = Object.create(null);
    for (const [key, field] of Object.entries(e.fields)) {
      const value = storedValue(field);
      if (value !== undefined) expected[key] = value;
    }
    const back = rowToNormalized(structuredClone(row)).fields;
    for (const key of Object.keys(expected)) {
      if (expected[key].startsWith('[')) assert.deepEqual(back[key], JSON.parse(expected[key]), key);
      else assert.equal(back[key], expected[key], `${key} of ${e.raw}`);
    }
    assert.deepEqual(Object.keys(back).sort(), Object.keys(expected).sort(), e.raw);
    assert.ok(!(OMITTED_MARK in rowToEvent(structuredClone(row))));
  }
  assert.ok(checked > 40, `${checked} fields checked`);
});

test('a field named as the mark is not stored: the row does not read as one whose fields were left out', async () => {
  // As a collector could send it: no inRaw, and a field of the mark's name beside a text that says otherwise.
  const e: NormalizedEvent = {
    id: 'forged-mark',
    timestamp: T0,
    ingested: T0,
    tenant: 't3',
    source: 'collector',
    layout: 'json',
    raw: '{"CommandLine":"evil.exe","x":"1"}',
    fields: { [OMITTED_MARK]: '', x: '1' },
  };
  const file = join(dir, 'forged.bin');
  writeFileSync(file, eventsToRowBinary([e]));
  await session.queryAsync(insertFromFileSql(file));
  const c = compileQuery('CommandLine:"evil.exe" OR x:"1"', {
    from: T0 - 3600_000,
    to: T0 + 3600_000,
    limit: 10,
    tenants: ['t3'],
    now: T0,
  });
  if (c.kind !== 'events') throw new Error('unreachable');
  const rows = (await session.queryBindAsync(c.sql, c.params, { format: 'JSONEachRow' })).text().trim().split('\n');
  assert.equal(rows.length, 1);
  const back = rowToNormalized(JSON.parse(rows[0]) as EventRow).fields;
  assert.deepEqual({ ...back }, { x: '1' });
  const only = compileQuery('CommandLine:"evil.exe"', {
    from: T0 - 3600_000,
    to: T0 + 3600_000,
    limit: 10,
    tenants: ['t3'],
    now: T0,
  });
  if (only.kind !== 'events') throw new Error('unreachable');
  assert.equal((await session.queryBindAsync(only.sql, only.params, { format: 'JSONEachRow' })).text().trim(), '');
});

test('a field absent from an event is not found in its raw text: objects, numbers and Vigil columns there', async () => {
  // `a` is an object in the text, `n` a number, `tenant.id` a column's name: none is a string field to find.
  assert.deepEqual(await select('a:*'), []);
  assert.deepEqual(await select('n:"12"').then((r) => r.length), 1);
  assert.deepEqual(await select('tenant.id:"not the tenant"'), []);
  assert.deepEqual(await select('deep.a:*'), []);
});

test('two equal keys in one object: nothing is left out, so a field search finds the value the event holds', async () => {
  const normalizer = createNormalizer();
  const raw = '{"dup":"first","dup":"last","s":"v"}';
  const e = normalizer.fromJson(JSON.parse(raw), raw, { source: 'http', receivedAt: T0, tenant: 't2', idSeed: 'd' });
  assert.equal(e.inRaw, undefined);
  const file = join(dir, 'dup.bin');
  writeFileSync(file, eventsToRowBinary([e]));
  await session.queryAsync(insertFromFileSql(file));
  const run = async (query: string) => {
    const c = compileQuery(query, { from: T0 - 3600_000, to: T0 + 3600_000, limit: 10, tenants: ['t2'], now: T0 });
    if (c.kind !== 'events') throw new Error('unreachable');
    return (await session.queryBindAsync(c.sql, c.params, { format: 'JSONEachRow' })).text().trim();
  };
  assert.equal(e.fields.dup, 'last');
  assert.equal(await run('dup:"first"'), '');
  assert.notEqual(await run('dup:"last"'), '');
  // Both values are words of the text: a word search finds the event by either.
  assert.notEqual(await run('first'), '');
});
