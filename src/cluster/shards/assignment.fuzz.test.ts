import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { fuzzParams } from '../../../test/harness/fuzz.ts';
import { type NodeFacts, nextAssignment, planTarget } from './assignment.ts';
import type { ShardAssignment } from './types.ts';

const names = (n: number, from = 1) => Array.from({ length: n }, (_, i) => `vigil-${i + from}`);

/** Checks the three guarantees of a target: R distinct eligible nodes per shard, floor/ceil balance. */
function checkTarget(target: string[][], eligible: string[], S: number, R: number): void {
  const N = eligible.length;
  const r = Math.min(R, N);
  assert.equal(target.length, S);
  const load = new Map(eligible.map((n) => [n, 0]));
  for (const [s, list] of target.entries()) {
    assert.equal(list.length, r, `shard ${s} has ${list.length} replicas, wants ${r}`);
    assert.equal(new Set(list).size, list.length, `shard ${s} repeats a node`);
    for (const n of list) {
      assert.ok(load.has(n), `shard ${s} placed on ineligible ${n}`);
      load.set(n, (load.get(n) ?? 0) + 1);
    }
  }
  const lo = Math.floor((S * r) / N);
  const hi = Math.ceil((S * r) / N);
  for (const [n, c] of load) assert.ok(c >= lo && c <= hi, `${n} holds ${c}, wants ${lo}..${hi}`);
}

/** Placements in `b` not in `a`: the replicas that must be copied. */
function moves(a: string[][], b: string[][]): number {
  let m = 0;
  for (const [s, list] of b.entries()) for (const n of list) if (!(a[s] ?? []).includes(n)) m++;
  return m;
}

const shape = fc.record({
  S: fc.integer({ min: 1, max: 64 }),
  R: fc.integer({ min: 1, max: 5 }),
  N: fc.integer({ min: 1, max: 12 }),
});

test('a fresh target is balanced with R distinct nodes per shard', () => {
  fc.assert(
    fc.property(shape, ({ S, R, N }) => checkTarget(planTarget([], names(N), S, R), names(N), S, R)),
    fuzzParams(300),
  );
});

test('planning again from a settled target moves nothing', () => {
  fc.assert(
    fc.property(shape, ({ S, R, N }) => {
      const t = planTarget([], names(N), S, R);
      assert.deepEqual(planTarget(t, names(N), S, R), t);
    }),
    fuzzParams(300),
  );
});

test('a node that joins receives exactly its quota and nothing else moves', () => {
  fc.assert(
    fc.property(shape, ({ S, R, N }) => {
      const before = planTarget([], names(N), S, R);
      const after = planTarget(before, names(N + 1), S, R);
      checkTarget(after, names(N + 1), S, R);
      const r = Math.min(R, N + 1);
      const got = after.filter((l) => l.includes(`vigil-${N + 1}`)).length;
      assert.equal(moves(before, after), got);
      assert.ok(got >= Math.floor((S * r) / (N + 1)));
      // Nobody but the new node receives a shard.
      for (const [s, list] of after.entries())
        for (const n of list) assert.ok(before[s].includes(n) || n === `vigil-${N + 1}`, `shard ${s} moved to ${n}`);
    }),
    fuzzParams(300),
  );
});

test('a node that leaves: its replicas are placed again, few others move', () => {
  fc.assert(
    fc.property(
      shape.filter(({ N }) => N >= 2),
      fc.nat(),
      ({ S, R, N }, k) => {
        const all = names(N);
        const gone = all[k % N];
        const rest = all.filter((n) => n !== gone);
        const before = planTarget([], all, S, R);
        const after = planTarget(before, rest, S, R);
        checkTarget(after, rest, S, R);
        const lost = before.filter((l) => l.includes(gone)).length;
        const shrink = R >= N ? S : 0; // R capped by N: each shard loses a replica that is not replaced
        const m = moves(before, after);
        // Every lost replica is placed again; rebalancing the ceil quotas may move at most one more per node,
        // and a swap costs one more each.
        assert.ok(m >= lost - shrink, `moves ${m} < lost ${lost}`);
        assert.ok(m <= lost + N + S / 4 + 1, `moves ${m} for ${lost} lost replicas (S=${S} R=${R} N=${N})`);
      },
    ),
    fuzzParams(300),
  );
});

test('any prior placement (random, unbalanced, on unknown nodes) yields a valid target', () => {
  fc.assert(
    fc.property(
      shape,
      fc.array(fc.array(fc.integer({ min: 1, max: 14 }), { maxLength: 6 }), { maxLength: 64 }),
      ({ S, R, N }, prior) => {
        const cur = prior.map((l) => l.map((i) => `vigil-${i}`));
        checkTarget(planTarget(cur, names(N), S, R), names(N), S, R);
      },
    ),
    fuzzParams(300),
  );
});

/** Records a node's lag report for a shard. */
function setLag(facts: Map<string, NodeFacts>, node: string, shard: number, lag: number): void {
  const f = facts.get(node);
  assert.ok(f, `no facts for ${node}`);
  (f.lag as Map<number, number>).set(shard, lag);
}

