import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Session } from 'chdb';
import { EVENTS_TABLE, eventsTableDdl } from '../store/schema.ts';
import { type CompileOptions, compileQuery, QuerySyntaxError } from './index.ts';

const T0 = Date.UTC(2024, 0, 15, 12, 0, 0);
const MIN = 60_000;
const RANGE = { from: T0 - 60 * MIN, to: T0 + 60 * MIN };
const BASE: CompileOptions = { ...RANGE, limit: 100, tenants: ['t1'], now: T0 + 10 * MIN };

interface Row {
  id: string;
  minutes: number;
  host?: string;
  layout?: string;
  tenant?: string;
  message?: string;
  raw: string;
  parseError?: string;
  fields?: Record<string, string>;
}

const EVENTS: Row[] = [
  {
    id: 'e01',
    minutes: 0,
    host: 'web-01',
    raw: 'Jan 15 12:00:00 web-01 sshd[42]: Failed password for bob from 10.1.2.3 port 22',
    fields: {
      'user.name': 'bob',
      'source.ip': '10.1.2.3',
      'event.category': '["authentication","network"]',
      'event.outcome': 'failure',
      EventID: '4625',
      bytes: '100',
    },
  },
  {
    id: 'e02',
    minutes: 1,
    host: 'web-01',
    raw: 'sshd: Failed password for alice from 192.168.1.5',
    fields: {
      'user.name': 'Alice',
      'source.ip': '192.168.1.5',
      'event.category': '["authentication"]',
      'event.outcome': 'failure',
      EventID: '4625',
      bytes: '250',
    },
  },
  {
    id: 'e03',
    minutes: 2,
    host: 'web-02',
    raw: 'sshd: Accepted password for bob from 10.9.8.7',
    fields: {
      'user.name': 'bob',
      'source.ip': '10.9.8.7',
      'event.category': '["authentication"]',
      'event.outcome': 'success',
      EventID: '4624',
      bytes: '50',
    },
  },
  {
    id: 'e04',
    minutes: 3,
    host: 'DC-01',
    layout: 'windows',
    raw: 'Process C:\\Windows\\System32\\cmd.exe started by SYSTEM',
    fields: { 'process.executable': 'C:\\Windows\\System32\\cmd.exe', EventID: '4688', 'user.name': 'SYSTEM' },
  },
  {
    id: 'e05',
    minutes: 4,
    host: 'fw-01',
    raw: 'DENY tcp 2001:db8::5 -> 2001:db9::1 Überprüfung',
    fields: { 'source.ip': '2001:db8::5', 'destination.port': '443', 'event.category': '["network"]', bytes: 'abc' },
  },
  {
    id: 'e06',
    minutes: 6,
    host: 'fw-01',
    raw: 'DENY udp unknown -> unknown',
    fields: { 'source.ip': '', 'destination.port': '53', 'related.ip': '["10.0.0.1","not-an-ip"]' },
  },
  {
    id: 'e07',
    minutes: 7,
    host: 'web-02',
    raw: "GET /index.php?id=1' OR '1'='1 -- ; {p0:String} 50%_off",
    fields: { 'url.query': "id=1' OR '1'='1", 'user.name': 'bob`); DROP TABLE vigil.events; --' },
  },
  { id: 'e08', minutes: 8, host: 'web-01', raw: 'garbage <<< line', parseError: 'bad syslog' },
  {
    id: 'e09',
    minutes: 9,
    host: 'web-03',
    raw: 'user=eve action=login status=ok',
    fields: { 'user.name': 'eve', tags: '[INFO] not an array', bytes: '7', '@odd#key-1': 'v1' },
  },
  {
    id: 'e10',
    minutes: 11,
    host: 'web-01',
    raw: 'sshd: Failed password for bob from 10.1.2.3',
    fields: { 'user.name': 'bob', 'source.ip': '10.1.2.3', 'event.category': '["authentication","network"]' },
  },
  { id: 'e11', minutes: 5, tenant: 't2', raw: 'sshd: Failed password for bob', fields: { 'user.name': 'bob' } },
  { id: 'e12', minutes: -48 * 60, raw: 'sshd: Failed password for bob', fields: { 'user.name': 'bob' } },
];

function toJson(e: Row, ingestedDelta = 0): string {
  return JSON.stringify({
    ts: T0 + e.minutes * MIN,
    ingested: T0 + e.minutes * MIN + 500 + ingestedDelta,
    id: e.id,
    tenant: e.tenant ?? 't1',
    source: 'syslog-udp',
    layout: e.layout ?? 'syslog',
    host: e.host ?? 'web-01',
    message: e.message ?? e.raw,
    raw: e.raw,
    parse_error: e.parseError ?? '',
    fields: e.fields ?? {},
  });
}

