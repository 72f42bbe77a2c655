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
