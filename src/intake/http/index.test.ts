import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import { OverloadError, VigilError } from '../../lib/errors.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import { silentLogger } from '../../lib/logger.ts';
import { createNormalizer, parseConfigSchema } from '../../parse/index.ts';
import { createHttpIntake, createIdempotencyKeys, httpIntakeConfigSchema, MAX_REJECTION_DETAILS } from './index.ts';

const root = mkdtempSync(join(tmpdir(), 'vigil-http-intake-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('a node that is not admitting (maintenance) refuses with 503 draining, publishes nothing, counts it', async () => {
  const metrics = new Registry();
  const published: NormalizedEvent[][] = [];
  let admitting = false;
  const intake = createHttpIntake(httpIntakeConfigSchema.parse({}), {
    normalizer: createNormalizer(parseConfigSchema.parse({})),
    publish: async (events) => {
      published.push(events);
    },
    metrics,
    keys: createIdempotencyKeys({ dir: join(root, 'keys'), maxKeys: 100, metrics, logger: silentLogger }),
    admitting: () => admitting,
  });
  await intake.start();
  const body = '{"message":"a"}\n{"message":"b"}';
  await assert.rejects(
    intake.ingest({ body, tenant: 'default' }),
    (err: unknown) => err instanceof OverloadError && err.code === 'draining' && err.status === 503,
  );
  assert.equal(published.length, 0);
  const rejected = await metrics.getSingleMetric('vigil_intake_events_rejected_total')?.get();
  assert.equal(rejected?.values.find((v) => v.labels.reason === 'draining')?.value, 2);
  // Refused before the body is read: a body too long for a request, or of bad lines, is refused as draining too.
  const intakeLimit = httpIntakeConfigSchema.parse({}).max_events_per_request;
  await assert.rejects(
    intake.ingest({ body: '{"message":"x"}\n'.repeat(intakeLimit + 1), tenant: 'default' }),
    (err: unknown) => err instanceof OverloadError && err.code === 'draining',
  );
  await assert.rejects(
    intake.ingest({ body: '{{{\n', tenant: 'default', idempotencyKey: 'k1' }),
    (err: unknown) => err instanceof OverloadError && err.code === 'draining',
  );
  const total = async (name: string) =>
    (await metrics.getSingleMetric(name)?.get())?.values.reduce((sum, v) => sum + v.value, 0);
  assert.equal(await total('vigil_intake_events_received_total'), await total('vigil_intake_events_rejected_total'));
  admitting = true;
  assert.equal((await intake.ingest({ body, tenant: 'default' })).accepted, 2);
  assert.equal(published.length, 1);
  await intake.stop(Date.now() + 1000);
});

/** Where a test's requests are split and normalized: ingest.threads 0 (the event loop) or 1 (a thread). */
const on = (threads: number) => (threads === 0 ? ' (on the event loop)' : ' (on an intake thread)');

for (const threads of [0, 1])
  test(`a body of many bad lines is answered in linear time with a bounded list, and one past the limit refuses it whole${on(threads)}`, async () => {
    const metrics = new Registry();
    const published: NormalizedEvent[][] = [];
    const intake = createHttpIntake(httpIntakeConfigSchema.parse({ max_events_per_request: 200_000, threads }), {
      normalizer: createNormalizer(parseConfigSchema.parse({})),
      publish: async (events) => {
        published.push(events);
      },
      metrics,
      keys: createIdempotencyKeys({ dir: join(root, 'keys-bad'), maxKeys: 100, metrics, logger: silentLogger }),
    });
    await intake.start();
    // 200,000 lines that are JSON but not events. Split in quadratic time before (50,000 took 37 s, so this
    // would take about ten minutes); linear now, about a second. The bound only tells the two apart.
    const started = performance.now();
    const answer = await intake.ingest({ body: `{"message":"ok"}\n${'1\n'.repeat(199_999)}`, tenant: 'default' });
    const ms = performance.now() - started;
    assert.equal(answer.accepted, 1);
    assert.equal(answer.rejected.length, MAX_REJECTION_DETAILS);
    assert.equal(answer.rejected_omitted, 199_999 - MAX_REJECTION_DETAILS);
    assert.ok(ms < 60_000, `200,000 bad lines took ${Math.round(ms)} ms`);

    await assert.rejects(
      intake.ingest({ body: '{"message":"x"}\n'.repeat(200_001), tenant: 'default' }),
      (err: unknown) => err instanceof VigilError && err.code === 'too_many_events' && err.status === 413,
    );
    assert.equal(published.length, 1, 'nothing of the refused request was published');
    // Every element counted as received is counted as accepted or rejected, the refused request's included.
    const total = async (name: string) =>
      (await metrics.getSingleMetric(name)?.get())?.values.reduce((sum, v) => sum + v.value, 0) ?? 0;
    assert.equal(
      await total('vigil_intake_events_received_total'),
      (await total('vigil_intake_events_accepted_total')) + (await total('vigil_intake_events_rejected_total')),
    );
    await intake.stop(Date.now() + 1000);
  });

