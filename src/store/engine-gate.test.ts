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

test('an exclusive call waits until the gate is empty, and nothing starts beside it', async () => {
  const gate = createEngineGate(2);
  const order: string[] = [];
  const release = new Map<string, () => void>();
  const call = (name: string, exclusive = false) =>
    gate(
      async () => {
        order.push(`+${name}`);
        await new Promise<void>((r) => release.set(name, r));
        order.push(`-${name}`);
      },
      { exclusive },
    );
  const turn = () => new Promise((r) => setImmediate(r));
  const calls = [call('insert1'), call('read', true), call('insert2')];
  await turn();
  // A place is free, but the exclusive read waits for insert1; insert2, behind it, waits too.
  assert.deepEqual(order, ['+insert1']);
  release.get('insert1')?.();
  await turn();
  assert.deepEqual(order, ['+insert1', '-insert1', '+read']);
  calls.push(call('insert3'));
  await turn();
  // Nothing starts while the exclusive call runs, not even a newcomer.
  assert.deepEqual(order, ['+insert1', '-insert1', '+read']);
  release.get('read')?.();
  await turn();
  assert.deepEqual(order.slice(3), ['-read', '+insert2', '+insert3']);
  release.get('insert2')?.();
  release.get('insert3')?.();
  await Promise.all(calls);
  // A lone exclusive call starts at once.
  const lone = call('alone', true);
  await turn();
  assert.equal(order.at(-1), '+alone');
  release.get('alone')?.();
  await lone;
});