const dir = mkdtempSync(join(tmpdir(), 'vigil-query-'));
let session: Session;

async function rows<T>(sql: string, params: Record<string, unknown> = {}): Promise<T[]> {
  const result = await session.queryBindAsync(sql, params, { format: 'JSONEachRow' });
  return result.text().trim() === ''
    ? []
    : (result
        .text()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)) as T[]);
}

/** Runs a query; returns the ids it selects (in order) and what its countSql counts. */
async function search(query: string, opts: Partial<CompileOptions> = {}): Promise<{ ids: string[]; count: number }> {
  const compiled = compileQuery(query, { ...BASE, ...opts });
  assert.equal(compiled.kind, 'events', `${query} should select events`);
  assertOnlyOwnLiterals(compiled.sql);
  if (compiled.kind !== 'events') throw new Error('unreachable');
  const events = await rows<{ id: string }>(compiled.sql, compiled.params);
  const [count] = await rows<{ count: string }>(compiled.countSql, compiled.params);
  return { ids: events.map((e) => e.id), count: Number(count.count) };
}

async function table(query: string, opts: Partial<CompileOptions> = {}): Promise<Record<string, unknown>[]> {
  const compiled = compileQuery(query, { ...BASE, ...opts });
  assert.equal(compiled.kind, 'table', `${query} should make a table`);
  assertOnlyOwnLiterals(compiled.sql);
  if (compiled.kind !== 'table') throw new Error('unreachable');
  const result = await rows<Record<string, unknown>>(compiled.sql, compiled.params);
  for (const row of result) assert.deepEqual(Object.keys(row), compiled.columns);
  return result;
}

const sorted = (ids: string[]) => [...ids].sort();

/** The compiler writes only these string literals itself; any other would be user text in the SQL. */
const OWN_LITERALS = new Set(["''", "'\"'", "'['", "'::'", "'UTC'", "'Array(String)'"]);

