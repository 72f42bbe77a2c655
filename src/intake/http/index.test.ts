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
  admitting = true;
  assert.equal((await intake.ingest({ body, tenant: 'default' })).accepted, 2);
  assert.equal(published.length, 1);
  await intake.stop(Date.now() + 1000);
});

test('a body of many bad lines is answered in linear time with a bounded list, and one past the limit refuses it whole', async () => {
  const metrics = new Registry();
  const published: NormalizedEvent[][] = [];
  const intake = createHttpIntake(httpIntakeConfigSchema.parse({ max_events_per_request: 200_000 }), {
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
  await intake.stop(Date.now() + 1000);
});
