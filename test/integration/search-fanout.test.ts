/**
 * Searches that fan out over shards (issue 15): a coordinating node's API answers a search by asking one
 * replica of each shard over HTTP with the cluster peer token, and merges. Four API servers play four store
 * nodes, each holding two of four shards (R = 2): chdb binds one engine per process, so they share one
 * store, and a shard call selects the shard's own events (murmurHash3_32(id) % S), disjoint subsets that
 * together are every event. The single-node answer is the same store searched whole.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { httpConfigSchema } from '../../src/api/config.ts';
import { runSearch, searchRoutes, shardSearchRoutes } from '../../src/api/routes/search.ts';
import { type ApiServer, createApiServer } from '../../src/api/server.ts';
import { VigilError } from '../../src/lib/errors.ts';
import type { NormalizedEvent } from '../../src/lib/event.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import { searchConfigSchema } from '../../src/search/config.ts';
import { createSearchCoordinator, type SearchCoordinator, type ShardMapView } from '../../src/search/coordinator.ts';
import { createHttpShardTransport, peerTokenCheck } from '../../src/search/transport.ts';
import { type EventStore, type SearchScope, scanEvents } from '../../src/store/index.ts';
import { openTestStore } from '../harness/event-store.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'vigil-fanout-'));
const PEER_TOKEN = 'peer-token-0123456789abcdef0123456789';
const USER_TOKEN = 'user-token-0123456789abcdef';
const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);
const N = 600;
const S = 4;

let store: EventStore;
/**
 * Per node: a delay before it answers a shard call, whether it fails them, shards it no longer serves (its
 * map is newer than the coordinator's) and shards whose drop begins while a part is read.
 */
const faults: Record<
  string,
  {
    delayMs: number;
    fail: boolean;
    notServed: Set<number>;
    dropping: Set<number>;
    /** Shards this node claims to hold only, and whether the claim still holds once the part is read. */
    sole: Map<number, boolean>;
  }
> = {};
const nodes: { id: string; server: ApiServer; url: string }[] = [];
let coordinator: ApiServer;
let coordinatorUrl = '';
let coordinatorMetrics: Registry;
let fanout: SearchCoordinator;
const hedgeAfterMs = 300;

const auth = {
  authenticate(header: string | undefined) {
    if (header !== `Bearer ${USER_TOKEN}`) throw new VigilError('unauthorized', 'bad token', { status: 401 });
    return { name: 'analyst', role: 'analyst' as const, tenants: ['t1'] };
  },
};

/** Shard s is on nodes s and s+1 (mod 4): every node holds two shards. */
const shardMap: ShardMapView = {
  revision: 7,
  shards: S,
  assignment: Array.from({ length: S }, (_, shard) => ({
    shard,
    replicas: [0, 1].map((k) => ({ node: `n${(shard + k) % S}`, state: 'serving' as const, lag_messages: k })),
  })),
};

function events(): NormalizedEvent[] {
  const users = ['bob', 'alice', 'carol', 'dave', 'eve', 'mallory'];
  return Array.from({ length: N }, (_, i) => ({
    id: `fan-${i}`,
    timestamp: T0 - (N - i) * 5000,
    ingested: T0,
    tenant: i % 10 === 0 ? 't2' : 't1',
    source: 'http',
    layout: 'json' as const,
    raw: `${i % 3 === 0 ? 'Failed' : 'Accepted'} password for ${users[i % users.length]} from 10.0.0.${i % 17}`,
    fields: {
      'user.name': users[(i * 7) % users.length],
      'source.ip': `10.0.0.${i % 17}`,
      bytes: (i * 37) % 1000,
      'event.category': i % 4 === 0 ? ['authentication', 'network'] : 'authentication',
      'host.name': `h${i % 5}`,
    },
  }));
}

/** The store as one node sees it: its shard calls wait or fail as the test injects. */
function faulty(id: string): EventStore {
  return {
    ...store,
    search: async (user, fn, opts) => {
      const f = faults[id];
      if (f?.delayMs) await new Promise((r) => setTimeout(r, f.delayMs));
      if (f?.fail) throw new VigilError('store_query_failed', 'the query failed: disk error', { status: 500 });
      return store.search(user, fn, opts);
    },
  } as EventStore;
}