/** Runs the rebalance to its end: lag reports come back 0 for every replica each step. */
function settle(
  start: ShardAssignment[],
  facts: Map<string, NodeFacts>,
  S: number,
  R: number,
  onStep: (a: ShardAssignment[]) => void,
  maxCatchingUp = Number.POSITIVE_INFINITY,
): ShardAssignment[] {
  let cur = start;
  for (let i = 0; i < 10 + S * R; i++) {
    const next = nextAssignment(cur, facts, S, R, 0, i, maxCatchingUp);
    onStep(next);
    if (JSON.stringify(next) === JSON.stringify(cur)) return next;
    cur = next;
    // The nodes consume what they were given: they report lag 0 for it.
    for (const a of cur) for (const r of a.replicas) setLag(facts, r.node, a.shard, 0);
  }
  assert.fail(`the rebalance did not settle in ${10 + S * R} steps`);
}

const factsOf = (eligible: string[], present: string[]) =>
  new Map<string, NodeFacts>(
    [...new Set([...eligible, ...present])].map((n) => [
      n,
      { eligible: eligible.includes(n), present: present.includes(n), lag: new Map() },
    ]),
  );

test('a rebalance (join, drain) never has fewer than R serving replicas of a shard that had R, nor more moves at once than allowed', () => {
  fc.assert(
    fc.property(
      shape.filter(({ N }) => N >= 2),
      fc.nat(),
      fc.boolean(),
      fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
      ({ S, R, N }, k, join, limit) => {
        const all = names(N);
        const facts = factsOf(all, all);
        const first = settle([], facts, S, R, () => {});
        const r = Math.min(R, N);
        for (const a of first) {
          assert.equal(a.replicas.length, r);
          assert.ok(a.replicas.every((x) => x.state === 'serving'));
        }
        // Join a node, or put one in maintenance (present, not eligible).
        const nodes = join ? names(N + 1) : all;
        const eligible = join ? nodes : all.filter((_, i) => i !== k % N);
        const f2 = factsOf(eligible, nodes);
        for (const [n, f] of facts) if (f2.has(n)) f2.set(n, { ...f2.get(n)!, lag: f.lag });
        const wantAfter = Math.min(R, eligible.length);
        const end = settle(
          first,
          f2,
          S,
          R,
          (step) => {
            for (const a of step) {
              const serving = a.replicas.filter((x) => x.state !== 'catching_up').length;
              assert.ok(serving >= Math.min(r, wantAfter), `shard ${a.shard}: ${serving} serving during the move`);
            }
            const moving = step.flatMap((a) => a.replicas).filter((x) => x.state === 'catching_up').length;
            if (limit !== undefined)
              assert.ok(moving <= limit, `${moving} replicas catching up at once, limit ${limit}`);
          },
          limit,
        );
        checkTarget(
          end.map((a) => a.replicas.map((x) => x.node)),
          eligible,
          S,
          R,
        );
        assert.ok(end.every((a) => a.replicas.every((x) => x.state === 'serving')));
      },
    ),
    fuzzParams(200),
  );
});

test('a replica catches up before it serves; a draining one goes only after', () => {
  const facts = factsOf(['a', 'b'], ['a', 'b']);
  let cur = nextAssignment([], facts, 1, 2, 10);
  assert.deepEqual(
    cur[0].replicas.map((r) => r.state),
    ['catching_up', 'catching_up'],
  );
  setLag(facts, 'a', 0, 500);
  setLag(facts, 'b', 0, 3);
  cur = nextAssignment(cur, facts, 1, 2, 10);
  assert.deepEqual(
    cur[0].replicas.map((r) => [r.node, r.state, r.lag_messages]),
    [
      ['a', 'catching_up', 500],
      ['b', 'serving', 3],
    ],
  );
  setLag(facts, 'a', 0, 0);
  cur = nextAssignment(cur, facts, 1, 2, 10);
  // b is drained: c takes its place, b stays draining until c serves.
  const f2 = factsOf(['a', 'c'], ['a', 'b', 'c']);
  setLag(f2, 'a', 0, 0);
  setLag(f2, 'b', 0, 0);
  cur = nextAssignment(cur, f2, 1, 2, 10);
  assert.deepEqual(
    cur[0].replicas.map((r) => [r.node, r.state]),
    [
      ['a', 'serving'],
      ['b', 'draining'],
      ['c', 'catching_up'],
    ],
  );
  setLag(f2, 'c', 0, 0);
  cur = nextAssignment(cur, f2, 1, 2, 10);
  assert.deepEqual(
    cur[0].replicas.map((r) => [r.node, r.state]),
    [
      ['a', 'serving'],
      ['c', 'serving'],
    ],
  );
});

test('a node gone past the grace period loses its replicas at once; within it, they are kept', () => {
  const all = ['a', 'b', 'c', 'd'];
  const facts = factsOf(all, all);
  const settled = settle([], facts, 8, 2, () => {});
  // d dead within the grace period: present and eligible, nothing changes.
  assert.deepEqual(nextAssignment(settled, facts, 8, 2, 0), settled);
  // Past it: d's replicas vanish, each of its shards gets a catching_up replica on another node.
  const past = factsOf(['a', 'b', 'c'], ['a', 'b', 'c']);
  for (const n of ['a', 'b', 'c']) past.set(n, { ...past.get(n)!, lag: facts.get(n)!.lag });
  const next = nextAssignment(settled, past, 8, 2, 0);
  for (const a of next) {
    assert.ok(!a.replicas.some((r) => r.node === 'd'));
    assert.equal(a.replicas.length, 2);
    const hadD = settled[a.shard].replicas.some((r) => r.node === 'd');
    assert.equal(a.replicas.filter((r) => r.state === 'catching_up').length, hadD ? 1 : 0, `shard ${a.shard}`);
  }
});
