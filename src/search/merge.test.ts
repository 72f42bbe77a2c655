import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Session } from 'chdb';
import fc from 'fast-check';
import { fuzzParams } from '../../test/harness/fuzz.ts';
import { runSearch } from './local.ts';
import { EVENTS_TABLE, eventsTableDdl } from '../store/schema.ts';
import { type SearchScope, sessionSearchScope } from '../store/index.ts';
import type { SearchAnswer } from './answer.ts';
import { mergeShards, planSearch, runShard, TooManyGroupsError } from './merge.ts';

// One table holds every event; shard s of k is the events whose murmurHash3_32(id) % k = s, which is how a
// shard's SQL selects its events on a node that holds several shards. So the shards are disjoint and
// together hold every event, and the single-node answer is the same table searched whole.

const T0 = Date.UTC(2024, 0, 15, 12, 0, 0);
const RANGE = { from: T0 - 3600e3, to: T0 + 3600e3 };
const OPTS = { ...RANGE, limit: 100, tenants: ['t1'], now: T0 + 600e3 };
const USERS = ['bob', 'alice', 'Bob', 'carol', 'dave', 'eve', 'mallory', 'trent', 'svc_backup', 'SYSTEM'];
const HOSTS = ['web-01', 'web-02', 'db-01', 'DC-01', ''];
const CATEGORIES = ['authentication', 'network', 'process', 'file'];
const N = 400;

const dir = mkdtempSync(join(tmpdir(), 'vigil-fanout-merge-'));
let session: Session;
let scope: SearchScope;

/** A small deterministic generator, so a failure replays. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function eventsJson(): string {
  const r = rng(42);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const lines: string[] = [];
  for (let i = 0; i < N; i++) {
    const fields: Record<string, string> = {};
    if (r() < 0.9) fields['user.name'] = pick(USERS);
    if (r() < 0.8) fields.bytes = String(Math.floor(r() * 5000));
    else if (r() < 0.5) fields.bytes = 'n/a';
    const cats = CATEGORIES.filter(() => r() < 0.4);
    if (cats.length > 0) fields['event.category'] = cats.length === 1 ? cats[0] : JSON.stringify(cats);
    if (r() < 0.7) fields.tag = pick(['red', 'green', 'blue', 'RED']);
    if (r() < 0.5) fields['source.ip'] = `10.0.${Math.floor(r() * 3)}.${Math.floor(r() * 20)}`;
    const user = fields['user.name'] ?? 'nobody';
    lines.push(
      JSON.stringify({
        // Distinct times, so "newest first" has no ties and the single-node order is one order.
        ts: T0 - 3000e3 + i * 7001 + Math.floor(r() * 7000),
        ingested: T0,
        id: `ev-${i}-${Math.floor(r() * 1e6)}`,
        content_hash: '',
        tenant: r() < 0.9 ? 't1' : 't2',
        source: 'http',
        layout: 'json',
        host: pick(HOSTS),
        message: `login ${user}`,
        raw: `${pick(['Failed', 'Accepted'])} password for ${user} from host ${i % 13}`,
        parse_error: '',
        fields,
      }),
    );
  }
  return lines.join('\n');
}

before(async () => {
  session = new Session(dir);
  await session.queryAsync('CREATE DATABASE IF NOT EXISTS vigil');
  await session.queryAsync(eventsTableDdl(3650));
  await session.insert({ table: EVENTS_TABLE, values: Buffer.from(eventsJson()), format: 'JSONEachRow' });
  scope = sessionSearchScope(session, dir);
});

after(() => {
  session?.close();
  rmSync(dir, { recursive: true, force: true });
});

function strip(answer: SearchAnswer): Omit<SearchAnswer, 'took_ms'> {
  const { took_ms: _, ...rest } = answer;
  return rest;
}

async function single(q: string, opts = OPTS): Promise<Omit<SearchAnswer, 'took_ms'>> {
  return strip(await runSearch(scope, q, opts));
}

/** The answer over `k` shards: each shard's part run on its events, the parts merged. */
async function sharded(q: string, k: number, opts = OPTS): Promise<Omit<SearchAnswer, 'took_ms'>> {
  const plan = planSearch(q, opts);
  const results = [];
  for (let s = 0; s < k; s++) results.push(await runShard(scope, plan, s, k));
  return strip(await mergeShards(scope, plan, results, performance.now()));
}

const QUERIES = [
  '*',
  'user.name:bob',
  'Failed',
  'Failed | head 5',
  '* | sort bytes',
  '* | sort -bytes | head 7',
  '* | sort user.name, -bytes',
  'event.category:network | fields user.name, bytes',
  '* | head 30 | sort user.name | head 4',
  '* | head 20 | where user.name:bob',
  '| stats count',
  '| stats count() by user.name',
  '| stats count, dc(user.name), dc(source.ip) as ips, avg(bytes), sum(bytes), min(bytes), max(bytes)',
  '| stats count by event.category',
  '| stats dc(user.name) as users, avg(bytes) as avg by event.category, host.name',
  '| stats count(bytes), count(tag), values(tag) by user.name',
  '| stats min(@timestamp) as first, max(@timestamp) as last by host.name',
  '| stats count by @timestamp | sort -count, @timestamp | head 3',
  '| stats count as n by tag | where n>10 | sort -n, tag',
  '| stats dc(source.ip) as ips by user.name | sort -ips, user.name | head 3',
  '| stats avg(bytes) as a by user.name | fields a, user.name',
  'Failed | stats count by user.name, tag',
  'user.name:nobody_at_all | stats count',
  'user.name:nobody_at_all | stats count by user.name',
  '| timechart span=10m count',
  '| timechart span=5m count, dc(user.name), avg(bytes) by host.name',
  '| timechart count by event.category',
  '* | head 50 | stats count, dc(user.name) by tag',
  '* | sort bytes | head 40 | stats avg(bytes) as a, max(bytes)',
];

