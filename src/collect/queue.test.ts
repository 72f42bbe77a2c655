import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import type { NormalizedEvent } from '../lib/event.ts';
import { type Logger, silentLogger } from '../lib/logger.ts';
import { pino } from 'pino';
import { QueueFullError, createRetentionQueue, type RetentionQueueOptions } from './queue.ts';

const root = mkdtempSync(join(tmpdir(), 'vigil-collect-queue-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;

const event = (i: number, bytes = 100): NormalizedEvent => ({
  id: `e${i}`,
  timestamp: 1_700_000_000_000 + i,
  ingested: 1_700_000_000_000 + i,
  tenant: 'default',
  source: 'syslog-udp',
  layout: 'syslog',
  raw: `<13>event ${i} ${'x'.repeat(bytes)}`,
  fields: { message: `event ${i}` },
});

const open = async (
  opts: Partial<RetentionQueueOptions> = {},
  dir = join(root, `q${dirs++}`),
  logger: Logger = silentLogger,
) => {
  const metrics = new Registry();
  const queue = createRetentionQueue(
    {
      dir,
      maxBytes: 16 * 1024 * 1024,
      maxAgeSeconds: 3600,
      segmentBytes: 64 * 1024,
      fsync: true,
      batchMaxEvents: 10,
      batchMaxBytes: 64 * 1024,
      ...opts,
    },
    { metrics, logger },
  );
  await queue.open();
  return { queue, metrics, dir };
};

const metric = async (metrics: Registry, name: string) =>
  (await metrics.getSingleMetric(name)?.get())?.values.reduce((n, v) => n + v.value, 0) ?? 0;

/** Reads every queued batch (acknowledging each) and returns the event ids in order. */
const drain = async (queue: Awaited<ReturnType<typeof open>>['queue']) => {
  const ids: string[] = [];
  for (let b = await queue.head(); b; b = await queue.head()) {
    const lines = Buffer.from(b.body).toString('utf8').trim().split('\n');
    assert.equal(lines.length, b.events);
    for (const l of lines) ids.push((JSON.parse(l) as { id: string }).id);
    await queue.ack();
  }
  return ids;
};

test('events come back in append order, cut into batches of at most batch_max_events and batch_max_bytes, without their tenant', async () => {
  const { queue, metrics } = await open({ batchMaxEvents: 10, batchMaxBytes: 64 * 1024 });
  await queue.append(Array.from({ length: 25 }, (_, i) => event(i)));
  await queue.append([event(25, 40_000), event(26, 40_000)]);
  assert.deepEqual(queue.stats().events, 27);
  assert.equal(queue.stats().batches, 3 + 2, '10 + 10 + 5, then two large events that do not fit one batch');
  assert.equal(await metric(metrics, 'vigil_collect_queue_events'), 27);
  const first = await queue.head();
  assert.ok(first);
  const line = JSON.parse(Buffer.from(first.body).toString('utf8').split('\n')[0]) as Record<string, unknown>;
  assert.equal(line.tenant, undefined, 'the site stamps the tenant of the collector key');
  assert.equal(line.id, 'e0');
  assert.deepEqual(
    await drain(queue),
    Array.from({ length: 27 }, (_, i) => `e${i}`),
  );
  assert.equal(queue.stats().events, 0);
  await queue.close();
});

test('past max_bytes new events are refused with collect_queue_full and counted; acknowledged ones stay', async () => {
  const { queue, metrics } = await open({ maxBytes: 1024 * 1024, segmentBytes: 64 * 1024 });
  let appended = 0;
  let refusal: unknown;
  for (let i = 0; i < 2000 && refusal === undefined; i++) {
    try {
      await queue.append([event(i, 2000)]);
      appended++;
    } catch (err) {
      refusal = err;
    }
  }
  assert.ok(refusal instanceof QueueFullError, `refused: ${String(refusal)}`);
  assert.equal(refusal.code, 'collect_queue_full');
  assert.equal(refusal.status, 503);
  assert.match(refusal.message, /queue\.max_bytes/);
  assert.ok(queue.stats().bytes <= 1024 * 1024);
  assert.equal(await metric(metrics, 'vigil_collect_refused_events_total'), 1);
  assert.equal(queue.full(), true, 'the collector says it takes nothing');
  assert.equal((await drain(queue)).length, appended, 'every acknowledged event is still queued');
  assert.equal(queue.full(), false);
  await queue.append([event(9999)]);
  assert.equal(queue.stats().events, 1, 'room again once forwarded');
  await queue.close();
});

test('batches older than max_age_seconds are purged from the head, counted by reason, logged, and kept otherwise', async () => {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
  const { queue, metrics } = await open({ maxAgeSeconds: 60 }, undefined, logger);
  await queue.append(Array.from({ length: 15 }, (_, i) => event(i)));
  assert.equal(await queue.purgeExpired(Date.now()), 0, 'nothing is old yet');
  const later = Date.now() + 61_000;
  assert.equal(await queue.purgeExpired(later), 15);
  assert.equal(queue.stats().events, 0);
  const purged = (await metrics.getSingleMetric('vigil_collect_purged_events_total')?.get())?.values;
  assert.deepEqual(
    purged?.map((v) => [v.labels.reason, v.value]),
    [['max_age', 15]],
  );
  const logged = lines.find((l) => /Purged events older than the queue retention/.test(String(l.msg)));
  assert.equal(logged?.events, 15);
  assert.equal(logged?.level, 40, 'a warning');
  await queue.append([event(100)]);
  assert.equal(await queue.purgeExpired(Date.now()), 0, 'a new event is kept');
  assert.deepEqual(await drain(queue), ['e100']);
  await queue.close();
});

test('a reopened queue holds what was appended and not acknowledged, and nothing that was', async () => {
  const { queue, dir } = await open({ batchMaxEvents: 5 });
  await queue.append(Array.from({ length: 20 }, (_, i) => event(i)));
  await queue.head();
  await queue.ack();
  await queue.close();
  const again = await open({ batchMaxEvents: 5 }, dir);
  assert.deepEqual(
    await drain(again.queue),
    Array.from({ length: 15 }, (_, i) => `e${i + 5}`),
  );
  await again.queue.close();
});

test('kill -9 while appending: every event whose append was acknowledged is in the reopened queue', {
  timeout: 90_000,
}, async () => {
  const dir = join(root, 'crash');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', resolve(import.meta.dirname, 'fixtures/crash-appender.ts'), dir],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const deadline = Date.now() + 60_000;
  while ((out.match(/acked/g)?.length ?? 0) < 200 && Date.now() < deadline && child.exitCode === null) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  const acked = [...out.matchAll(/acked (\d+)/g)].map((m) => Number(m[1]));
  assert.ok(acked.length >= 200, `the appender was acknowledged before the kill (${acked.length}): ${err}`);
  const { queue } = await open({}, dir);
  const present = new Set(await drain(queue));
  await queue.close();
  const lost = acked.flatMap((i) => [0, 1, 2, 3, 4].map((k) => `e${i + k}`)).filter((id) => !present.has(id));
  assert.deepEqual(lost, [], 'no acknowledged event is lost');
  console.log(`collector queue kill -9: ${acked.length * 5} events acknowledged, ${present.size} found after reopen`);
});
