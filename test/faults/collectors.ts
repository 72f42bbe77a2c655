/**
 * What the site fault test (two-sites.test.ts) needs around `vigil collect`: collectors as child processes
 * of bin/vigil (stopped by PID, restartable on the same queue folder), a TCP gate that can cut one
 * collector's way to the sites, the collectors' Prometheus figures, and the senders in front of them (HTTP
 * NDJSON with an Idempotency-Key and the event's own time, so that a batch resent to the other collector is
 * the same events; plain TCP syslog).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from '../harness/ports.ts';

const BIN = resolve(import.meta.dirname, '../../bin/vigil');

/** One site endpoint of a collector: the site's balancer (or node) URL and its collector key there. */
export interface Endpoint {
  name: string;
  url: string;
  token: string;
}

/** A collector process, restartable on the same config and queue folder. */
export interface CollectorProc {
  readonly name: string;
  /** Base URL of its HTTP listener (`POST /api/v1/ingest`). */
  readonly url: string;
  /** Its syslog port (UDP and TCP). */
  readonly syslogPort: number;
  pid(): number | undefined;
  /** Spawns it and waits for its /health/ready (ready means it takes events, whatever the sites do). */
  start(): Promise<void>;
  kill9(): Promise<void>;
  /** SIGTERM, SIGKILL after 20 s. */
  stop(): Promise<void>;
  /** Its /metrics, parsed: `name{labels}` -> value. */
  metrics(): Promise<Map<string, number>>;
  output(): string;
}

/** Writes the collector's config under `dir/<name>` and returns the process handle (not started). */
export async function collectorProc(dir: string, name: string, endpoints: Endpoint[]): Promise<CollectorProc> {
  const home = join(dir, name);
  mkdirSync(home, { recursive: true });
  const [httpPort, syslogPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  const configFile = join(home, 'collect.yml');
  const logFile = join(home, 'collect.log');
  writeFileSync(
    configFile,
    stringify({
      data_dir: join(home, 'data'),
      log: { level: process.env.DEBUG_VIGIL_TESTS ? 'info' : 'warn' },
      syslog: { host: '127.0.0.1', udp_port: syslogPort, tcp_port: syslogPort, batch_max_wait_ms: 20 },
      http: { addr: `127.0.0.1:${httpPort}` },
      queue: { max_bytes: 64 * 1024 * 1024, max_age_seconds: 3600 },
      forward: {
        endpoints: endpoints.map((e) => ({ url: e.url, token: e.token, name: e.name })),
        batch_max_events: 200,
        // Generous: a loaded machine can take seconds to commit a batch; a timeout only means a resend.
        request_timeout_ms: 10_000,
        probe_interval_ms: 1000,
        retry_initial_ms: 100,
        retry_max_ms: 1000,
      },
      metrics: { addr: `127.0.0.1:${metricsPort}` },
    }),
    { mode: 0o600 },
  );
  let proc: ChildProcess | undefined;
  let out = '';
  const url = `http://127.0.0.1:${httpPort}`;
  const gone = (p: ChildProcess) => p.exitCode !== null || p.signalCode !== null;
  return {
    name,
    url,
    syslogPort,
    pid: () => proc?.pid,
    async start() {
      const p = spawn(BIN, ['collect', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      proc = p;
      appendFileSync(logFile, `--- ${new Date().toISOString()} starting ${name}\n`);
      const keep = (d: Buffer) => {
        out = (out + d).slice(-20000);
        // Kept whole on disk too (KEEP_FAULT_DIR=1 keeps the folder), for a failure's post-mortem.
        appendFileSync(logFile, d);
        if (process.env.DEBUG_VIGIL_TESTS) process.stderr.write(d);
      };
      p.stdout?.on('data', keep);
      p.stderr?.on('data', keep);
      const readyMs = Number(process.env.TEST_VIGIL_READY_MS ?? 90_000);
      const deadline = Date.now() + readyMs;
      while (Date.now() < deadline) {
        if (gone(p)) throw new Error(`collector ${name} exited (${p.exitCode ?? p.signalCode}):\n${out}`);
        try {
          const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2000) });
          await res.arrayBuffer();
          if (res.status === 200) return;
        } catch {
          // not listening yet
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`collector ${name} not ready within ${readyMs / 1000} s:\n${out}`);
    },
    kill9: () =>
      new Promise<void>((done) => {
        const p = proc;
        if (!p || gone(p)) return done();
        p.once('exit', () => done());
        p.kill('SIGKILL');
      }),
    async stop() {
      const p = proc;
      if (!p || gone(p)) return;
      const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
      await new Promise<void>((done) => {
        p.once('exit', () => done());
        p.kill('SIGTERM');
      });
      clearTimeout(timer);
    },
    async metrics() {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) });
      return parseMetrics(await res.text());
    },
    output: () => out,
  };
}

/** Prometheus text -> `name{labels}` (as written) -> value; comments skipped. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    out.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return out;
}

/** The sum of a metric over all its label sets (`vigil_collect_forwarded_events_total` over endpoints). */
export function metricSum(m: Map<string, number>, name: string): number {
  let sum = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) sum += v;
  return sum;
}

