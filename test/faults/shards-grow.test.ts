/**
 * A sharded cluster grows and shrinks under load (`vigil dev-cluster up --nodes 4 --shards 8 --replicas 2`,
 * then `vigil dev-cluster add`, then a maintenance drain). A fixed set of tagged events is ingested and
 * acknowledged first; then, under a small steady load:
 * - a fifth node joins: shards move to it until each node holds 3..4 of the 16 replicas, the old nodes keep
 *   fewer rows, and every one of the searches sent meanwhile (fanned out, from several nodes) counts exactly
 *   the tagged set, never partial;
 * - one node is drained with the maintenance API: its shards move first (every shard keeps at least R
 *   complete copies at every sample of the map), then it reports drained (200) and holds no shard and no row.
 * After each step every acknowledged event is stored exactly R times over the nodes and found once.
 * Printed and written to test/faults/results/shards-grow.json. Each phase's wait is bounded; the whole run
 * took 8 min at load average 40 to 70 on the shared 2-core machine (both tests passed), most of it in the
 * cluster's start, the id checks and the moves, all slowed by etcd calls timing out.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startDevCluster, type TestDevCluster } from '../harness/dev-cluster.ts';
import { sleep, waitFor } from '../harness/wait.ts';
import { BUCKET_SIZE, createLoadGen, type LoadGen } from './load.ts';
import { bucketQueries, copiesOver, createShardProbe, heldBy, type ShardProbe, wrongCopies } from './shard-probe.ts';

const STAMP = Date.now().toString(36);
const RUN = `grow${STAMP}`;
const TAG = `growtag${STAMP}`;
const S = 8;
const R = 2;
/** The tagged set: acknowledged before any move, counted by every search during the moves. */
const TAGGED = 600;
/** Events per second of the steady load: small, the point is placement and answers, not throughput. */
const RATE = 50;
const BATCH = 50;
/** Load buckets per id query. */
const PER_GROUP = 40;
const RESULTS = join(import.meta.dirname, 'results');

let dc: TestDevCluster;
/** Stops of the search and map loops still running (a test that times out leaves them to after()). */
const watches = new Set<() => void>();
let gen: LoadGen;
let probe: ShardProbe;
const T_START = Date.now();
/** A progress line: where a slow run spent its time. */
const progress = (what: string) =>
  process.stdout.write(`# shards-grow +${((Date.now() - T_START) / 1000).toFixed(1)} s: ${what}\n`);

/** What the test measured, written to results/shards-grow.json. */
const result: Record<string, unknown> = { shards: S, replicas: R, tagged: TAGGED, rate_offered: RATE };

/**
 * Query groups covering the tagged set and the load's acknowledged events: 40 buckets per query, about
 * 40,000 / S = 5,000 rows per shard call at most, half the row limit.
 */
function idGroups(): string[] {
  return [`test.run:${TAG}`, ...bucketQueries(RUN, Math.ceil(gen.acked() / BUCKET_SIZE) + 1, PER_GROUP)];
}

function ackedIds(): Set<string> {
  const out = new Set(Array.from({ length: gen.acked() }, (_, i) => gen.eventId(i)));
  for (let i = 0; i < TAGGED; i++) out.add(`${TAG}-${i}`);
  return out;
}

/**
 * Waits until every acknowledged id (load and tagged) is stored exactly R times over `nodes`; returns
 * each node's rows (all of them, and of the tagged set). Fails with a sample of the ids stored otherwise.
 */
async function checkExactlyR(nodes: string[]): Promise<{
  rows: Record<string, number>;
  tagged: Record<string, number>;
  events: number;
  lost: number;
  duplicated: number;
}> {
  const acked = ackedIds();
  let bad: string[] = [];
  const rows: Record<string, number> = {};
  const tagged: Record<string, number> = {};
  let lost = 0;
  let duplicated = 0;
  await waitFor(`every acknowledged event stored ${R} times`, 90000, async () => {
    // The nodes are read in parallel, each one shard call at a time.
    const lists = await Promise.all(nodes.map((node) => probe.idsOn(node, idGroups())));
    for (const [k, node] of nodes.entries()) {
      rows[node] = 0;
      tagged[node] = 0;
      for (const [id, n] of lists[k]) {
        rows[node] += n;
        if (id.startsWith(`${TAG}-`)) tagged[node] += n;
      }
    }
    const total = copiesOver(lists);
    bad = wrongCopies(acked, total, R);
    lost = [...acked].filter((id) => !total.has(id)).length;
    duplicated = [...acked].filter((id) => (total.get(id) ?? 0) > R).length;
    // Nothing stored that was not acknowledged (an unacknowledged request is retried until it is).
    const extra = [...total.keys()].filter((id) => !acked.has(id));
    bad.push(...extra.map((id) => `${id}(not acked)`));
    return bad.length === 0 ? true : undefined;
  }).catch((err) => {
    throw new Error(`${(err as Error).message}; ${bad.length} ids wrong, e.g. ${bad.slice(0, 10).join(' ')}`);
  });
  return { rows, tagged, events: acked.size, lost, duplicated };
}

