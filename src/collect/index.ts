/**
 * The collector (`vigil collect`): a light process for collection sites. It receives syslog (UDP, TCP, TLS,
 * RELP) and HTTP NDJSON with the node's own intakes and normalizer, keeps every event in a durable local
 * queue (acknowledging senders only after fsync), and forwards it to the sites in order of preference,
 * deleting it only once a site committed it.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { splitAddr } from '../api/config.ts';
import { createHttpIntake, createIdempotencyKeys } from '../intake/http/index.ts';
import { createSyslogIntake, type SyslogAddresses, type SyslogIntake } from '../intake/syslog/index.ts';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { createNormalizer } from '../parse/index.ts';
import type { CollectConfig } from './config.ts';
import { createForwarder, type Forwarder } from './forwarder.ts';
import { createHttpListener, type HttpListener } from './http-listener.ts';
import { createRetentionQueue, type RetentionQueue } from './queue.ts';
import { createSiteClient } from './site-client.ts';

export { type CollectConfig, collectConfigSchema } from './config.ts';
export { createEndpointSelector, type EndpointSelector } from './endpoints.ts';
export { createRetentionQueue, QueueFullError, type RetentionQueue } from './queue.ts';

/** The running collector and where it listens. */
export interface Collector extends Component {
  addresses(): SyslogAddresses & { http?: number; metrics?: number };
  queue(): RetentionQueue;
  forwarder(): Forwarder;
}

/** The tenant the collector's own intakes stamp; a site replaces it with its collector key's tenant. */
const LOCAL_TENANT = 'default';

/** Another collector holds the data folder. */
export class CollectLockedError extends VigilError {
  constructor(dir: string, pid: number) {
    super('collect_locked', `the collector data folder ${dir} is in use by process ${pid}: one collector per folder`);
    this.name = 'CollectLockedError';
  }
}

/** Creates the collector; it opens nothing until start(). */
export function createCollector(config: CollectConfig, ctx: { metrics: Registry; logger: Logger }): Collector {
  const { metrics, logger } = ctx;
  const queue = createRetentionQueue(
    {
      dir: join(config.data_dir, 'queue'),
      maxBytes: config.queue.max_bytes,
      maxAgeSeconds: config.queue.max_age_seconds,
      segmentBytes: config.queue.segment_bytes,
      fsync: config.queue.fsync,
      batchMaxEvents: config.forward.batch_max_events,
      batchMaxBytes: config.forward.batch_max_bytes,
    },
    { metrics, logger },
  );
  const clients = config.forward.endpoints.map((e) =>
    createSiteClient(e, { timeoutMs: config.forward.request_timeout_ms }),
  );
  const forwarder = createForwarder(
    {
      probeIntervalMs: config.forward.probe_interval_ms,
      retryInitialMs: config.forward.retry_initial_ms,
      retryMaxMs: config.forward.retry_max_ms,
    },
    { queue, clients, metrics, logger },
  );
  const normalizer = createNormalizer(config.parse);
  const publish = (events: Parameters<RetentionQueue['append']>[0]) => queue.append(events);
  let syslog: SyslogIntake | undefined;
  if (config.syslog.enabled) {
    syslog = createSyslogIntake(config.syslog, {
      publish,
      parse: (line, pctx) => normalizer.fromSyslog(line, pctx),
      metrics,
      logger: logger.child({ component: 'syslog' }),
    });
  }
  const intake = createHttpIntake(
    {
      max_event_bytes: config.http.max_event_bytes,
      max_events_per_request: config.http.max_events_per_request,
      idempotency_max_keys: config.http.idempotency_max_keys,
      // A collector's events go to its spool, not to a store: its requests are normalized on the event loop.
      threads: 0,
      tenant: LOCAL_TENANT,
    },
    {
      normalizer,
      publish,
      metrics,
      keys: createIdempotencyKeys({
        dir: join(config.data_dir, 'ingest-keys'),
        maxKeys: config.http.idempotency_max_keys,
        metrics,
        logger,
      }),
    },
  );
  let started = false;
  const health = (): ComponentHealth => {
    if (!started) return { ok: false, detail: 'not started' };
    const parts = [syslog, listener].filter((c): c is SyslogIntake | HttpListener => c !== undefined);
    const bad = parts.map((p) => ({ name: p.name, ...p.health() })).filter((h) => !h.ok);
    // Ready means "takes events": a collector with every site down still queues, so it stays ready; the
    // sites' state is told in the detail.
    const sites = forwarder.health();
    if (queue.full()) bad.push({ name: 'queue', ok: false, detail: 'full (queue.max_bytes): new events are refused' });
    if (bad.length > 0) return { ok: false, detail: bad.map((h) => `${h.name}: ${h.detail}`).join('; ') };
    return sites.detail ? { ok: true, detail: sites.detail } : { ok: true };
  };
  const listener = createHttpListener(config.http, { intake, tenant: LOCAL_TENANT, metrics, logger, health });
  let metricsServer: http.Server | undefined;
  const lockFile = join(config.data_dir, 'collect.pid');

  return {
    name: 'collect',
    async start() {
      mkdirSync(config.data_dir, { recursive: true });
      takeLock(lockFile, config.data_dir);
      await queue.open();
      await forwarder.start();
      if (syslog) await syslog.start();
      await listener.start();
      if (config.metrics.addr !== undefined) metricsServer = await serveMetrics(config.metrics.addr, metrics);
      started = true;
      const s = queue.stats();
      logger.info(
        { queued_events: s.events, endpoints: clients.map((c) => c.name), ...this.addresses() },
        'The collector is running.',
      );
    },
    async stop(deadline) {
      started = false;
      // Intake first (senders get their last answers), then the forwarder, then the queue.
      await syslog?.stop(deadline);
      await listener.stop(deadline);
      if (metricsServer) {
        const server = metricsServer;
        metricsServer = undefined;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // A scraper's idle keep-alive connection would hold close() open for good.
        server.closeAllConnections();
        await closed;
      }
      await forwarder.stop(deadline);
      await queue.close();
      rmSync(lockFile, { force: true });
    },
    health,
    addresses() {
      const m = metricsServer?.address();
      return {
        ...(syslog?.addresses() ?? {}),
        ...(listener.port() !== undefined ? { http: listener.port() } : {}),
        ...(m && typeof m === 'object' ? { metrics: m.port } : {}),
      };
    },
    queue: () => queue,
    forwarder: () => forwarder,
  };
}

/** Writes our pid in the lock file; a file left by a dead process (kill -9) is taken over. */
function takeLock(file: string, dir: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(file, 'utf8').trim());
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid))
        throw new CollectLockedError(dir, pid);
      rmSync(file, { force: true });
    }
  }
  throw new CollectLockedError(dir, -1);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Prometheus text at GET /metrics; nothing else. */
async function serveMetrics(addr: string, registry: Registry): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  const { host, port } = splitAddr(addr);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