before(async () => {
  store = openTestStore(dataDir);
  await store.start();
  await store.write(events());
  for (let i = 0; i < S; i++) {
    const id = `n${i}`;
    faults[id] = { delayMs: 0, fail: false, notServed: new Set(), dropping: new Set(), sole: new Map() };
    const server = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0' }), {
      auth,
      metrics: new Registry(),
      logger: silentLogger,
      peerAuth: peerTokenCheck(PEER_TOKEN),
      routes: [
        shardSearchRoutes({
          store: faulty(id),
          replica: () => ({ node: id, lag_messages: i }),
          maxLimit: 10000,
          serves: (shard) => (faults[id].notServed.has(shard) ? undefined : () => !faults[id].dropping.has(shard)),
          // Claims its rows are of the shard only; false after the read: a shard was added meanwhile.
          holdsOnly: (shard) => {
            const still = faults[id].sole.get(shard);
            return still === undefined ? undefined : () => still;
          },
        }),
      ],
    });
    await server.start();
    nodes.push({ id, server, url: `http://127.0.0.1:${server.address().port}` });
  }
  coordinatorMetrics = new Registry();
  fanout = createSearchCoordinator(
    searchConfigSchema.parse({ shard_call_timeout_ms: 5000, hedge_after_ms: hedgeAfterMs }),
    {
      nodeId: 'coordinator',
      shardMap: () => shardMap,
      transport: createHttpShardTransport({
        addressOf: (node) => nodes.find((n) => n.id === node)?.url,
        peerToken: () => PEER_TOKEN,
      }),
      metrics: coordinatorMetrics,
    },
  );
  coordinator = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0' }), {
    auth,
    metrics: coordinatorMetrics,
    logger: silentLogger,
    peerAuth: peerTokenCheck(PEER_TOKEN),
    routes: [searchRoutes({ store, metrics: coordinatorMetrics, maxLimit: 10000, coordinator: fanout })],
  });
  await coordinator.start();
  coordinatorUrl = `http://127.0.0.1:${coordinator.address().port}`;
});

after(async () => {
  for (const s of [coordinator, ...nodes.map((n) => n.server)]) await s?.stop(Date.now() + 5000);
  await store?.stop(Date.now() + 5000);
  rmSync(dataDir, { recursive: true, force: true });
});

const RANGE = { from: T0 - 3600e3 * 2, to: T0 + 1 };

