import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import type { NormalizedEvent } from '../lib/event.ts';
import { silentLogger } from '../lib/logger.ts';
import { createForwarder } from './forwarder.ts';
import { createRetentionQueue } from './queue.ts';
import { createSiteClient } from './site-client.ts';

const root = mkdtempSync(join(tmpdir(), 'vigil-collect-fwd-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A stand-in for a site: answers ingest and readiness as its mode says, and keeps the ids it committed. */
async function fakeSite() {
  const site = {
    mode: 'ok' as 'ok' | 'fail' | 'refuse',
    ids: [] as string[],
    requests: 0,
    tokens: new Set<string>(),
    url: '',
    server: undefined as unknown as http.Server,
  };
  site.server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      if (req.url === '/health/ready') {
        res.writeHead(site.mode === 'fail' ? 503 : 200).end('{}');
        return;
      }
      site.requests++;
      site.tokens.add(String(req.headers.authorization));
      if (site.mode === 'fail') {
        res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"overloaded","message":"x"}}');
        return;
      }
      if (site.mode === 'refuse') {
        res.writeHead(413, { 'content-type': 'application/json' }).end('{"error":{"code":"too_large","message":"x"}}');
        return;
      }
      const lines = body.trim().split('\n');
      for (const l of lines) site.ids.push((JSON.parse(l) as { id: string }).id);
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ accepted: lines.length, rejected: [] }));
    });
  });
  await new Promise<void>((r) => site.server.listen(0, '127.0.0.1', r));
  site.url = `http://127.0.0.1:${(site.server.address() as AddressInfo).port}`;
  return site;
}

const event = (i: number): NormalizedEvent => ({
  id: `e${i}`,
  timestamp: 1_700_000_000_000 + i,
  ingested: 1_700_000_000_000 + i,
  tenant: 'default',
  source: 'syslog-udp',
  layout: 'syslog',
  raw: `<13>event ${i}`,
  fields: {},
});

const until = async (what: string, check: () => boolean, ms = 20_000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const value = async (m: Registry, name: string) =>
  (await m.getSingleMetric(name)?.get())?.values.reduce((n, v) => n + v.value, 0) ?? 0;

async function setup(sites: { url: string }[], dir: string) {
  const metrics = new Registry();
  const queue = createRetentionQueue(
    {
      dir,
      maxBytes: 16 * 1024 * 1024,
      maxAgeSeconds: 3600,
      segmentBytes: 64 * 1024,
      fsync: false,
      batchMaxEvents: 10,
      batchMaxBytes: 64 * 1024,
    },
    { metrics, logger: silentLogger },
  );
  await queue.open();
  const clients = sites.map((s, i) =>
    createSiteClient({ url: s.url, token: `vgk_token_of_site_${i}_0123456789` }, { timeoutMs: 2000 }),
  );
  const forwarder = createForwarder(
    { probeIntervalMs: 200, retryInitialMs: 20, retryMaxMs: 200 },
    { queue, clients, metrics, logger: silentLogger },
  );
  await forwarder.start();
  return { queue, forwarder, metrics };
}

test('events go to the first site; on 5xx to the next; back to the first once its probe answers; each committed once', {
  timeout: 60_000,
}, async () => {
  const a = await fakeSite();
  const b = await fakeSite();
  const { queue, forwarder, metrics } = await setup([a, b], join(root, 'failover'));
  try {
    await queue.append(Array.from({ length: 30 }, (_, i) => event(i)));
    await until('site a has 30', () => a.ids.length === 30);
    assert.equal(forwarder.activeEndpoint(), new URL(a.url).host);
    assert.deepEqual([...a.tokens], ['Bearer vgk_token_of_site_0_0123456789'], 'each site gets its own key');

    a.mode = 'fail';
    await queue.append(Array.from({ length: 30 }, (_, i) => event(100 + i)));
    await until('site b has 30', () => b.ids.length === 30);
    assert.equal(a.ids.length, 30, 'a committed nothing while failing');
    assert.equal(await value(metrics, 'vigil_collect_failovers_total'), 1);
    assert.ok((await value(metrics, 'vigil_collect_retries_total')) >= 1);

    a.mode = 'ok';
    await until('the probe brings a back', () => forwarder.activeEndpoint() === new URL(a.url).host);
    await queue.append(Array.from({ length: 10 }, (_, i) => event(200 + i)));
    await until('site a has 40', () => a.ids.length === 40);
    assert.equal(b.ids.length, 30, 'b got only what a could not take');
    assert.equal(await value(metrics, 'vigil_collect_failbacks_total'), 1);
    assert.equal(await value(metrics, 'vigil_collect_forwarded_events_total'), 70);
    assert.equal(queue.stats().events, 0, 'everything committed left the queue');
    const all = [...a.ids, ...b.ids];
    assert.equal(new Set(all).size, all.length, 'no event was sent twice');
  } finally {
    await forwarder.stop(Date.now() + 2000);
    await queue.close();
    a.server.close();
    b.server.close();
  }
});

test('with every site down nothing leaves the queue; the first site to come back gets it all', {
  timeout: 60_000,
}, async () => {
  const a = await fakeSite();
  const b = await fakeSite();
  const bUrl = b.url;
  await new Promise<void>((r) => b.server.close(() => r()));
  a.mode = 'fail';
  const { queue, forwarder, metrics } = await setup([a, { url: bUrl }], join(root, 'all-down'));
  try {
    await queue.append(Array.from({ length: 25 }, (_, i) => event(i)));
    await until('both tried', () => a.requests > 1);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(queue.stats().events, 25, 'still queued');
    assert.equal(forwarder.health().ok, false);
    assert.equal(forwarder.activeEndpoint(), undefined);
    a.mode = 'ok';
    await until('a has all 25', () => a.ids.length === 25);
    await until('the queue is empty', () => queue.stats().events === 0);
    assert.ok((await value(metrics, 'vigil_collect_retries_total')) >= 2);
  } finally {
    await forwarder.stop(Date.now() + 2000);
    await queue.close();
    a.server.close();
  }
});

test('a batch a site refuses whole (413) leaves the queue, counted as rejected, and the next goes on', {
  timeout: 30_000,
}, async () => {
  const a = await fakeSite();
  a.mode = 'refuse';
  const { queue, forwarder, metrics } = await setup([a], join(root, 'refused'));
  try {
    await queue.append(Array.from({ length: 10 }, (_, i) => event(i)));
    await until('refused', () => queue.stats().events === 0);
    assert.equal(await value(metrics, 'vigil_collect_rejected_events_total'), 10);
    a.mode = 'ok';
    await queue.append([event(50)]);
    await until('a has it', () => a.ids.length === 1);
    assert.deepEqual(a.ids, ['e50']);
  } finally {
    await forwarder.stop(Date.now() + 2000);
    await queue.close();
    a.server.close();
  }
});