describe('a search split over k shards and merged answers exactly what one node answers', () => {
  for (const q of QUERIES) {
    test(q, async () => {
      const want = await single(q);
      for (const k of [1, 2, 3, 5, 8]) assert.deepEqual(await sharded(q, k), want, `k=${k}`);
    });
  }

  test('dc() counts a value seen on several shards once, and avg() is over every shard', async () => {
    const want = await single('| stats dc(user.name) as u, avg(bytes) as a, count(bytes) as c');
    const got = await sharded('| stats dc(user.name) as u, avg(bytes) as a, count(bytes) as c', 4);
    assert.deepEqual(got, want);
    // Every shard sees most users (400 events, 10 names), so a sum of per-shard counts would be about 4x.
    const perShard = [];
    const plan = planSearch('| stats dc(user.name) as u', OPTS);
    for (let s = 0; s < 4; s++) {
      const part = await mergeShards(scope, plan, [await runShard(scope, plan, s, 4)], 0);
      perShard.push((part as { rows: unknown[][] }).rows[0][0] as number);
    }
    const whole = (want as { rows: unknown[][] }).rows[0][0] as number;
    assert.ok(perShard.reduce((a, b) => a + b, 0) > whole, `${perShard} against ${whole}`);
  });

  test('the shards are disjoint and together hold every event', async () => {
    const all = (await single('* | stats count')) as { rows: unknown[][] };
    let sum = 0;
    const plan = planSearch('*', OPTS);
    for (let s = 0; s < 5; s++) sum += (await runShard(scope, plan, s, 5)).count ?? 0;
    assert.equal(sum, all.rows[0][0]);
  });

  test('a shard with more groups than allowed fails the search, never answers fewer groups', async () => {
    const plan = { ...planSearch('| stats count by event.id', OPTS), maxShardRows: 10 };
    await assert.rejects(runShard(scope, plan, 0, 2), TooManyGroupsError);
  });
});

describe('property: random stats and event queries merge to the single-node answer', () => {
  const field = fc.constantFrom('user.name', 'host.name', 'tag', 'event.category', 'source.ip', 'bytes');
  const agg = fc.oneof(
    fc.constant('count'),
    field.map((f) => `count(${f})`),
    field.map((f) => `dc(${f})`),
    fc.constantFrom('avg(bytes)', 'sum(bytes)', 'min(bytes)', 'max(bytes)', 'min(@timestamp)', 'values(tag)'),
  );
  const filter = fc.constantFrom('', 'Failed', 'user.name:bob', 'NOT tag:red', 'bytes>1000', 'event.category:network');
  const statsQuery = fc
    .tuple(
      filter,
      fc.uniqueArray(agg, { minLength: 1, maxLength: 4 }),
      fc.uniqueArray(field, { maxLength: 2 }),
      fc.boolean(),
      fc.integer({ min: 1, max: 5 }),
    )
    .map(([f, aggs, by, timechart, head]) => {
      const named = aggs.map((a, i) => `${a} as a${i}`).join(', ');
      const group = by.length > 0 ? ` by ${by.join(', ')}` : '';
      if (timechart) return `${f} | timechart span=15m ${named}${group.split(',')[0]}`;
      // Sorted on the first aggregate, ties broken by every key: one order, whatever the shards.
      return `${f} | stats ${named}${group} | sort -a0${by.map((b) => `, ${b}`).join('')} | head ${head}`;
    });
  const eventsQuery = fc
    .tuple(
      filter,
      fc.option(fc.constantFrom('sort bytes', 'sort -user.name', 'head 15 | sort tag')),
      fc.integer({ min: 1, max: 60 }),
    )
    .map(([f, p, n]) => [f || '*', p, `head ${n}`].filter(Boolean).join(' | '));

  test('stats and timechart', async () => {
    await fc.assert(
      fc.asyncProperty(statsQuery, fc.integer({ min: 2, max: 6 }), async (q, k) => {
        assert.deepEqual(await sharded(q, k), await single(q), `${q} over ${k} shards`);
      }),
      fuzzParams(40),
    );
  });

  test('events', async () => {
    await fc.assert(
      fc.asyncProperty(eventsQuery, fc.integer({ min: 2, max: 6 }), async (q, k) => {
        assert.deepEqual(await sharded(q, k), await single(q), `${q} over ${k} shards`);
      }),
      fuzzParams(40),
    );
  });
});
