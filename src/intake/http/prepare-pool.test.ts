import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { VigilError } from '../../lib/errors.ts';
import { silentLogger } from '../../lib/logger.ts';
import { createNormalizer, parseConfigSchema, splitJson } from '../../parse/index.ts';
import { eventsToRowBinary } from '../../store/row-binary.ts';
import { prepareOnLoop } from './prepare.ts';
import { createPreparePool } from './prepare-pool.ts';

const parse = parseConfigSchema.parse({ max_fields: 50 });
const windows = (i: number) =>
  JSON.stringify({
    '@timestamp': `2026-01-01T00:00:${String(i % 60).padStart(2, '0')}Z`,
    EventID: 4688,
    Channel: 'Security',
    Hostname: `ws-${i % 7}`,
    EventRecordID: i,
    CommandLine: `cmd.exe /c whoami ${'é'.repeat(i % 5)}`,
    Tags: ['a', 1, true, null],
    __proto__: 'not a prototype',
    constructor: 'a field',
  });
const body = [
  ...Array.from({ length: 1200 }, (_, i) => windows(i)),
  '42',
  JSON.stringify({ message: 'x'.repeat(600) }),
  '{"vigil.logsource.product":"vigil","vigil.logsource.service":"health"}',
  '{"broken":',
  '{"message":"last"}',
].join('\n');
const ctx = { tenant: 't1', logsource: { product: 'windows' }, receivedAt: 1_790_000_000_000, idempotencyKey: 'k-1' };

test('a thread sorts a body as the event loop does, in order, and builds the same rows byte for byte', async () => {
  const pool = createPreparePool(
    { threads: 2, parse, buildRows: true },
    { metrics: new Registry(), logger: silentLogger },
  );
  pool.start();
  try {
    const here = await prepareOnLoop(splitJson(body), ctx, createNormalizer(parse), 512);
    const there = await pool.prepare({ body, ctx, maxEvents: 10_000, maxEventBytes: 512 });
    assert.ok(!there.tooMany);
    assert.equal(there.prepared.events.length, 1201);
    assert.deepEqual(there.prepared, here);
    assert.deepEqual(
      here.refused.map((r) => r.line),
      [1201, 1202, 1203, 1204],
    );
    assert.deepEqual(here.rejected, { malformed_json: 1, invalid_event: 1, oversize: 1, reserved_logsource: 1 });
    // The rows are the store's own serialization of the events, and `ends` cuts them event by event.
    assert.ok(there.rows && there.ends);
    assert.ok(there.rows.equals(eventsToRowBinary(here.events)));
    assert.equal(there.ends.length, 1201);
    assert.ok(there.rows.subarray(there.ends[9], there.ends[10]).equals(eventsToRowBinary([here.events[10]])));
    // Requests on both threads at once each get their own answer.
    const many = await Promise.all(
      [3, 1, 2].map((n) => pool.prepare({ body: `{"n":${n}}\n`.repeat(n), ctx, maxEvents: 10, maxEventBytes: 512 })),
    );
    assert.deepEqual(
      many.map((m) => (m.tooMany ? -1 : m.prepared.events.length)),
      [3, 1, 2],
    );
  } finally {
    await pool.stop(Date.now() + 5000);
  }
});

test('one event past max events refuses the request; no rows are built when the bus does not want them', async () => {
  const pool = createPreparePool(
    { threads: 1, parse, buildRows: false },
    { metrics: new Registry(), logger: silentLogger },
  );
  pool.start();
  try {
    assert.deepEqual(await pool.prepare({ body: '{"a":1}\n'.repeat(11), ctx, maxEvents: 10, maxEventBytes: 512 }), {
      tooMany: true,
    });
    const ok = await pool.prepare({ body: '{"a":1}\n'.repeat(10), ctx, maxEvents: 10, maxEventBytes: 512 });
    assert.ok(!ok.tooMany);
    assert.equal(ok.prepared.events.length, 10);
    assert.equal(ok.rows, undefined);
  } finally {
    await pool.stop(Date.now() + 5000);
  }
});

test('stop answers the requests in the threads, then stops them; later requests fail with 503 intake_stopping', async () => {
  const pool = createPreparePool(
    { threads: 1, parse, buildRows: true },
    { metrics: new Registry(), logger: silentLogger },
  );
  pool.start();
  const inflight = pool.prepare({ body, ctx, maxEvents: 10_000, maxEventBytes: 512 });
  await pool.stop(Date.now() + 30_000);
  const answered = await inflight;
  assert.ok(!answered.tooMany && answered.prepared.events.length === 1201);
  assert.equal(pool.health().ok, false);
  await assert.rejects(
    pool.prepare({ body: '{"a":1}', ctx, maxEvents: 10, maxEventBytes: 512 }),
    (err: unknown) =>
      err instanceof VigilError && err.code === 'intake_stopping' && err.status === 503 && err.retryable,
  );
});
