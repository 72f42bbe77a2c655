import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import type { OverloadError } from '../lib/errors.ts';
import { createSearchAdmission } from './admission.ts';

const tick = () => new Promise((r) => setImmediate(r));

test("a user's searches past its places wait in order, past its queue are refused, and other users go on", async () => {
  const metrics = new Registry();
  const admission = createSearchAdmission({ concurrency: 2, queue: 2, queueTimeoutMs: 10_000 }, metrics);
  const a1 = await admission.admit('a');
  const a2 = await admission.admit('a');
  const order: string[] = [];
  const admitted = (name: string) =>
    admission.admit('a').then((release) => {
      order.push(name);
      return release;
    });
  const a3 = admitted('a3');
  const a4 = admitted('a4');
  await assert.rejects(admission.admit('a'), (err: OverloadError) => {
    assert.equal(err.code, 'too_many_searches');
    assert.equal(err.status, 429);
    assert.ok(err.retryAfterSeconds >= 1);
    return true;
  });
  // Another user is not held up by a's line.
  (await admission.admit('b'))();
  assert.deepEqual(admission.stats(), { running: 2, queued: 2 });
  a2();
  a2(); // A place is given back once, however often release is called.
  await tick();
  assert.deepEqual(order, ['a3']);
  a1();
  await tick();
  assert.deepEqual(order, ['a3', 'a4']);
  (await a3)();
  (await a4)();
  assert.deepEqual(admission.stats(), { running: 0, queued: 0 });
  const text = await metrics.metrics();
  assert.match(text, /vigil_store_searches_total\{outcome="refused"\} 1/);
  assert.match(text, /vigil_store_searches_total\{outcome="queued"\} 2/);
  assert.match(text, /vigil_store_searches_total\{outcome="admitted"\} 5/);
  assert.match(text, /vigil_store_search_queue_wait_seconds_count 2/);
});

test('a waiting search leaves at the queue timeout (429) or at its own deadline when sooner (503)', async () => {
  const admission = createSearchAdmission({ concurrency: 1, queue: 5, queueTimeoutMs: 60 }, new Registry());
  const held = await admission.admit('a');
  await assert.rejects(admission.admit('a'), { code: 'too_many_searches', status: 429 });
  await assert.rejects(admission.admit('a', Date.now() + 20), { code: 'query_timeout', status: 503 });
  assert.deepEqual(admission.stats(), { running: 1, queued: 0 });
  held();
  (await admission.admit('a'))();
});
