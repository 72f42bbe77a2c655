import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createEndpointSelector } from './endpoints.ts';

const make = (count = 3) => createEndpointSelector({ count, probeIntervalMs: 1000, retryDelay: (f) => 100 * 2 ** f });

test('the first endpoint is used while it is up; a failure moves to the next in order', () => {
  const s = make();
  assert.equal(s.current(), 0);
  s.failed(0, 0);
  assert.equal(s.current(), 1);
  s.failed(1, 0);
  assert.equal(s.current(), 2);
  s.succeeded(0);
  assert.equal(s.current(), 0, 'back to the preferred one as soon as it is up');
});

test('only endpoints preferred over the current one are probed, each at most once per interval', () => {
  const s = make();
  s.failed(0, 0);
  s.failed(2, 0);
  assert.equal(s.current(), 1);
  assert.deepEqual(s.dueProbes(50), [], 'not before its retry wait');
  assert.deepEqual(s.dueProbes(100), [0], 'endpoint 2 is less preferred than the current one: not probed');
  s.probing(0, 100);
  assert.deepEqual(s.dueProbes(500), [], 'a probe started: the next one after the interval');
  assert.deepEqual(s.dueProbes(1100), [0]);
});

test('with every endpoint down, the earliest due is tried in order of preference, the waits grow up to the probe interval', () => {
  const s = make(2);
  s.failed(0, 0);
  s.failed(1, 0);
  assert.equal(s.current(), undefined);
  assert.deepEqual(s.nextAttempt(50), { at: 100 });
  assert.deepEqual(s.nextAttempt(100), { index: 0 });
  for (let i = 0; i < 10; i++) s.failed(0, 1000);
  assert.deepEqual(s.nextAttempt(1000), { index: 1 }, 'endpoint 0 waits now: endpoint 1 is due first');
  s.failed(1, 1000);
  assert.deepEqual(s.nextAttempt(1050), { at: 1200 });
  assert.deepEqual(s.nextAttempt(2000), { index: 0 }, 'the wait of endpoint 0 is capped by the probe interval');
  s.succeeded(1);
  assert.equal(s.current(), 1);
  assert.equal(s.isUp(0), false);
});