interface SearchBody {
  rows?: unknown[][];
  partial?: boolean;
  missing_shards?: number[];
}

/** One client search of the tagged set: `[count, distinct ids]`, or what was wrong with the answer. */
async function searchTagged(node: string): Promise<{ ok: true } | { ok: false; why: string; partial: boolean }> {
  const url = dc.nodes.find((n) => n.name === node)!.url;
  const params = new URLSearchParams({
    q: `test.run:${TAG} | stats count() as n, dc(event.id) as ids`,
    from: 'now-6h',
    to: 'now+1h',
  });
  let status: number;
  let body: SearchBody;
  try {
    const res = await fetch(`${url}/api/v1/search?${params}`, {
      headers: { authorization: `Bearer ${dc.token}` },
      signal: AbortSignal.timeout(60000),
    });
    status = res.status;
    body = (await res.json()) as SearchBody;
  } catch (err) {
    return { ok: false, why: `${node}: ${String(err)}`, partial: false };
  }
  if (status !== 200) return { ok: false, why: `${node}: ${status} ${JSON.stringify(body)}`, partial: false };
  if (body.partial) {
    return { ok: false, why: `${node}: partial, missing ${JSON.stringify(body.missing_shards)}`, partial: true };
  }
  const [n, ids] = [Number(body.rows?.[0]?.[0]), Number(body.rows?.[0]?.[1])];
  if (n !== TAGGED || ids !== TAGGED) {
    return { ok: false, why: `${node}: counted ${n} events, ${ids} ids, not ${TAGGED}`, partial: false };
  }
  return { ok: true };
}

/**
 * Searches the tagged set over and over from `from()` (round robin) until stopped, and samples the map:
 * every answer is checked, and every sample must give each shard at least R complete (serving or draining)
 * replicas.
 */
function watchMove(from: () => string[]) {
  let running = true;
  watches.add(() => {
    running = false;
  });
  const stats = { searches: 0, wrong: 0, partial: 0, samples: 0, underReplicated: 0 };
  const failures: string[] = [];
  const searcher = async (offset: number) => {
    for (let i = offset; running; i++) {
      const nodes = from();
      const r = await searchTagged(nodes[i % nodes.length]);
      if (!running) return;
      stats.searches++;
      if (!r.ok) {
        if (r.partial) stats.partial++;
        else stats.wrong++;
        if (failures.length < 20) failures.push(r.why);
      }
      // Two searches in flight at most, and a pause: the machine is shared, the point is every answer.
      await sleep(100);
    }
  };
  const sampler = async () => {
    while (running) {
      const map = await probe.mapOf('vigil-1').catch(() => undefined);
      if (map) {
        stats.samples++;
        for (const a of map) {
          const complete = a.replicas.filter((r) => r.state !== 'catching_up').length;
          if (complete < R) {
            stats.underReplicated++;
            if (failures.length < 20) failures.push(`shard ${a.shard}: ${JSON.stringify(a.replicas)}`);
          }
        }
      }
      await sleep(300);
    }
  };
  const loops = [searcher(0), searcher(1), sampler()];
  return {
    stats,
    failures,
    async stop() {
      running = false;
      await Promise.all(loops);
      return stats;
    },
  };
}

