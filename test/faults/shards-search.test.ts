/**
 * Searches over a sharded 3-node dev cluster (S=4, R=2): every node answers complete and exact searches
 * (counts, distinct counts and averages by group, events with their total), fanned out over the shards;
 * with two nodes killed, the survivor answers `partial: true` and names exactly the shards it cannot reach
 * (those of which it holds no replica). The grace period is long so that the map stays as it was.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ShardAssignment } from '../../src/cluster/index.ts';
import { startDevCluster, type TestDevCluster } from '../harness/dev-cluster.ts';

const S = 4;
const N = 400;
const RUN = `fan${Date.now().toString(36)}`;
let dc: TestDevCluster;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface SearchBody {
  rows?: unknown[][];
  events?: unknown[];
  total?: number;
  shards?: { shard: number }[];
  partial?: boolean;
  missing_shards?: number[];
}

before(
  async () => {
    dc = await startDevCluster({
      nodes: 3,
      vigilConfig: { store: { shards: S, replicas: 2, shard_grace_ms: 600000 } },
    });
  },
  { timeout: 240000 },
);

after(async () => {
  await dc?.down({ hard: true });
});

async function search(node: string, q: string): Promise<{ status: number; body: SearchBody }> {
  const url = dc.nodes.find((n) => n.name === node)!.url;
  const params = new URLSearchParams({ q, from: 'now-6h', to: 'now+1h', limit: '1000' });
  const res = await fetch(`${url}/api/v1/search?${params}`, {
    headers: { authorization: `Bearer ${dc.token}` },
    signal: AbortSignal.timeout(90000),
  });
  return { status: res.status, body: (await res.json()) as SearchBody };
}

test('a sharded cluster answers complete, exact searches from any node; two nodes down: partial, naming shards', {
  timeout: 400000,
}, async () => {
  for (const deadline = Date.now() + 120000; ; ) {
    const st = await dc.api('vigil-1', 'GET', '/admin/cluster/status');
    const shards = st.body?.shards as ShardAssignment[] | undefined;
    if (
      Array.isArray(shards) &&
      shards.length === S &&
      shards.every((a) => a.replicas.filter((r) => r.state === 'serving').length === 2)
    )
      break;
    assert.ok(Date.now() < deadline, `map not settled: ${JSON.stringify(shards)}`);
    await sleep(1000);
  }
  const users = ['bob', 'alice', 'carol', 'dave', 'eve'];
  const want = new Map<unknown, unknown>();
  const lines = Array.from({ length: N }, (_, i) => {
    const u = users[(i * 7) % users.length];
    want.set(u, ((want.get(u) as number | undefined) ?? 0) + 1);
    return JSON.stringify({
      'event.id': `${RUN}-${i}`,
      '@timestamp': new Date(Date.now() - i * 1000).toISOString(),
      'user.name': u,
      run: RUN,
      bytes: i,
    });
  });
  const ing = await dc.api('vigil-2', 'POST', '/api/v1/ingest', lines.join('\n'));
  assert.equal(ing.status, 200, JSON.stringify(ing.body));
  let last: { status: number; body: SearchBody };
  for (const deadline = Date.now() + 90000; ; ) {
    last = await search('vigil-1', `run:${RUN} | stats count`);
    if (last.status === 200 && last.body.rows?.[0]?.[0] === N) break;
    assert.ok(Date.now() < deadline, JSON.stringify(last.body));
    await sleep(1000);
  }
  assert.equal(last.body.shards?.length, S, 'every shard answered');
  assert.equal(last.body.partial, undefined);
  for (const node of ['vigil-1', 'vigil-2', 'vigil-3']) {
    const r = await search(node, `run:${RUN} | stats count() as n, dc(event.id) as ids, avg(bytes) as a by user.name`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const rows = r.body.rows ?? [];
    assert.deepEqual(new Map(rows.map((row) => [row[0], row[1]])), want, node);
    // Each event id is distinct: the distinct count equals the count in every group.
    for (const row of rows) assert.equal(row[2], row[1]);
    const ev = await search(node, `run:${RUN} | head 5`);
    assert.equal(ev.body.total, N);
    assert.equal(ev.body.events?.length, 5);
  }
  await dc.cluster.kill('vigil-2');
  await dc.cluster.kill('vigil-3');
  const p = await search('vigil-1', `run:${RUN} | stats count`);
  assert.equal(p.status, 200, JSON.stringify(p.body));
  const held = (p.body.shards ?? []).map((s) => s.shard);
  const st = await dc.api('vigil-1', 'GET', '/admin/cluster/status');
  const onlyOthers = (st.body.shards as ShardAssignment[])
    .filter((a) => !a.replicas.some((r) => r.node === 'vigil-1'))
    .map((a) => a.shard);
  assert.deepEqual(p.body.missing_shards ?? [], onlyOthers);
  if (onlyOthers.length > 0) {
    assert.equal(p.body.partial, true);
    assert.ok(Number(p.body.rows?.[0]?.[0]) < N);
  }
  assert.equal(held.length + onlyOthers.length, S);
  process.stdout.write(
    `# shards-search: ${N} events exact from 3 nodes; 2 killed: held ${JSON.stringify(held)}, missing ${JSON.stringify(onlyOthers)}\n`,
  );
});