async function fanned(q: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const params = new URLSearchParams({ q, from: String(RANGE.from), to: String(RANGE.to), limit: '50' });
  const res = await fetch(`${coordinatorUrl}/api/v1/search?${params}`, {
    headers: { authorization: `Bearer ${USER_TOKEN}` },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function single(q: string): Promise<Record<string, unknown>> {
  const answer = await store.search('analyst', (scope) =>
    runSearch(scope, q, { ...RANGE, limit: 50, tenants: ['t1'] }),
  );
  const { took_ms: _, ...rest } = answer;
  // As a client reads it (events are null-prototype objects in the process).
  return JSON.parse(JSON.stringify(rest));
}

function withoutFanout(body: Record<string, unknown>): Record<string, unknown> {
  const { took_ms: _t, shards: _s, partial: _p, missing_shards: _m, ...rest } = body;
  return rest;
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await coordinatorMetrics.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

describe('a fanned-out search', () => {
  const queries = [
    '*',
    'Failed',
    'user.name:bob | sort -bytes',
    '* | head 7',
    '* | stats count',
    '* | stats count, dc(user.name) as users, dc(source.ip) as ips, avg(bytes), sum(bytes), min(bytes), max(bytes) by host.name',
    '* | stats count by event.category | sort -count',
    'Failed | stats dc(source.ip) as ips by user.name | sort -ips, user.name | head 3',
    '* | timechart span=10m count, avg(bytes)',
    '* | head 100 | stats count by user.name',
  ];
  for (const q of queries) {
    test(`answers what one node holding every event answers: ${q}`, async () => {
      const { status, body } = await fanned(q);
      assert.equal(status, 200, JSON.stringify(body));
      assert.deepEqual(withoutFanout(body), await single(q));
      assert.equal(body.partial, undefined);
      const shards = body.shards as { shard: number; node: string; lag_messages: number }[];
      assert.deepEqual(
        shards.map((s) => s.shard),
        [0, 1, 2, 3],
      );
      // The first replica of each shard (least behind) answered, with its lag on the shard from the map.
      for (const s of shards) assert.deepEqual(s, { shard: s.shard, node: `n${s.shard}`, lag_messages: 0 });
    });
  }

  test('the total is the number of matching events whether the page is full (counted) or not (its length)', async () => {
    const counted = async (q: string) => {
      const t = (await single(`${q} | stats count`)) as { rows: number[][] };
      return t.rows[0][0];
    };
    const totals = new Set<string>();
    for (const q of [
      '*',
      'Failed',
      'user.name:bob',
      'user.name:bob bytes:>900',
      '* | head 500 | where user.name:bob',
    ]) {
      const n = await counted(q);
      totals.add(n > 50 ? 'full' : n > 0 ? 'short' : 'none');
      const one = (await single(q)) as { total: number; events: unknown[] };
      assert.equal(one.total, n, `${q}: single node`);
      assert.equal(one.events.length, Math.min(n, 50));
      const { status, body } = await fanned(q);
      assert.equal(status, 200);
      assert.equal(body.total, n, `${q}: fanned out`);
    }
    assert.deepEqual([...totals].sort(), ['full', 'short'], 'both kinds of page were tried');
  });

  test('a query error is the client error of a single node, never a partial answer', async () => {
    const { status, body } = await fanned('user.name:(bob');
    assert.equal(status, 400);
    assert.equal((body.error as { code: string }).code, 'query_syntax');
  });

  test('the shard route takes the peer token only, and the peer token opens no client route', async () => {
    const shardCall = (token: string) =>
      fetch(`${nodes[0].url}/internal/v1/search/shard`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          q: '*',
          from: 0,
          to: 1,
          limit: 1,
          maxLimit: 1,
          tenants: ['t1'],
          now: 0,
          user: 'x',
          shard: 0,
          shards: 4,
        }),
      });
    assert.equal((await shardCall(USER_TOKEN)).status, 401);
    assert.equal((await shardCall('wrong')).status, 401);
    assert.equal((await shardCall(PEER_TOKEN)).status, 200);
    const asClient = await fetch(`${coordinatorUrl}/api/v1/search?q=*`, {
      headers: { authorization: `Bearer ${PEER_TOKEN}` },
    });
    assert.equal(asClient.status, 401);
    const sqlLike = await fetch(`${nodes[0].url}/internal/v1/search/shard`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PEER_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ sql: 'SELECT 1', shard: 0, shards: 4 }),
    });
    assert.equal(sqlLike.status, 400);
  });

  test('the gathered answers are held within search.max_gathered_bytes: past it the search is refused', async () => {
    const small = createSearchCoordinator(searchConfigSchema.parse({ max_gathered_bytes: 4096 }), {
      nodeId: 'coordinator',
      shardMap: () => shardMap,
      transport: createHttpShardTransport({
        addressOf: (node) => nodes.find((n) => n.id === node)?.url,
        peerToken: () => PEER_TOKEN,
      }),
      metrics: new Registry(),
    });
    const opts = { ...RANGE, limit: 50, tenants: ['t1'], maxLimit: 10000 };
    const merge = <T>(fn: (scope: SearchScope) => Promise<T>) => store.search('analyst', fn);
    // 50 whole events from each of 4 shards are far more than 4 KiB; a count's states are a few bytes.
    await assert.rejects(small.search('analyst', '*', opts, merge), (err: VigilError) => {
      assert.equal(err.code, 'search_too_large');
      assert.equal(err.status, 400);
      return true;
    });
    const counted = await small.search('analyst', '* | stats count', opts, merge);
    assert.deepEqual(
      (counted as { rows: unknown[][] }).rows,
      ((await single('* | stats count')) as { rows: unknown[][] }).rows,
    );
  });

  test('a failing replica is replaced by the next one, and the answer stays complete', async () => {
    faults.n1.fail = true;
    try {
      const before = await metric('vigil_search_shard_calls_total', { outcome: 'failed' });
      const { status, body } = await fanned('* | stats count');
      assert.equal(status, 200);
      assert.deepEqual(withoutFanout(body), await single('* | stats count'));
      const shard1 = (body.shards as { shard: number; node: string }[]).find((s) => s.shard === 1);
      assert.equal(shard1?.node, 'n2');
      assert.equal(await metric('vigil_search_shard_calls_total', { outcome: 'failed' }), before + 1);
    } finally {
      faults.n1.fail = false;
    }
  });

  test('a replica that no longer serves a shard, or drops it while reading, refuses: the next one answers, exact', async () => {
    // The coordinator's map is older than n1's (n1 gave shard 1 away) and n2 begins dropping shard 2 while it
    // reads: answering from their rows could count fewer events, a wrong answer that is not partial.
    faults.n1.notServed.add(1);
    faults.n2.dropping.add(2);
    try {
      const before = await metric('vigil_search_shard_calls_total', { outcome: 'failed' });
      const { status, body } = await fanned('* | stats count');
      assert.equal(status, 200, JSON.stringify(body));
      assert.deepEqual(withoutFanout(body), await single('* | stats count'));
      assert.equal(body.partial, undefined);
      const by = new Map((body.shards as { shard: number; node: string }[]).map((s) => [s.shard, s.node]));
      assert.equal(by.get(1), 'n2');
      assert.equal(by.get(2), 'n3');
      assert.equal(await metric('vigil_search_shard_calls_total', { outcome: 'failed' }), before + 2);
      // The refusal itself: 503 shard_not_served; `stale_ok` (diagnostics) reads the rows held anyway.
      const call = (extra: Record<string, unknown>) =>
        fetch(`${nodes[1].url}/internal/v1/search/shard`, {
          method: 'POST',
          headers: { authorization: `Bearer ${PEER_TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            q: '*',
            ...RANGE,
            limit: 10,
            maxLimit: 10,
            tenants: ['t1'],
            now: T0,
            user: 'analyst',
            shard: 1,
            shards: S,
            ...extra,
          }),
        });
      const refused = await call({});
      assert.equal(refused.status, 503);
      assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'shard_not_served');
      const stale = await call({ stale_ok: true });
      assert.equal(stale.status, 200);
      assert.equal(((await stale.json()) as { rows: unknown[] }).rows.length, 10);
    } finally {
      faults.n1.notServed.clear();
      faults.n2.dropping.clear();
    }
  });

  test('a part read without the shard filter while a shard was added is read again with it: exact', async () => {
    // Every node here holds every shard's rows (one shared store): a part read without the filter and used
    // would count all of them for shard 0.
    faults.n0.sole.set(0, false);
    try {
      for (const q of ['* | stats count', 'Failed']) {
        const { status, body } = await fanned(q);
        assert.equal(status, 200, JSON.stringify(body));
        assert.deepEqual(withoutFanout(body), await single(q), q);
        assert.equal((body.shards as { shard: number; node: string }[])[0].node, 'n0');
      }
    } finally {
      faults.n0.sole.clear();
    }
  });

  test('a part whose node holds only that shard is answered without the filter (here a false claim shows it)', async () => {
    // The shared store holds every shard's rows: the unfiltered part of shard 0 counts all of them, so the
    // total passes the single node's. Proves the route uses the unfiltered read when the claim holds.
    faults.n0.sole.set(0, true);
    try {
      const { status, body } = await fanned('* | stats count');
      assert.equal(status, 200, JSON.stringify(body));
      const count = (b: Record<string, unknown>) => Number((b.rows as unknown[][])[0][0]);
      assert.ok(count(body) > count(await single('* | stats count')), JSON.stringify(withoutFanout(body)));
    } finally {
      faults.n0.sole.clear();
    }
  });

  test('a slow replica gets a hedged request to the next one, which answers', async () => {
    faults.n0.delayMs = 4000;
    try {
      const hedgesBefore = await metric('vigil_search_shard_hedges_total');
      const started = Date.now();
      const { status, body } = await fanned('* | stats dc(user.name) as u, count');
      const took = Date.now() - started;
      assert.equal(status, 200);
      assert.deepEqual(withoutFanout(body), await single('* | stats dc(user.name) as u, count'));
      const shard0 = (body.shards as { shard: number; node: string; lag_messages: number }[]).find(
        (s) => s.shard === 0,
      );
      assert.equal(shard0?.node, 'n1', 'the hedge to the second replica answered');
      assert.equal(shard0?.lag_messages, 1);
      assert.ok((await metric('vigil_search_shard_hedges_total')) > hedgesBefore);
      // Answered by the hedge well before the slow replica would have (generous: the machine is shared).
      assert.ok(took < 3500, `took ${took} ms`);
    } finally {
      faults.n0.delayMs = 0;
    }
  });

  test('a retro-hunt scan reads every shard and merges them in (ts, id) order, as a local scan reads', async () => {
    const range = { tenants: ['t1'], from: RANGE.from, to: RANGE.to, max: 100000 };
    const local: string[] = [];
    await store.search('analyst', async (scope) => {
      for await (const e of scanEvents(scope, range)) local.push(e.id);
    });
    const scan = fanout.scan('analyst', range);
    const merged: string[] = [];
    for await (const e of scan.events) merged.push(e.id);
    assert.equal(merged.length, N - N / 10);
    assert.deepEqual(merged, local);
    assert.deepEqual(scan.missing(), []);
    assert.deepEqual(
      scan.shards().map((s) => s.node),
      ['n0', 'n1', 'n2', 'n3'],
    );
    // `max` stops the scan.
    const first = fanout.scan('analyst', { ...range, max: 10 });
    const ten: string[] = [];
    for await (const e of first.events) ten.push(e.id);
    assert.deepEqual(ten, local.slice(0, 10));
  });

  test('with both replicas of a shard stopped the answer is partial and names the shard', async () => {
    const full = (await single('* | stats count')) as { rows: number[][] };
    // Shard 2 is on n2 and n3; shards 1 and 3 keep a replica (n1, n0).
    for (const n of nodes.filter((x) => x.id === 'n2' || x.id === 'n3')) await n.server.stop(Date.now() + 5000);
    const { status, body } = await fanned('* | stats count');
    assert.equal(status, 200);
    assert.equal(body.partial, true);
    assert.deepEqual(body.missing_shards, [2]);
    const shards = body.shards as { shard: number; node: string }[];
    assert.deepEqual(
      shards.map((s) => [s.shard, s.node]),
      [
        [0, 'n0'],
        [1, 'n1'],
        [3, 'n0'],
      ],
    );
    const count = (body.rows as number[][])[0][0];
    assert.ok(count < full.rows[0][0] && count > 0, `${count} of ${full.rows[0][0]}`);
    const events = await fanned('*');
    assert.equal(events.body.partial, true);
    assert.deepEqual(events.body.missing_shards, [2]);
    assert.ok((events.body.total as number) < ((await single('*')) as { total: number }).total);
    assert.ok((await metric('vigil_search_partial_total')) >= 2);
    // A retro-hunt's scan goes on without the shard, and names it.
    const scan = fanout.scan('analyst', { tenants: ['t1'], from: RANGE.from, to: RANGE.to, max: 100000 });
    let read = 0;
    for await (const _ of scan.events) read++;
    assert.deepEqual(scan.missing(), [2]);
    assert.ok(read > 0 && read < N - N / 10, `${read} events`);
  });
});