before(
  async () => {
    // Ports are chosen free, then bound when each member starts: on a machine shared with other clusters one
    // may be taken in between (EADDRINUSE). That is the harness's race, not the product's: start again.
    for (let attempt = 1; ; attempt++) {
      try {
        dc = await startDevCluster({
          nodes: 4,
          // A long grace: no node dies here, and nothing must move but what the test asks.
          vigilConfig: { store: { shards: S, replicas: R, shard_grace_ms: 600000 } },
        });
        break;
      } catch (err) {
        if (attempt >= 3 || !String((err as Error).message).includes('EADDRINUSE')) throw err;
        progress(`a port was taken before its member started; starting the cluster again (${attempt})`);
      }
    }
    probe = createShardProbe(dc, { shards: S, replicas: R, user: 'shards-grow-test' });
    gen = createLoadGen({ targets: dc.nodes, token: dc.token, run: RUN, rate: RATE, batch: BATCH, concurrency: 3 });
  },
  { timeout: 400000 },
);

after(async () => {
  for (const stop of watches) stop();
  await gen?.close();
  await dc?.down({ hard: true });
  mkdirSync(RESULTS, { recursive: true });
  const json = JSON.stringify(result, null, 2);
  writeFileSync(join(RESULTS, 'shards-grow.json'), `${json}\n`);
  process.stdout.write(`# shards-grow: ${json}\n`);
});

test('a fifth node joins under load: shards move to it, old nodes keep fewer rows, every search exact', {
  timeout: 480000,
}, async () => {
  const four = dc.nodes.map((n) => n.name);
  await waitFor('a settled shard map on 4 nodes', 90000, () => probe.settledMap('vigil-1', four));
  progress('the map is settled on 4 nodes');
  gen.start();
  // The tagged set, acknowledged before anything moves.
  const tagged = Array.from({ length: TAGGED }, (_, i) =>
    JSON.stringify({
      '@timestamp': new Date().toISOString(),
      'event.id': `${TAG}-${i}`,
      'event.kind': 'event',
      message: `tagged event ${i}`,
      'test.run': TAG,
      'test.bucket': 0,
    }),
  );
  for (const [i, part] of [tagged.slice(0, TAGGED / 2), tagged.slice(TAGGED / 2)].entries()) {
    const res = await dc.api(four[i], 'POST', '/api/v1/ingest', `${part.join('\n')}\n`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.accepted, part.length);
  }
  // Stored before the move: every node's search counts the set.
  await waitFor('the tagged set searchable from every node', 60000, async () => {
    for (const n of four) {
      const r = await searchTagged(n);
      if (!r.ok) throw new Error(r.why);
    }
    return true;
  });
  progress('the tagged set is searchable from every node');
  await sleep(3000);
  assert.equal(await gen.pause(60000), 0, 'every request acknowledged');
  const before = await checkExactlyR(four);
  progress(`before the move: ${JSON.stringify(before)}`);

  gen.start();
  const watch = watchMove(() => dc.nodes.map((n) => n.name));
  // Kept live, so that a run cut short still reports what the searches saw.
  result.grow = { during: watch.stats, failures: watch.failures };
  const t0 = Date.now();
  const [added] = await dc.add(1);
  const readyMs = Date.now() - t0;
  assert.equal(added, 'vigil-5');
  progress(`${added} is ready after ${readyMs} ms`);
  gen.setInRotation(added, true);
  const five = dc.nodes.map((n) => n.name);
  const settled = await waitFor('the map settled on 5 nodes', 150000, () => probe.settledMap('vigil-1', five));
  const moveMs = Date.now() - t0;
  progress(`the map is settled on 5 nodes after ${moveMs} ms: ${JSON.stringify(watch.stats)}`);
  // Keep searching while the old replicas drop their rows (each after it sees the settled map).
  await sleep(5000);
  const during = await watch.stop();
  assert.equal(await gen.pause(60000), 0, 'every request acknowledged');

  const held = heldBy(settled);
  for (const n of five) {
    const k = held.get(n) ?? 0;
    assert.ok(k >= 3 && k <= 4, `${n} holds ${k} shards, not 3..4`);
  }
  const afterGrow = await checkExactlyR(five);
  progress(`after the move: ${JSON.stringify(afterGrow)}`);
  result.grow = {
    node_ready_ms: readyMs,
    move_ms: moveMs,
    searches_during_move: during.searches,
    wrong: during.wrong,
    partial: during.partial,
    map_samples: during.samples,
    under_replicated_samples: during.underReplicated,
    failures: watch.failures,
    shards_held_after: Object.fromEntries(held),
    tagged_rows_before: before.tagged,
    tagged_rows_after: afterGrow.tagged,
    rows_before: before.rows,
    rows_after: afterGrow.rows,
    events_acked: afterGrow.events,
    lost: afterGrow.lost,
    duplicated: afterGrow.duplicated,
  };
  assert.ok(during.searches >= 10, `only ${during.searches} searches ran during the move`);
  assert.deepEqual(watch.failures, [], 'every search during the move exact and complete, every shard R copies');
  assert.equal(during.wrong + during.partial, 0);
  // The fixed tagged set: the old nodes together keep exactly what the new node took, none keeps more.
  const newRows = afterGrow.tagged[added] ?? 0;
  assert.ok(newRows > 0, `${added} keeps none of the tagged set`);
  let fell = 0;
  for (const n of four) {
    assert.ok(afterGrow.tagged[n] <= before.tagged[n], `${n} keeps more tagged rows after the move`);
    if (afterGrow.tagged[n] < before.tagged[n]) fell++;
  }
  assert.ok(fell >= 3, `only ${fell} old nodes keep fewer rows`);
  const sum = (o: Record<string, number>, names: string[]) => names.reduce((t, n) => t + (o[n] ?? 0), 0);
  assert.equal(sum(before.tagged, four) - sum(afterGrow.tagged, four), newRows);
});

