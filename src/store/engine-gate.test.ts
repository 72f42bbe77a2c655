import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createEngineGate } from './engine-gate.ts';

test('at most `limit` calls run at once, in order of arrival, and a failure frees its place', async () => {
  const gate = createEngineGate(2);
  let running = 0;
  let most = 0;
  const order: number[] = [];
  const call = (i: number, fail = false) =>
    gate(async () => {
      running++;
      most = Math.max(most, running);
      order.push(i);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      if (fail) throw new Error(`call ${i} failed`);
      return i;
    });
  const results = await Promise.allSettled([call(0), call(1, true), call(2), call(3), call(4)]);
  assert.equal(most, 2);
  assert.deepEqual(order, [0, 1, 2, 3, 4]);
  assert.deepEqual(
    results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)),
    [0, 'call 1 failed', 2, 3, 4],
  );
  // Every place came back: a full round runs again.
  assert.deepEqual(await Promise.all([call(5), call(6), call(7)]), [5, 6, 7]);
  assert.equal(running, 0);
});

test('a waiting write goes before every waiting search, and searches leave one place to writes', async () => {
  const gate = createEngineGate(2);
  const order: string[] = [];
  let searchesRunning = 0;
  let mostSearches = 0;
  const release: (() => void)[] = [];
  const call = (name: string, lane: 'write' | 'search') =>
    gate(
      async () => {
        order.push(name);
        if (lane === 'search') mostSearches = Math.max(mostSearches, ++searchesRunning);
        await new Promise<void>((r) => release.push(r));
        if (lane === 'search') searchesRunning--;
      },
      { lane },
    );
  const calls = [call('s1', 'search'), call('s2', 'search'), call('s3', 'search'), call('w1', 'write')];
  await new Promise((r) => setImmediate(r));
  // The second place stays free for a write: w1 starts at once, though s2 and s3 arrived first.
  assert.deepEqual(order, ['s1', 'w1']);
  calls.push(call('w2', 'write'));
  release.shift()?.(); // s1 ends: w2, which waited less than s2, takes its place.
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ['s1', 'w1', 'w2']);
  while (release.length > 0) {
    release.shift()?.();
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(calls);
  assert.deepEqual(order, ['s1', 'w1', 'w2', 's2', 's3']);
  assert.equal(mostSearches, 1);
});

test('a search still waiting at its deadline leaves with query_timeout and never runs', async () => {
  const gate = createEngineGate(2);
  let release!: () => void;
  const running = gate(() => new Promise<void>((r) => (release = r)), { lane: 'search' });
  let ran = false;
  const started = Date.now();
  await assert.rejects(
    gate(
      async () => {
        ran = true;
      },
      { lane: 'search', deadline: Date.now() + 50 },
    ),
    (err: Error & { code?: string; status?: number }) => err.code === 'query_timeout' && err.status === 503,
  );
  assert.ok(Date.now() - started < 1000);
  release();
  await running;
  assert.equal(ran, false);
  // The line goes on without it.
  assert.equal(await gate(async () => 7, { lane: 'search' }), 7);
});
