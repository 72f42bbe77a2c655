/**
 * `npm run bench -- collect`: the collector's own cost, in one process. A collector (src/collect) takes
 * `--events` NDJSON events over HTTP from `--clients` senders in requests of `--batch`, queues them (fsync
 * on, then off, in the same run) and forwards them to a stand-in site on loopback that answers 200 at once
 * (no store: the site's cost is measured by the ingest benchmark). Reported: acknowledged events/s, the time
 * until the queue was empty, and CPU microseconds per event of the whole process (collector, senders and
 * stand-in site together: an upper bound of the collector's share).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { collectConfigSchema, createCollector } from '../src/collect/index.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { type Benchmark, intOption, progress, round } from './common.ts';

async function standInSite(): Promise<{ url: string; received: () => number; close: () => void }> {
  let received = 0;
  const server = http.createServer((req, res) => {
    let lines = 0;
    req.on('data', (d: Buffer) => {
      for (const b of d) if (b === 10) lines++;
    });
    req.on('end', () => {
      received += lines;
      res.writeHead(200, { 'content-type': 'application/json' }).end(`{"accepted":${lines},"rejected":[]}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received: () => received,
    close: () => server.close(),
  };
}

async function runOnce(opts: { events: number; clients: number; batch: number; fsync: boolean }) {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-collect-'));
  const site = await standInSite();
  const config = collectConfigSchema.parse({
    data_dir: dir,
    syslog: { enabled: false },
    http: { addr: '127.0.0.1:0' },
    queue: { fsync: opts.fsync },
    forward: { endpoints: [{ url: site.url, token: 'vgk_bench_0123456789abcdef' }] },
  });
  const collector = createCollector(config, { metrics: new Registry(), logger: silentLogger });
  await collector.start();
  const port = collector.addresses().http;
  const line = (i: number) =>
    JSON.stringify({
      '@timestamp': '2026-01-01T00:00:00Z',
      message: `bench event ${i} ${'x'.repeat(300)}`,
      host: { name: 'h' },
    });
  const requests = Math.ceil(opts.events / opts.batch);
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: opts.clients }, async () => {
      for (let r = next++; r < requests; r = next++) {
        const n = Math.min(opts.batch, opts.events - r * opts.batch);
        const body = Array.from({ length: n }, (_, k) => line(r * opts.batch + k)).join('\n');
        const res = await fetch(`http://127.0.0.1:${port}/api/v1/ingest`, { method: 'POST', body });
        if (res.status !== 200) throw new Error(`collector answered ${res.status}: ${await res.text()}`);
        await res.arrayBuffer();
      }
    }),
  );
  const ackedMs = performance.now() - t0;
  while (site.received() < opts.events) await new Promise((r) => setTimeout(r, 5));
  const drainedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await collector.stop(Date.now() + 5000);
  site.close();
  rmSync(dir, { recursive: true, force: true });
  return {
    acknowledged_events_per_s: round(opts.events / (ackedMs / 1000)),
    forwarded_all_ms: round(drainedMs),
    cpu_us_per_event: round(((cpu.user + cpu.system) / opts.events) * 1, 1),
  };
}

export const collectBenchmark: Benchmark = {
  name: 'collect',
  description: 'collector: acknowledged events/s and CPU per event, queue fsync on and off, to a stand-in site',
  async run(opts) {
    const events = intOption(opts, 'events', 100_000);
    const clients = intOption(opts, 'clients', 4);
    const batch = intOption(opts, 'batch', 1000);
    progress(`collect: ${events} events, fsync on`);
    const on = await runOnce({ events, clients, batch, fsync: true });
    progress(`collect: ${events} events, fsync off`);
    const off = await runOnce({ events, clients, batch, fsync: false });
    const ratio = on.cpu_us_per_event / off.cpu_us_per_event;
    return {
      params: { events, clients, batch, event_bytes: 370 },
      results: { fsync_on: on, fsync_off: off, cpu_fsync_on_vs_off: round(ratio, 2) },
      targets: { cpu_fsync_on_vs_off: '<= 1.5 (the fsync is one per group commit, not per event)' },
      met: { cpu_fsync_on_vs_off: ratio <= 1.5 },
    };
  },
};