test('a node drained with the maintenance API: its shards move first, then it reports drained and holds nothing', {
  timeout: 360000,
}, async () => {
  const victim = 'vigil-2';
  const rest = dc.nodes.map((n) => n.name).filter((n) => n !== victim);
  gen.setInRotation(victim, false);
  gen.start();
  const watch = watchMove(() => rest);
  result.drain = { during: watch.stats, failures: watch.failures };
  const t0 = Date.now();
  const enabled = await dc.api(victim, 'POST', '/admin/maintenance/enable');
  assert.equal(enabled.status, 202, JSON.stringify(enabled.body));
  assert.equal(enabled.body.status, 'draining');
  // Until drained, the node still holds shards or is waiting for their successors; sampled with the map.
  let statusSamples = 0;
  const drained = await waitFor('the node drained', 150000, async () => {
    const st = await dc.api(victim, 'GET', '/admin/maintenance/status');
    statusSamples++;
    if (st.body.status !== 'drained') return undefined;
    return st.body as { status: string; shards_remaining?: number };
  });
  const drainMs = Date.now() - t0;
  progress(`${victim} drained after ${drainMs} ms: ${JSON.stringify(watch.stats)}`);
  const map = await probe.mapOf(victim);
  assert.ok(map, 'the drained node still answers the status');
  assert.equal(drained.shards_remaining, 0);
  assert.ok(!map.some((a) => a.replicas.some((r) => r.node === victim)), `${victim} still in the map`);
  // The route itself says drained, with 200.
  const again = await dc.api(victim, 'POST', '/admin/maintenance/enable');
  assert.equal(again.status, 200, JSON.stringify(again.body));
  assert.equal(again.body.status, 'drained');
  const settled = await waitFor('the map settled on 4 nodes', 60000, () => probe.settledMap('vigil-1', rest));
  await sleep(3000);
  const during = await watch.stop();
  assert.equal(await gen.pause(60000), 0, 'every request acknowledged');
  const afterDrain = await checkExactlyR(dc.nodes.map((n) => n.name));
  result.drain = {
    node: victim,
    drain_ms: drainMs,
    status_samples: statusSamples,
    searches_during_drain: during.searches,
    wrong: during.wrong,
    partial: during.partial,
    map_samples: during.samples,
    under_replicated_samples: during.underReplicated,
    failures: watch.failures,
    shards_held_after: Object.fromEntries(heldBy(settled)),
    rows_after: afterDrain.rows,
    events_acked: afterDrain.events,
    lost: afterDrain.lost,
    duplicated: afterDrain.duplicated,
  };
  assert.deepEqual(watch.failures, [], 'every search during the drain exact and complete, every shard R copies');
  assert.ok(during.samples >= 3, `the map was sampled ${during.samples} times`);
  assert.equal(afterDrain.rows[victim], 0, `${victim} still keeps rows`);
  for (const n of rest) assert.equal(heldBy(settled).get(n), 4, `${n} holds 4 shards`);
});
