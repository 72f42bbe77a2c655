import { randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import { createSpool, type Spool } from '../bus/spool/index.ts';
import { OverloadError, VigilError } from '../lib/errors.ts';
import type { NormalizedEvent } from '../lib/event.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge } from '../lib/metrics.ts';
import { encodeCollected } from '../intake/http/index.ts';

/** One batch waiting in the queue: the request body a site will get, as it was appended. */
export interface QueuedBatch {
  /** NDJSON of collected events (see `encodeCollected`). */
  body: Uint8Array;
  events: number;
  /** When it was appended (epoch ms). */
  createdAt: number;
}

/** What the queue holds right now. */
export interface QueueStats {
  events: number;
  bytes: number;
  batches: number;
  /** When the oldest batch was appended (epoch ms), if any. */
  oldestAt?: number;
}

/**
 * The collector's retention queue on disk. `append` resolves once the events are written and fdatasync'ed:
 * only then is the sender acknowledged. One consumer (the forwarder) reads the oldest batch with `head`,
 * and removes it with `ack` once a site committed it, or with `purgeExpired` once it is older than the
 * retention; both act on the head, so they must not run concurrently (the forwarder calls both).
 */
export interface RetentionQueue {
  open(): Promise<void>;
  /** Cuts the events into batches of the forward size and appends them durably, in one write and one sync. */
  append(events: readonly NormalizedEvent[]): Promise<void>;
  head(): Promise<QueuedBatch | undefined>;
  ack(): Promise<void>;
  /** Drops every batch older than the retention (counted, logged); returns the events dropped. */
  purgeExpired(now?: number): Promise<number>;
  stats(): QueueStats;
  /** True from a refusal for lack of room until a batch leaves the queue: the collector takes no events. */
  full(): boolean;
  /** Resolves once something is queued (at once if it is), or when `signal` aborts. */
  appended(signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export interface RetentionQueueOptions {
  dir: string;
  maxBytes: number;
  maxAgeSeconds: number;
  segmentBytes: number;
  fsync: boolean;
  batchMaxEvents: number;
  batchMaxBytes: number;
}

/** The queue refused events: it is full. */
export class QueueFullError extends OverloadError {
  constructor(message: string) {
    super(message, 5, 503, 'collect_queue_full');
    this.name = 'QueueFullError';
  }
}

/**
 * Creates the queue over `opts.dir`, a spool (src/bus/spool: checksummed records, torn tails cut on open,
 * segments deleted once forwarded) that never refuses by age: retention here purges the oldest instead,
 * since a collector's queue is for outages of every site and must keep taking new events.
 */
export function createRetentionQueue(
  opts: RetentionQueueOptions,
  deps: { metrics: Registry; logger: Logger },
): RetentionQueue {
  const log = deps.logger.child({ component: 'collect-queue' });
  const spool: Spool = createSpool(
    {
      dir: opts.dir,
      max_bytes: opts.maxBytes,
      // The spool's own age refusal is kept out of the way: purgeExpired removes batches long before it.
      max_age_seconds: opts.maxAgeSeconds * 10,
      segment_bytes: opts.segmentBytes,
      fsync: opts.fsync,
    },
    { dir: opts.dir, metrics: deps.metrics, logger: log },
  );
  const purged = counter(
    deps.metrics,
    'vigil_collect_purged_events_total',
    'Events dropped from the collector queue before any site took them, by reason (max_age: older than queue.max_age_seconds).',
    ['reason'],
  );
  const refused = counter(
    deps.metrics,
    'vigil_collect_refused_events_total',
    'Events the collector refused because its queue was full (queue.max_bytes); the sender was answered with an error.',
  );
  const depthEvents = gauge(deps.metrics, 'vigil_collect_queue_events', 'Events in the collector queue.');
  const depthBytes = gauge(
    deps.metrics,
    'vigil_collect_queue_bytes',
    'Bytes of the collector queue (records with framing).',
  );
  const oldestAge = gauge(
    deps.metrics,
    'vigil_collect_queue_oldest_age_seconds',
    'Age of the oldest event in the collector queue (0 when empty).',
  );
  let timer: NodeJS.Timeout | undefined;
  let refusing = false;

  const update = () => {
    const s = spool.stats();
    depthEvents.set(s.events);
    depthBytes.set(s.bytes);
    oldestAge.set(s.oldestAt === undefined ? 0 : Math.max(0, (Date.now() - s.oldestAt) / 1000));
  };

  /** Batches of at most batchMaxEvents and (unless one event alone passes it) batchMaxBytes. */
  const cut = (events: readonly NormalizedEvent[]) => {
    const batches: { lines: string[]; bytes: number }[] = [];
    let current: { lines: string[]; bytes: number } = { lines: [], bytes: 0 };
    for (const e of events) {
      const line = `${encodeCollected(e)}\n`;
      const size = Buffer.byteLength(line);
      if (
        current.lines.length > 0 &&
        (current.lines.length >= opts.batchMaxEvents || current.bytes + size > opts.batchMaxBytes)
      ) {
        batches.push(current);
        current = { lines: [], bytes: 0 };
      }
      current.lines.push(line);
      current.bytes += size;
    }
    if (current.lines.length > 0) batches.push(current);
    return batches;
  };

  return {
    async open() {
      await spool.open();
      update();
      timer = setInterval(update, 1000);
      timer.unref();
    },

    async append(events) {
      if (events.length === 0) return;
      const entries = cut(events).map((b) => ({
        id: randomUUID(),
        subject: 'collect',
        encoding: 'ndjson',
        events: b.lines.length,
        body: Buffer.from(b.lines.join('')),
      }));
      try {
        await spool.append(entries);
      } catch (err) {
        if (err instanceof OverloadError) {
          refusing = true;
          refused.inc(events.length);
          const s = spool.stats();
          throw new QueueFullError(
            `the collector queue in ${opts.dir} is full (${s.bytes} of ${opts.maxBytes} bytes, queue.max_bytes): no site has taken events for ${
              s.oldestAt === undefined ? 0 : Math.round((Date.now() - s.oldestAt) / 1000)
            } s`,
          );
        }
        throw new VigilError('collect_queue_io', `the collector queue in ${opts.dir} could not be written`, {
          status: 503,
          retryable: true,
          cause: err,
        });
      } finally {
        update();
      }
    },

    async head() {
      const entry = await spool.peek();
      if (!entry) return undefined;
      return { body: entry.body, events: entry.events, createdAt: entry.createdAt };
    },

    async ack() {
      await spool.commit();
      refusing = false;
      update();
    },

    async purgeExpired(now = Date.now()) {
      const limit = now - opts.maxAgeSeconds * 1000;
      let dropped = 0;
      let batches = 0;
      let oldest: number | undefined;
      for (let s = spool.stats(); s.oldestAt !== undefined && s.oldestAt < limit; s = spool.stats()) {
        const entry = await spool.peek();
        if (!entry) break;
        oldest ??= entry.createdAt;
        dropped += entry.events;
        batches++;
        await spool.commit();
      }
      if (dropped > 0) {
        refusing = false;
        purged.inc({ reason: 'max_age' }, dropped);
        log.warn(
          {
            events: dropped,
            batches,
            oldest: new Date(oldest ?? now).toISOString(),
            max_age_seconds: opts.maxAgeSeconds,
          },
          'Purged events older than the queue retention that no site took.',
        );
        update();
      }
      return dropped;
    },

    stats() {
      const s = spool.stats();
      return { events: s.events, bytes: s.bytes, batches: s.batches, oldestAt: s.oldestAt };
    },

    full: () => refusing,

    appended: (signal) => spool.appended(signal),

    async close() {
      if (timer) clearInterval(timer);
      await spool.close();
    },
  };
}