/** A metric by label set, as `{endpoint="b"}`: one value of the labels given (others any). */
export function metricWith(m: Map<string, number>, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const [k, v] of m) if (k.startsWith(`${name}{`) && want.every((w) => k.includes(w))) sum += v;
  return sum;
}

/**
 * A TCP gate in front of one address: open, it relays; cut, it resets every relayed connection and every new
 * one (a collector host whose uplink to the sites is down). Returns the URL to use instead of `target`.
 */
export async function tcpGate(
  target: string,
): Promise<{ url: string; cut(): void; open(): void; close(): Promise<void> }> {
  const to = new URL(target);
  let isOpen = true;
  const live = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (!isOpen) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(Number(to.port), to.hostname);
    live.add(client);
    live.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      live.delete(client);
      live.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const cut = () => {
    isOpen = false;
    for (const s of live) s.resetAndDestroy();
    live.clear();
  };
  return {
    url: `http://127.0.0.1:${port}`,
    cut,
    open() {
      isOpen = true;
    },
    async close() {
      cut();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** One batch a collector acknowledged: which collector, when it was first sent and when acknowledged. */
export interface AckedBatch {
  collector: string;
  seqs: string[];
  firstSentAt: number;
  sentAt: number;
  ackedAt: number;
}

/** A sender of HTTP NDJSON to collectors. */
export interface Sender {
  readonly name: string;
  batches: AckedBatch[];
  seqs(): string[];
  /** Longest time from a failed attempt to the next acknowledgement (by any collector), in ms. */
  longestRefusalMs(): number;
  /** Attempts that failed (refused, reset, non-200). */
  failures(): number;
  stop(): Promise<void>;
}

/**
 * Sends `size` events every `everyMs` to the first collector of `collectors()` that acknowledges (200), as an
 * HTTP sender configured with two collector hosts does. Each batch has its own Idempotency-Key and each event
 * its own `@timestamp`, kept for every resend of the batch: the collectors derive the event id from the key
 * and the line, so a batch resent to the other collector after a lost answer is the same events and a site
 * stores it once. `word` is in every message, for searching.
 */
export function httpSender(
  name: string,
  word: string,
  collectors: () => CollectorProc[],
  opts: { size: number; everyMs: number },
): Sender {
  const batches: AckedBatch[] = [];
  let stopped = false;
  let refusedSince: number | undefined;
  let longest = 0;
  let failures = 0;
  const loop = (async () => {
    for (let n = 0; !stopped; n++) {
      const at = new Date().toISOString();
      const seqs = Array.from({ length: opts.size }, (_, i) => `${name}-${n}-${i}`);
      const body = seqs
        .map((seq) => JSON.stringify({ '@timestamp': at, message: `${word} seq=${seq}`, seq }))
        .join('\n');
      const firstSentAt = Date.now();
      let acked: AckedBatch | undefined;
      while (!acked) {
        for (const c of collectors()) {
          const sentAt = Date.now();
          try {
            const res = await fetch(`${c.url}/api/v1/ingest`, {
              method: 'POST',
              headers: { 'content-type': 'application/x-ndjson', 'idempotency-key': `${word}-${name}-${n}` },
              body,
              signal: AbortSignal.timeout(10_000),
            });
            await res.arrayBuffer();
            if (res.status === 200) {
              acked = { collector: c.name, seqs, firstSentAt, sentAt, ackedAt: Date.now() };
              break;
            }
          } catch {
            // refused, reset or timed out: the next collector
          }
          failures++;
          refusedSince ??= sentAt;
        }
        if (acked) break;
        // A batch no collector took is not given up: it is the same batch (same key) until one takes it.
        await new Promise((r) => setTimeout(r, 200));
      }
      batches.push(acked);
      if (refusedSince !== undefined) {
        longest = Math.max(longest, acked.ackedAt - refusedSince);
        refusedSince = undefined;
      }
      if (!stopped) await new Promise((r) => setTimeout(r, opts.everyMs));
    }
  })();
  return {
    name,
    batches,
    seqs: () => batches.flatMap((b) => b.seqs),
    longestRefusalMs: () => longest,
    failures: () => failures,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/**
 * RFC 5424 lines on one plain TCP connection, one every `everyMs`. Plain TCP syslog has no acknowledgement:
 * a line counts as delivered once written on a connection that the collector (never killed here) closed
 * cleanly with us at stop.
 */
export async function tcpSyslogSender(
  name: string,
  word: string,
  collector: CollectorProc,
  everyMs: number,
): Promise<{ seqs: string[]; stop(): Promise<void> }> {
  const socket = net.connect(collector.syslogPort, '127.0.0.1');
  await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
  const written: string[] = [];
  let n = 0;
  const timer = setInterval(() => {
    const seq = `${name}-${n++}`;
    socket.write(`<13>1 ${new Date().toISOString()} branch-host app - - - ${word} seq=${seq}\n`);
    written.push(seq);
  }, everyMs);
  return {
    seqs: written,
    async stop() {
      clearInterval(timer);
      await new Promise<void>((r) => socket.end(r));
    },
  };
}