function assertOnlyOwnLiterals(sql: string): void {
  for (const literal of sql.match(/'[^']*'/g) ?? []) assert.ok(OWN_LITERALS.has(literal), `literal ${literal} in SQL`);
}

before(async () => {
  session = new Session(dir);
  await session.queryAsync('CREATE DATABASE IF NOT EXISTS vigil');
  await session.queryAsync(eventsTableDdl(3650));
  // Background merges would collapse the duplicate below before the query could prove FINAL does it.
  await session.queryAsync(`SYSTEM STOP MERGES ${EVENTS_TABLE}`);
  const values = Buffer.from(EVENTS.map((e) => toJson(e)).join('\n'));
  await session.insert({ table: EVENTS_TABLE, values, format: 'JSONEachRow' });
  // e10 stored again (a replay), in a different block so insert deduplication does not drop it.
  const replay = EVENTS.find((e) => e.id === 'e10')!;
  await session.insert({ table: EVENTS_TABLE, values: Buffer.from(toJson(replay, 7)), format: 'JSONEachRow' });
});

after(() => {
  session?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('filters select exactly the matching events', () => {
  const cases: [string, string, string[]][] = [
    ['a field value matches case-insensitively', 'user.name:BOB', ['e01', 'e03', 'e10']],
    ['Splunk-style field=value is field:value', 'user.name=alice', ['e02']],
    [
      'field!=value keeps events without the field',
      'EventID!=4625',
      ['e03', 'e04', 'e05', 'e06', 'e07', 'e08', 'e09', 'e10'],
    ],
    ['a quoted value is matched whole, literally', "url.query:\"id=1' OR '1'='1\"", ['e07']],
    ['a trailing wildcard is a prefix match', 'user.name:b*', ['e01', 'e03', 'e07', 'e10']],
    ['? matches exactly one character', 'user.name:?ob', ['e01', 'e03', 'e10']],
    ['a value matches any element of a JSON array', 'event.category:authentication', ['e01', 'e02', 'e03', 'e10']],
    ['a wildcard matches array elements', 'event.category:net*', ['e01', 'e05', 'e10']],
    [
      'NOT includes events where the field is missing',
      'NOT event.category:authentication',
      ['e04', 'e05', 'e06', 'e07', 'e08', 'e09'],
    ],
    ['field:* is exists', 'event.category:*', ['e01', 'e02', 'e03', 'e05', 'e10']],
    ['NOT field:* is missing', 'NOT event.category:*', ['e04', 'e06', 'e07', 'e08', 'e09']],
    ['text beginning with [ that is not JSON still matches whole', 'tags:"[INFO] not an array"', ['e09']],
    ['a field name with @ # - is a path', '@odd#key-1:V1', ['e09']],
    ['an IPv4 CIDR matches addresses in range', 'source.ip:10.0.0.0/8', ['e01', 'e03', 'e10']],
    ['an IPv6 CIDR quoted', 'source.ip:"2001:db8::/32"', ['e05']],
    ['an IPv6 CIDR unquoted', 'source.ip:2001:db8::/32', ['e05']],
    [
      'NOT CIDR survives empty and non-IP values',
      'NOT source.ip:10.0.0.0/8',
      ['e02', 'e04', 'e05', 'e06', 'e07', 'e08', 'e09'],
    ],
    ['a CIDR matches any address of an array, skipping non-IPs', 'related.ip:10.0.0.0/24', ['e06']],
    ['0.0.0.0/0 matches only real IPv4 addresses', 'source.ip:0.0.0.0/0', ['e01', 'e02', 'e03', 'e10']],
    ['numeric range inclusive', 'bytes:[50 TO 100]', ['e01', 'e03']],
    ['numeric range exclusive lower, inclusive upper', 'bytes:{50 TO 250]', ['e01', 'e02']],
    ['open-ended range', 'bytes:[100 TO *]', ['e01', 'e02']],
    ['field>=n compares numbers, skipping non-numbers', 'bytes>=100', ['e01', 'e02']],
    ['KQL spaced comparison', 'bytes < 60', ['e03', 'e09']],
    ['ES-style field:>n', 'bytes:>200', ['e02']],
    ['string range compares text case-insensitively', 'user.name:[a TO c}', ['e01', 'e02', 'e03', 'e07', 'e10']],
    ['time comparison with an ISO date-time', '@timestamp>=2024-01-15T12:07:00Z', ['e07', 'e08', 'e09', 'e10']],
    ['time range with exclusive end', '@timestamp:[2024-01-15T12:01:00Z TO 2024-01-15T12:03:00Z}', ['e02', 'e03']],
    ['relative time now-3m', '@timestamp>=now-3m', ['e07', 'e08', 'e09', 'e10']],
    [
      'a date alone matches its whole day',
      '@timestamp:2024-01-15',
      ['e01', 'e02', 'e03', 'e04', 'e05', 'e06', 'e07', 'e08', 'e09', 'e10'],
    ],
    ['an offset in the time is honoured', '@timestamp<"2024-01-15T13:01:00+01:00"', ['e01']],
    ['a typed column matches case-insensitively', 'host.name:WEB-01', ['e01', 'e02', 'e08', 'e10']],
    ['a typed column takes wildcards', 'host.name:fw*', ['e05', 'e06']],
    ['an empty typed column counts as missing', 'error.message:*', ['e08']],
    ['escaped colon and backslashes, then a wildcard', 'process.executable:C\\:\\\\Windows\\\\*', ['e04']],
    ['a quoted path keeps single backslashes', 'process.executable:"C:\\Windows\\System32\\cmd.exe"', ['e04']],
    ['a quoted path may double its backslashes', 'process.executable:"C:\\\\Windows\\\\System32\\\\cmd.exe"', ['e04']],
    ['a bare word matches a whole token, any case', 'FAILED', ['e01', 'e02', 'e10']],
    ['a bare word does not match part of a token', 'fail', []],
    ['a bare wildcard word matches inside tokens', 'fail*', ['e01', 'e02', 'e10']],
    ['a phrase matches consecutive words', '"failed password for bob"', ['e01', 'e10']],
    ['a word with punctuation matches exactly', '10.1.2.3', ['e01', 'e10']],
    ['non-ASCII words match case-insensitively', 'ÜBERPRÜFUNG', ['e05']],
    ['LIKE metacharacters in a wildcard word are literal', '50%_of*', ['e07']],
    ['implicit AND', 'password bob', ['e01', 'e03', 'e10']],
    ['AND binds tighter than OR', 'failed OR accepted AND bob', ['e01', 'e02', 'e03', 'e10']],
    ['parentheses group', '(failed OR accepted) AND alice', ['e02']],
    ['-term and ! negate', 'password -bob !accepted', ['e02']],
    ['&& and || are AND and OR', 'EventID:4624 || (EventID:4625 && alice)', ['e02', 'e03']],
    ['field grouping applies the field to each value', 'user.name:(alice OR eve)', ['e02', 'e09']],
    [
      'a lone * matches everything in range and tenant',
      '*',
      ['e01', 'e02', 'e03', 'e04', 'e05', 'e06', 'e07', 'e08', 'e09', 'e10'],
    ],
    ['the tenant restriction cannot be widened by a filter', 'tenant.id:t2', []],
    ['a where pipe narrows the filter', 'password | where user.name:alice', ['e02']],
  ];
  for (const [name, query, expected] of cases) {
    test(`${name}: ${query}`, async () => {
      const { ids, count } = await search(query);
      assert.deepEqual(sorted(ids), expected);
      assert.equal(count, expected.length);
    });
  }
});

describe('events results', () => {
  test('newest first, re-stored event counted once, other tenants and times excluded', async () => {
    const raw = await rows<{ n: string }>(`SELECT count() AS n FROM ${EVENTS_TABLE} WHERE id = 'e10'`);
    assert.equal(Number(raw[0].n), 2, 'the replay is stored twice');
    const { ids, count } = await search('bob');
    assert.deepEqual(ids, ['e10', 'e03', 'e01']);
    assert.equal(count, 3);
    const total = await table('* | stats count');
    assert.deepEqual(total, [{ count: 10 }]);
  });

  test('no tenants means no events', async () => {
    assert.deepEqual(await search('*', { tenants: [] }), { ids: [], count: 0 });
  });

  test('the time range is from inclusive, to exclusive', async () => {
    const { ids } = await search('*', { from: T0 + 2 * MIN, to: T0 + 4 * MIN });
    assert.deepEqual(ids, ['e04', 'e03']);
  });

  test('head limits the rows but not the count; limit and maxLimit cap it', async () => {
    assert.deepEqual(await search('password | head 2'), { ids: ['e10', 'e03'], count: 4 });
    assert.deepEqual((await search('password', { limit: 1 })).ids, ['e10']);
    assert.deepEqual((await search('password | head 3', { limit: 50, maxLimit: 2 })).ids, ['e10', 'e03']);
  });

  test('sort orders numbers numerically, missing last, ties newest first', async () => {
    const { ids } = await search('* | sort -bytes');
    assert.deepEqual(ids, ['e02', 'e01', 'e03', 'e09', 'e05', 'e10', 'e08', 'e07', 'e06', 'e04']);
    assert.deepEqual((await search('bytes:* | sort bytes')).ids, ['e09', 'e03', 'e01', 'e02', 'e05']);
    assert.deepEqual((await search('* | sort host.name, -@timestamp | head 3')).ids, ['e04', 'e06', 'e05']);
  });

  test('sort after head sorts only the first events', async () => {
    assert.deepEqual((await search('* | head 3 | sort +@timestamp')).ids, ['e08', 'e09', 'e10']);
  });

  test('JSON paths work inside subqueries (head before where and stats)', async () => {
    assert.deepEqual((await search('* | head 5 | where user.name:bob')).ids, ['e10']);
    assert.deepEqual(await table('* | head 4 | stats count by user.name'), [
      { 'user.name': 'bob', count: 1 },
      { 'user.name': 'bob`); DROP TABLE vigil.events; --', count: 1 },
      { 'user.name': 'eve', count: 1 },
    ]);
  });

  test('fields is returned as the projection', async () => {
    const compiled = compileQuery('bob | fields user.name, host.name', BASE);
    assert.equal(compiled.kind, 'events');
    assert.deepEqual(compiled.kind === 'events' && compiled.fields, ['user.name', 'host.name']);
  });
});

describe('stats', () => {
  test('count by a typed column, sorted by the group', async () => {
    assert.deepEqual(await table('* | stats count by host.name'), [
      { 'host.name': 'DC-01', count: 1 },
      { 'host.name': 'fw-01', count: 2 },
      { 'host.name': 'web-01', count: 4 },
      { 'host.name': 'web-02', count: 2 },
      { 'host.name': 'web-03', count: 1 },
    ]);
  });

  test('every aggregation over a JSON field, non-numbers skipped', async () => {
    const [row] = await table(
      '* | stats count, count(bytes), dc(user.name) as users, sum(bytes), avg(bytes), min(bytes), max(bytes), values(EventID), min(@timestamp)',
    );
    assert.deepEqual(row, {
      count: 10,
      'count(bytes)': 5,
      users: 5,
      'sum(bytes)': 407,
      'avg(bytes)': 101.75,
      'min(bytes)': 7,
      'max(bytes)': 250,
      'values(EventID)': ['4624', '4625', '4688'],
      'min(@timestamp)': '2024-01-15 12:00:00.000',
    });
  });

  test('a multi-valued by-field counts the event under each value; missing values are dropped', async () => {
    assert.deepEqual(await table('event.outcome:failure OR event.category:network | stats count by event.category'), [
      { 'event.category': 'authentication', count: 3 },
      { 'event.category': 'network', count: 3 },
    ]);
  });

  test('where filters aggregated rows; sort and head order them', async () => {
    assert.deepEqual(await table('* | stats count as n by user.name | where n>=2'), [{ 'user.name': 'bob', n: 3 }]);
    assert.deepEqual(await table('* | stats count as n, dc(user.name) by host.name | sort -n, host.name | head 2'), [
      { 'host.name': 'web-01', n: 4, 'dc(user.name)': 2 },
      { 'host.name': 'fw-01', n: 2, 'dc(user.name)': 0 },
    ]);
    assert.deepEqual(await table('* | stats count by host.name | where host.name:WEB* count>1'), [
      { 'host.name': 'web-01', count: 4 },
      { 'host.name': 'web-02', count: 2 },
    ]);
    assert.deepEqual(await table('* | stats values(EventID) as ids by host.name | where ids:4688'), [
      { 'host.name': 'DC-01', ids: ['4688'] },
    ]);
  });

  test('sort by a default aggregation name, then fields projects', async () => {
    assert.deepEqual(
      await table(
        '* | stats dc(user.name), count by host.name | sort -dc(user.name), host.name | head 1 | fields host.name',
      ),
      [{ 'host.name': 'web-01' }],
    );
  });

  test('every aggregation by a stored field equals the same aggregation over each group alone', async () => {
    // By a stored field the events are grouped by stored text with aggregate states, then expanded and merged.
    const aggs =
      'count, count(bytes), dc(host.name), sum(bytes), avg(bytes), min(bytes), max(bytes), values(EventID), min(@timestamp)';
    for (const by of ['user.name', 'tags', 'event.category']) {
      const grouped = await table(`* | stats ${aggs} by ${by}`);
      assert.ok(grouped.length > 0, by);
      for (const row of grouped) {
        const { [by]: value, ...rest } = row;
        const [alone] = await table(`${by}:"${value}" | stats ${aggs}`);
        assert.deepEqual(rest, alone, `${by}=${value}`);
      }
    }
  });

  test('head before stats aggregates the newest events only', async () => {
    assert.deepEqual(await table('* | head 3 | stats count, min(@timestamp)'), [
      { count: 3, 'min(@timestamp)': '2024-01-15 12:08:00.000' },
    ]);
  });
});

describe('timechart', () => {
  test('buckets by span with empty buckets filled', async () => {
    const result = await table('* | timechart span=5m count');
    assert.equal(result.length, 24);
    const nonZero = result.filter((r) => r.count !== 0);
    assert.deepEqual(nonZero, [
      { _time: '2024-01-15 12:00:00.000', count: 5 },
      { _time: '2024-01-15 12:05:00.000', count: 4 },
      { _time: '2024-01-15 12:10:00.000', count: 1 },
    ]);
  });

  test('split by a field, one row per bucket and value', async () => {
    assert.deepEqual(await table('event.category:* | timechart span=10m count by event.category'), [
      { _time: '2024-01-15 12:00:00.000', 'event.category': 'authentication', count: 3 },
      { _time: '2024-01-15 12:00:00.000', 'event.category': 'network', count: 2 },
      { _time: '2024-01-15 12:10:00.000', 'event.category': 'authentication', count: 1 },
      { _time: '2024-01-15 12:10:00.000', 'event.category': 'network', count: 1 },
    ]);
  });

  test('without a span the bucket fits the range (2h -> 5m)', async () => {
    const result = await table('* | timechart count');
    assert.equal(result.length, 24);
  });
});

describe('FINAL collapses copies of a row within its day partition, never rows of different days', () => {
  // A table of its own: its merges are started and stopped here without touching the other tests' parts.
  const TABLE = 'vigil.final_check';
  const DAY = 86_400_000;
  const D0 = Date.UTC(2024, 2, 1, 12, 0, 0);
  const at = (days: number, id: string, raw: string, ingestedDelta = 0): string =>
    JSON.stringify({
      ts: D0 + days * DAY,
      ingested: D0 + days * DAY + 500 + ingestedDelta,
      id,
      content_hash: 'h',
      tenant: 't1',
      source: 'http',
      layout: 'json',
      host: 'h1',
      message: raw,
      raw,
      parse_error: '',
      fields: { EventID: '4688' },
    });
  const insert = (lines: string[]) =>
    session.insert({ table: TABLE, values: Buffer.from(lines.join('\n')), format: 'JSONEachRow' });
  /** The compiled query run over TABLE instead of the events table. */
  const onTable = (sql: string) => sql.replaceAll(`FROM ${EVENTS_TABLE} FINAL`, `FROM ${TABLE} FINAL`);
  const opts: CompileOptions = { ...BASE, from: D0 - DAY, to: D0 + 3 * DAY };

  before(async () => {
    await session.queryAsync(eventsTableDdl(3650, TABLE));
    // Day 2 first, merged into one part as the force merge leaves a day whose writes stopped; then a copy of
    // one of its rows stored again beside that merged part.
    await insert([at(2, 'c1', 'third day one'), at(2, 'c2', 'third day two')]);
    await insert([at(2, 'c3', 'third day three')]);
    await session.queryAsync(`OPTIMIZE TABLE ${TABLE} FINAL`);
    await session.queryAsync(`SYSTEM STOP MERGES ${TABLE}`);
    await insert([at(2, 'c1', 'third day one', 9)]);
    // Day 0: a row, then its copy in another part (a replay); day 1: the same id and text at another time.
    await insert([at(0, 'a1', 'first day'), at(0, 'a2', 'first day two')]);
    await insert([at(0, 'a1', 'first day', 7)]);
    await insert([at(1, 'a1', 'first day')]);
  });

  test('the parts are laid out as the test needs', async () => {
    const parts = await rows<{ partition: string; n: string; merged: string }>(
      `SELECT partition, count() AS n, countIf(level > 1) AS merged FROM system.parts
WHERE database = 'vigil' AND table = 'final_check' AND active GROUP BY partition ORDER BY partition`,
    );
    assert.deepEqual(
      parts.map((p) => [p.partition, Number(p.n)]),
      [
        ['2024-03-01', 2],
        ['2024-03-02', 1],
        ['2024-03-03', 2],
      ],
    );
    const [stored] = await rows<{ n: string }>(`SELECT count() AS n FROM ${TABLE}`);
    assert.equal(Number(stored.n), 8, 'the copies are stored, not yet merged away');
  });

  test('a count and a stats by count each copy once and each day apart', async () => {
    const total = compileQuery('* | stats count()', opts);
    assert.deepEqual(await rows(onTable(total.sql), total.params), [{ count: 6 }]);
    const byId = compileQuery('* | stats count() by event.id', opts);
    assert.deepEqual(await rows(onTable(byId.sql), byId.params), [
      { 'event.id': 'a1', count: 2 },
      { 'event.id': 'a2', count: 1 },
      { 'event.id': 'c1', count: 1 },
      { 'event.id': 'c2', count: 1 },
      { 'event.id': 'c3', count: 1 },
    ]);
  });

  test('the engine merges within a partition of several parts only, never across partitions', async () => {
    const compiled = compileQuery('* | stats count()', opts);
    const plan = await session.queryBindAsync(`EXPLAIN PIPELINE ${onTable(compiled.sql)}`, compiled.params, {
      format: 'TSVRaw',
    });
    // Day 0 and day 2 (two parts each) are merged each on its own; day 1 (one part) is read without a merge.
    // One merge over the five parts would mean the engine no longer keeps FINAL within a partition (it
    // decides so itself: the partition key, toDate(ts), is made of sort key columns), and every search
    // would merge the sort key of every row again, as before the force merge.
    assert.deepEqual(plan.text().match(/ReplacingSorted \d+ → \d+/g), [
      'ReplacingSorted 2 → 1',
      'ReplacingSorted 2 → 1',
    ]);
  });

  test('events and their count show each copy once, the replayed row in its newest copy', async () => {
    const compiled = compileQuery('EventID:4688', opts);
    if (compiled.kind !== 'events') throw new Error('an events query');
    const events = await rows<{ id: string; ts: string; ingested: string }>(onTable(compiled.sql), compiled.params);
    assert.deepEqual(sorted(events.map((e) => `${e.id} ${e.ts} ${e.ingested}`)), [
      'a1 2024-03-01 12:00:00.000 2024-03-01 12:00:00.507',
      'a1 2024-03-02 12:00:00.000 2024-03-02 12:00:00.500',
      'a2 2024-03-01 12:00:00.000 2024-03-01 12:00:00.500',
      'c1 2024-03-03 12:00:00.000 2024-03-03 12:00:00.509',
      'c2 2024-03-03 12:00:00.000 2024-03-03 12:00:00.500',
      'c3 2024-03-03 12:00:00.000 2024-03-03 12:00:00.500',
    ]);
    const [count] = await rows<{ count: string }>(onTable(compiled.countSql), compiled.params);
    assert.equal(Number(count.count), 6);
  });
});

describe('compile errors name the position and a hint', () => {
  const cases: [string, string, number, string][] = [
    [
      'unknown column after stats',
      'bob | stats count | where user.name:x',
      27,
      "unknown column 'user.name' after stats, expected one of count",
    ],
    ['full text after stats', '| stats count | where foo', 23, 'full-text search is not available after stats'],
    ['sort by an unknown column after stats', '| stats count by h | sort -n', 27, "unknown column 'n' after stats"],
    ['fields of an unknown column after stats', '| stats count | fields x', 24, "unknown column 'x' after stats"],
    ['two stats', '| stats count | timechart count', 17, 'only one stats or timechart per query'],
    ['a wildcard on a time field', 'a @timestamp:2024*', 3, "wildcards are not supported on time field '@timestamp'"],
    ['an invalid time', '@timestamp>yesterday', 1, "invalid time 'yesterday'"],
    ['an impossible date', '@timestamp:[2024-02-31 TO now]', 1, "invalid time '2024-02-31'"],
    ['a CIDR on a time field', 'event.ingested:10.0.0.0/8', 1, "'event.ingested' holds no IP addresses"],
    ['a column reference is not an event field', 'dc(x):5', 1, "'dc(x)' is not a field name"],
    ['fields of a non-field', '| fields a dc(x)', 12, "'dc(x)' is not a field name"],
    ['a by-field twice', '| stats count by a, a', 21, "duplicate column name 'a'"],
    ['an alias equal to a by-field', '| stats count as a by a', 9, "duplicate column name 'a'"],
    ['a number past 2^53', 'bytes>=1e20', 1, "number '1e20' is out of range"],
    ['a number past a double', 'bytes:[0 TO 1e400]', 1, "number '1e400' is out of range"],
    ['a compared count past 2^53', '| stats count as n | where n:-1e20', 28, "number '-1e20' is out of range"],
    ['an epoch time past 2^53', '@timestamp>=9999999999999999', 1, "time '9999999999999999' is out of range"],
    ['a relative time past 2^53', '@timestamp>=now-999999999w', 1, "time 'now-999999999w' is out of range"],
    ['an Object member as aggregate', '| stats constructor(a)', 9, "unknown aggregation 'constructor'"],
  ];
  for (const [name, query, position, hint] of cases) {
    test(`${name}: ${query}`, () => {
      assert.throws(
        () => compileQuery(query, BASE),
        (e: unknown) => {
          assert.ok(e instanceof QuerySyntaxError);
          assert.ok(e.hint.startsWith(hint), `hint was: ${e.hint}`);
          assert.equal(e.position, position, `position for hint ${e.hint}`);
          return true;
        },
      );
    });
  }

  test('bad options are a 400 input error', () => {
    assert.throws(() => compileQuery('a', { ...BASE, limit: Number.NaN }), { code: 'query_options', status: 400 });
    assert.throws(() => compileQuery('a', { ...BASE, from: Number.POSITIVE_INFINITY }), { code: 'query_options' });
    assert.throws(() => compileQuery('a', { ...BASE, to: 1e20 }), {
      code: 'query_options',
      message: /^to \d+ is out of range/,
    });
  });
});

describe('field names that are members of Object.prototype are plain field names', () => {
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
    test(`${name}:x matches no event, ${name}:* neither, and the SQL names the field as a parameter`, async () => {
      const compiled = compileQuery(`${name}:x`, BASE);
      assert.ok(!compiled.sql.includes('undefined'), compiled.sql);
      assert.ok(Object.values(compiled.params).includes(name), 'the field is a map key parameter');
      assert.deepEqual(await search(`${name}:x`), { ids: [], count: 0 });
      assert.deepEqual(await search(`${name}:*`), { ids: [], count: 0 });
      // No event has the field: a group-by on it has no group (as any missing field).
      assert.deepEqual(await table(`* | stats count by ${name}`), []);
    });
  }
});

describe('injection attempts are matched literally or rejected, never executed', () => {
  const literal: [string, string[]][] = [
    ['user.name:"bob`); DROP TABLE vigil.events; --"', ['e07']],
    ["url.query:\"id=1' OR '1'='1\"", ['e07']],
    ['"{p0:String}"', ['e07']],
    ['"\' OR 1=1 --"', []],
    ["user.name:bob'\\);DROP", []],
    ['`user`.name:bob', []],
    ['user.name:x\\)\\;--', []],
    ['"; SELECT 1; --" OR x', []],
  ];
  for (const [query, expected] of literal) {
    test(`literal: ${query}`, async () => {
      const compiled = compileQuery(query, BASE);
      for (const payload of ['DROP', "'1'='1", '`user`', "');", ';--', 'SELECT 1']) {
        if (query.includes(payload)) assert.ok(!compiled.sql.includes(payload), `${payload} reached the SQL`);
      }
      assertOnlyOwnLiterals(compiled.sql);
      assert.deepEqual(sorted((await search(query)).ids), expected);
    });
  }

  const rejected = [
    'user.name:{p0:String}',
    "user.name:bob');DROP",
    '* | stats count as `x`',
    '* | stats count by user.name) --',
    '* | sort -ts; DROP TABLE vigil.events',
    '* | stats count by `fields`',
    'a:b) OR (1=1',
    '* | fields a, b --',
    '* | stats count by user.name | where `count`>1',
  ];
  for (const query of rejected) {
    test(`rejected with 400: ${query}`, () => {
      assert.throws(
        () => compileQuery(query, BASE),
        (e: unknown) => e instanceof QuerySyntaxError && e.status === 400 && e.code === 'query_syntax',
      );
    });
  }

  test('the table is intact afterwards', async () => {
    const [row] = await rows<{ n: string }>(`SELECT count() AS n FROM ${EVENTS_TABLE}`);
    assert.equal(Number(row.n), EVENTS.length + 1);
  });
});

describe("a range's whole days are read without its time condition, the days at its ends with it", () => {
  const TABLE = 'vigil.whole_days';
  const DAY = 86_400_000;
  const D0 = Date.UTC(2024, 4, 10);
  // Events at each day's first and last millisecond, at noon, and one a millisecond before the first day.
  const TIMES = [
    -1,
    0,
    12 * 3_600_000,
    DAY - 1,
    DAY,
    DAY + 1,
    1.5 * DAY,
    2 * DAY - 1,
    2 * DAY,
    3 * DAY - 1,
    3 * DAY,
  ].map((t) => D0 + t);
  const onTable = (sql: string) => sql.replaceAll(`FROM ${EVENTS_TABLE} FINAL`, `FROM ${TABLE} FINAL`);

  before(async () => {
    await session.queryAsync(eventsTableDdl(3650, TABLE));
    const lines = TIMES.map((ts, i) =>
      JSON.stringify({
        ts,
        ingested: ts + 1,
        id: `w${i}`,
        content_hash: 'h',
        tenant: i === 5 ? 't2' : 't1',
        source: 'http',
        layout: 'json',
        host: i % 2 === 0 ? 'even' : 'odd',
        message: 'whole day test',
        raw: i % 3 === 0 ? 'needle in the day' : 'hay',
        parse_error: '',
        fields: { Channel: i % 2 === 0 ? 'even' : 'odd' },
      }),
    );
    await session.insert({ table: TABLE, values: Buffer.from(lines.join('\n')), format: 'JSONEachRow' });
  });

  const ranges: [string, number, number][] = [
    ['exact days', D0, D0 + 3 * DAY],
    ['ends inside days', D0 + 1, D0 + 3 * DAY - 1],
    ['from the last millisecond of a day to the first of another', D0 - 1, D0 + 2 * DAY + 1],
    ['one whole day between two partial ones', D0 + 12 * 3_600_000, D0 + 2.5 * DAY],
    ['within one day (no whole day)', D0 + 1, D0 + DAY - 1],
    ['one exact day', D0 + DAY, D0 + 2 * DAY],
    ['an empty range', D0 + DAY, D0 + DAY],
  ];
  for (const [name, from, to] of ranges) {
    test(`${name}: counts and groups match the events in [from, to)`, async () => {
      const opts: CompileOptions = { ...BASE, from, to, tenants: ['t1'] };
      const inRange = TIMES.map((ts, i) => ({ ts, i })).filter(({ ts, i }) => ts >= from && ts < to && i !== 5);
      const count = compileQuery('* | stats count()', opts);
      assert.equal(count.kind, 'table');
      assert.deepEqual(await rows(onTable(count.sql), count.params), [{ count: inRange.length }]);
      const byChannel = compileQuery('* | stats count() by Channel', opts);
      const expected = ['even', 'odd']
        .map((c) => ({ Channel: c, count: inRange.filter(({ i }) => (i % 2 === 0 ? 'even' : 'odd') === c).length }))
        .filter((r) => r.count > 0);
      assert.deepEqual(await rows(onTable(byChannel.sql), byChannel.params), expected);
      const token = compileQuery('needle', opts);
      if (token.kind !== 'events') throw new Error('an events query');
      const needles = inRange.filter(({ i }) => i % 3 === 0);
      assert.deepEqual(await rows(onTable(token.countSql), token.params), [{ count: needles.length }]);
      const listed = await rows<{ id: string }>(onTable(token.sql), token.params);
      assert.deepEqual(listed.map((r) => r.id).sort(), needles.map(({ i }) => `w${i}`).sort());
      const whole = Math.floor(to / DAY) - Math.ceil(from / DAY) >= 1;
      assert.equal(count.sql.includes('UNION ALL'), whole, 'split exactly when a whole day is in the range');
      assert.equal(token.sql.includes('UNION ALL'), false, 'events themselves are never split');
    });
  }

  test('without both ends of the range, or over the days a Date cannot tell apart, nothing is split', () => {
    for (const opts of [
      { ...BASE, from: undefined, to: D0 },
      { ...BASE, from: D0, to: undefined },
      { ...BASE, from: -5 * DAY, to: 5 * DAY },
      { ...BASE, from: Date.UTC(2149, 0, 1), to: Date.UTC(2150, 0, 1) },
    ]) {
      const compiled = compileQuery('* | stats count()', opts);
      assert.equal(compiled.sql.includes('UNION ALL'), false, JSON.stringify(opts));
    }
  });
});
