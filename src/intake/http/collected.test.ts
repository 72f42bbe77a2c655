import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import type { NormalizedEvent } from '../../lib/event.ts';
import { silentLogger } from '../../lib/logger.ts';
import { createNormalizer, parseConfigSchema } from '../../parse/index.ts';
import { createHttpIntake, createIdempotencyKeys, encodeCollected, httpIntakeConfigSchema } from './index.ts';

const root = mkdtempSync(join(tmpdir(), 'vigil-collected-'));
after(() => rmSync(root, { recursive: true, force: true }));

const normalizer = createNormalizer(parseConfigSchema.parse({}));

async function open(config = {}) {
  const metrics = new Registry();
  const published: NormalizedEvent[] = [];
  const intake = createHttpIntake(httpIntakeConfigSchema.parse(config), {
    normalizer,
    publish: async (events) => {
      published.push(...events);
    },
    metrics,
    keys: createIdempotencyKeys({ dir: join(root, `k${Math.random()}`), maxKeys: 1000, metrics, logger: silentLogger }),
    parseMaxFields: 10,
  });
  await intake.start();
  return { intake, published, metrics };
}

test('collected events are stored as the collector made them (id, times, source, text), under the tenant of the key', async () => {
  const { intake, published } = await open();
  const made = normalizer.fromSyslog('<34>Oct 11 22:14:15 mymachine su: su root failed on /dev/pts/8', {
    source: 'syslog-tcp',
    receivedAt: 1_700_000_000_000,
    tenant: 'collector-local',
  });
  const json = normalizer.fromJson({ message: 'hi', user: { name: 'bob' } }, '{"message":"hi","user":{"name":"bob"}}', {
    source: 'http',
    receivedAt: 1_700_000_000_500,
    tenant: 'collector-local',
    logsource: { product: 'linux' },
  });
  const answer = await intake.ingestCollected({
    body: `${encodeCollected(made)}\n${encodeCollected(json)}\n`,
    tenant: 'acme',
  });
  assert.deepEqual(answer, { accepted: 2, rejected: [] });
  const { inRaw: _inRaw, ...sent } = json;
  assert.deepEqual(published, [
    { ...made, tenant: 'acme' },
    { ...sent, tenant: 'acme' },
  ]);
  await intake.stop(Date.now() + 1000);
});

test('a collected line that is not a well-formed event is refused by line, with the reason, and counted', async () => {
  const { intake, published, metrics } = await open({ max_event_bytes: 1024 });
  const good = {
    id: 'x-1',
    timestamp: 1,
    ingested: 2,
    source: 'syslog-udp',
    layout: 'syslog',
    raw: 'r',
    fields: { a: 1, b: ['x', null] },
  };
  let deep: unknown = 'v';
  for (let i = 0; i < 20; i++) deep = [deep];
  const lines = [
    good,
    { ...good, tenant: 'other' },
    { ...good, id: '' },
    { ...good, id: 'é' },
    { ...good, timestamp: 1.5 },
    { ...good, layout: 'xml' },
    { ...good, raw: 'x'.repeat(2000) },
    { ...good, fields: { a: { nested: 1 } } },
    { ...good, fields: { a: deep } },
    { ...good, fields: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`f${i}`, i])) },
    { ...good, logsource: { product: 'bad name!' } },
  ];
  const answer = await intake.ingestCollected({
    body: `${lines.map((l) => JSON.stringify(l)).join('\n')}\nnot json\n`,
    tenant: 'default',
  });
  assert.equal(answer.accepted, 1);
  assert.deepEqual(
    answer.rejected.map((r) => r.line),
    [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
  );
  assert.match(answer.rejected[0].error, /unknown key tenant/);
  assert.match(answer.rejected[5].error, /raw: text of at most 1024 bytes/);
  assert.match(answer.rejected[8].error, /fields: at most 266/);
  assert.equal(published.length, 1);
  const rejected = await metrics.getSingleMetric('vigil_intake_events_rejected_total')?.get();
  assert.equal(
    rejected?.values.filter((v) => v.labels.source === 'collector').reduce((n, v) => n + v.value, 0),
    11,
  );
  await intake.stop(Date.now() + 1000);
});

test("a collected event that claims Vigil's own logsource is refused by line and counted; the others are stored", async () => {
  const { intake, published, metrics } = await open();
  const at = { source: 'http', receivedAt: 1_700_000_000_000, tenant: 'collector-local' };
  const forged = normalizer.fromJson({ message: 'all is well' }, '{"message":"all is well"}', {
    ...at,
    logsource: { product: 'vigil', service: 'health' },
  });
  const honest = normalizer.fromJson({ message: 'hi' }, '{"message":"hi"}', at);
  const answer = await intake.ingestCollected({
    body: `${encodeCollected(forged)}\n${encodeCollected(honest)}\n`,
    tenant: 'acme',
  });
  assert.equal(answer.accepted, 1);
  assert.equal(answer.rejected[0].line, 1);
  assert.match(answer.rejected[0].error, /reserved for Vigil's own health events/);
  assert.deepEqual(
    published.map((e) => e.raw),
    ['{"message":"hi"}'],
  );
  const rejected = await metrics.getSingleMetric('vigil_intake_events_rejected_total')?.get();
  assert.equal(rejected?.values.find((v) => v.labels.reason === 'reserved_logsource')?.value, 1);
  await intake.stop(Date.now() + 1000);
});