/** Runs `fn` and measures the longest time the event loop went without a turn meanwhile, in ms. */
async function longestStallDuring<T>(fn: () => Promise<T>): Promise<{ result: T; stallMs: number }> {
  let last = performance.now();
  let longest = 0;
  let ticking = true;
  const tick = () => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  try {
    const result = await fn();
    tick();
    return { result, stallMs: longest };
  } finally {
    ticking = false;
  }
}

for (const threads of [0, 1])
  test(`ingesting 95,000 bad lines or 95,000 events of 570 B leaves the event loop turning (longest stall under a second)${on(threads)}`, {
    timeout: 60_000,
  }, async () => {
    const metrics = new Registry();
    let published = 0;
    const intake = createHttpIntake(httpIntakeConfigSchema.parse({ threads }), {
      normalizer: createNormalizer(parseConfigSchema.parse({})),
      publish: async (events) => {
        published += events.length;
      },
      metrics,
      keys: createIdempotencyKeys({ dir: join(root, 'keys-loop'), maxKeys: 100, metrics, logger: silentLogger }),
    });
    await intake.start();
    // 190 KB of lines `1`: each used to cost a thrown ParseError (~22 µs), 2.5 s with the loop held throughout.
    const bad = await longestStallDuring(() => intake.ingest({ body: '1\n'.repeat(95_000), tenant: 'default' }));
    assert.equal(bad.result.accepted, 0);
    assert.equal(bad.result.rejected.length + (bad.result.rejected_omitted ?? 0), 95_000);
    assert.equal(bad.result.rejected[0].error, 'an event must be a JSON object, not a number');
    // Quiet, the longest stall is tens of ms; the bound leaves room for a loaded machine (532 ms seen at a load
    // average of 15) and still fails the unsliced loop (2.5 s quiet).
    assert.ok(bad.stallMs < 1000, `95,000 bad lines held the event loop for ${Math.round(bad.stallMs)} ms`);

    const line = JSON.stringify({
      '@timestamp': '2026-01-01T00:00:00Z',
      message: 'x'.repeat(400),
      host: { name: 'web-01' },
      user: { name: 'alice' },
      event: { action: 'login' },
    });
    const good = await longestStallDuring(() => intake.ingest({ body: `${line}\n`.repeat(95_000), tenant: 'default' }));
    assert.equal(good.result.accepted, 95_000);
    assert.equal(published, 95_000);
    assert.ok(good.stallMs < 1000, `95,000 events held the event loop for ${Math.round(good.stallMs)} ms`);
    await intake.stop(Date.now() + 1000);
  });

for (const threads of [0, 1])
  test(`Vigil's own logsource product is refused: a declaring request whole, an element that claims it alone${on(threads)}`, async () => {
    const metrics = new Registry();
    const published: NormalizedEvent[][] = [];
    const intake = createHttpIntake(httpIntakeConfigSchema.parse({ threads }), {
      normalizer: createNormalizer(parseConfigSchema.parse({})),
      publish: async (events) => {
        published.push(events);
      },
      metrics,
      keys: createIdempotencyKeys({ dir: join(root, 'keys-reserved'), maxKeys: 100, metrics, logger: silentLogger }),
    });
    await intake.start();
    const health = '{"vigil.health.check":"backup","vigil.health.backup.stale":false}\n{"message":"b"}\n';
    for (const product of ['vigil', 'Vigil']) {
      await assert.rejects(
        intake.ingest({ body: health, tenant: 'default', logsource: { product, service: 'health' } }),
        (err: unknown) =>
          err instanceof VigilError &&
          err.code === 'reserved_logsource' &&
          err.status === 400 &&
          /reserved for Vigil's own health events/.test(err.message),
      );
    }
    assert.equal(published.length, 0);
    // The stored logsource column, spelled flat or nested, is what a restart's catch-up reads back.
    const result = await intake.ingest({
      body: [
        '{"vigil.logsource.product":"vigil","vigil.logsource.service":"health","vigil.health.check":"disk"}',
        '{"vigil":{"logsource":{"product":"VIGIL","service":"health"}}}',
        '{"message":"honest","vigil.logsource.service":"health"}',
      ].join('\n'),
      tenant: 'default',
    });
    assert.equal(result.accepted, 1);
    assert.deepEqual(
      result.rejected.map((r) => r.line),
      [1, 2],
    );
    assert.match(result.rejected[0].error, /reserved for Vigil's own health events/);
    assert.equal(published.length, 1);
    assert.equal(published[0][0].fields.message, 'honest');
    const rejected = await metrics.getSingleMetric('vigil_intake_events_rejected_total')?.get();
    assert.equal(rejected?.values.find((v) => v.labels.reason === 'reserved_logsource')?.value, 2 * 2 + 2);
    await intake.stop(Date.now() + 1000);
  });
