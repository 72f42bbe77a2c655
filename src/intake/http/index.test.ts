import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import { OverloadError } from '../../lib/errors.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import { silentLogger } from '../../lib/logger.ts';
import { createNormalizer, parseConfigSchema } from '../../parse/index.ts';
import { createHttpIntake, createIdempotencyKeys, httpIntakeConfigSchema } from './index.ts';

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
