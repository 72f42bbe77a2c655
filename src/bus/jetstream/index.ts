import { join } from 'node:path';
import {
  AckPolicy,
  type Consumer,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  type StreamConfig,
  StorageType,
} from '@nats-io/jetstream';
import { connect, headers, type NatsConnection, nanos } from '@nats-io/transport-node';
import type { Registry } from 'prom-client';
import type { ComponentHealth } from '../../lib/component.ts';
import { errorMessage, OverloadError, VigilError } from '../../lib/errors.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge, histogram } from '../../lib/metrics.ts';
import { redactUrl, redactUrls } from '../../lib/redact.ts';
import type { BatchHandler, Bus } from '../index.ts';
import { createSpool, type SpoolEntry, type SpoolStats } from '../spool/index.ts';
import { decodeBatch, type EncodedBatch, ENCODING_HEADER, EVENTS_HEADER, encodeBatches } from './codec.ts';
import type { JetStreamBusConfig } from './config.ts';

export { batchId, decodeBatch, type EncodedBatch, encodeBatches, tenantToken } from './codec.ts';
export { type JetStreamBusConfig, type JetStreamBusConfigInput, jetStreamBusConfigSchema } from './config.ts';

/** Consecutive messages of the stream handed to a consumer at once. */
export interface StreamBatch {
  events: NormalizedEvent[];
  /** Stream sequence of the first and last message of the batch. */
  firstSeq: number;
  lastSeq: number;
  messages: number;
  /** Messages of the stream left for this consumer after the batch (as the server counted at delivery). */
  pending: number;
}

/** Handles a batch; resolving acknowledges its messages, rejecting retries it (the batch is never skipped). */
export type StreamBatchHandler = (batch: StreamBatch) => Promise<void>;

/** How a consumer is set up. */
export interface StreamConsumeOptions {
  /**
   * true: a durable consumer named after the subscriber, kept by the cluster: it resumes where it was
   * acknowledged after a restart. false: an ephemeral one that starts at new messages and goes with the process.
   */
  durable?: boolean;
  /** Where a durable consumer starts when it is created (it exists already: ignored). Default: the first message. */
  startSequence?: number;
  /**
   * How long a batch may wait for more messages before the handler gets it (0: at once), while it holds
   * fewer than `batch_max_events`: fewer, larger writes for a handler whose cost is per call.
   */
  lingerMs?: number;
}

/** A running consumer. */
export interface StreamSubscription {
  readonly name: string;
  /** Stops pulling, lets the batch in hand finish, and leaves the rest unacknowledged for redelivery. */
  stop(): Promise<void>;
}

/** The identity and extent of the stream. `created` changes when the stream is deleted and made again. */
export interface StreamPosition {
  stream: string;
  created: string;
  firstSeq: number;
  lastSeq: number;
  messages: number;
}

/** A consumer as the cluster sees it. */
export interface ConsumerPosition {
  /** Every message up to this stream sequence is acknowledged. */
  ackFloor: number;
  /** The last stream sequence delivered. */
  delivered: number;
  /** Messages not yet delivered. */
  numPending: number;
  /** Messages delivered and not yet acknowledged. */
  numAckPending: number;
}

/** The replicated log as its consumers see it (the store's materializer depends on this, not on NATS). */
export interface EventStream {
  /** Adds a consumer; before start() it begins with the bus, after it at once. */
  subscribeStream(name: string, handler: StreamBatchHandler, opts?: StreamConsumeOptions): StreamSubscription;
  /** Asks the cluster for the stream's identity and extent; rejects while it cannot answer. */
  streamPosition(): Promise<StreamPosition>;
  /** Asks the cluster for a durable consumer's position; undefined when it does not exist. */
  consumerPosition(name: string): Promise<ConsumerPosition | undefined>;
  /** Deletes a durable consumer (so that it is made again from a chosen sequence). */
  deleteConsumer(name: string): Promise<void>;
}

/** Where the publish path stands. */
export interface JetStreamBusStats {
  connected: boolean;
  /** `direct`: publishes go to JetStream; `spool`: they go to the local spool until it is drained. */
  mode: 'direct' | 'spool';
  spool: SpoolStats;
  /** Longest time one publish took to be acknowledged (JetStream or spool) since start, in ms. */
  longestPublishMs: number;
}

/** The Bus over NATS JetStream, with a local spool for when the cluster cannot take a publish. */
export interface JetStreamBus extends Bus, EventStream {
  /** Resolves once connected and the stream exists (tests and the admin API; publish does not need it). */
  ready(): Promise<void>;
  stats(): JetStreamBusStats;
  /**
   * The JetStream client and manager of this bus's connection while it is ready (undefined otherwise), and
   * the replica count streams of this cluster use: other replicated logs (matches, alerts) share them.
   */
  jetstream(): { js: JetStreamClient; jsm: JetStreamManager; replicas: number } | undefined;
}

/** A pulled message and its events (none when it could not be decoded). */
interface Pulled {
  msg: JsMsg;
  events?: NormalizedEvent[];
  /** When it was pulled (epoch ms). */
  at: number;
}

interface ConsumerSlot {
  name: string;
  handler: StreamBatchHandler;
  opts: StreamConsumeOptions;
  stopped: boolean;
  loop?: Promise<void>;
  active?: { stop(): void };
  wake?: () => void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** Events a consumer decodes before it lets the event loop turn (tens of milliseconds of gunzip and JSON). */
export const DECODE_SLICE_EVENTS = 2000;

function isNotFound(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

/**
 * Creates the JetStream bus. `publish` resolves once JetStream acknowledged the batch (a majority of the
 * stream's replicas has it) or, when the cluster cannot take it within `publish_max_wait_ms`, once it is
 * fsynced in the local spool; a forwarder then sends the spool to JetStream in order, each batch with its
 * original Nats-Msg-Id. Nothing is opened until start(); the bus starts even when NATS is unreachable.
 */
export function createJetStreamBus(
  config: JetStreamBusConfig,
  deps: { dataDir: string; metrics: Registry; logger: Logger },
): JetStreamBus {
  const log = deps.logger;
  const spool = createSpool(config.spool, {
    dir: config.spool.dir || join(deps.dataDir, 'spool'),
    metrics: deps.metrics,
    logger: log.child({ component: 'spool' }),
  });
  const slots: ConsumerSlot[] = [];
  let nc: NatsConnection | undefined;
  let js: JetStreamClient | undefined;
  let jsm: JetStreamManager | undefined;
  let connected = false;
  let streamReady = false;
  let started = false;
  let stopping = false;
  let mode: 'direct' | 'spool' = 'direct';
  let inflight = 0;
  let longestPublishMs = 0;
  let maxPayload = config.max_message_bytes;
  let lastError: string | undefined;
  let background: Promise<void>[] = [];
  const readyWaiters = new Set<() => void>();
  const halt = new AbortController();

  const pendingGauge = gauge(
    deps.metrics,
    'vigil_bus_pending_events',
    'Events accepted by the bus, not yet committed.',
  );
  const publishSeconds = histogram(
    deps.metrics,
    'vigil_bus_publish_seconds',
    'Time from publish to acknowledgement, by where the batch was committed (jetstream, spool).',
    ['via'],
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );
  const retries = counter(
    deps.metrics,
    'vigil_bus_publish_retries_total',
    'Publish attempts to JetStream that failed and were retried (direct or from the spool).',
  );
  const batchesTotal = counter(deps.metrics, 'vigil_bus_batches_total', 'Batches committed by the bus.');
  const spooledTotal = counter(deps.metrics, 'vigil_bus_spooled_batches_total', 'Messages written to the local spool.');
  const forwardedTotal = counter(
    deps.metrics,
    'vigil_bus_forwarded_batches_total',
    'Spooled messages forwarded to JetStream.',
  );
  const failures = counter(deps.metrics, 'vigil_bus_consumer_failures_total', 'Batches a consumer failed.', [
    'consumer',
  ]);
  const connectedGauge = gauge(
    deps.metrics,
    'vigil_bus_connected',
    '1 while connected to NATS with the stream in place.',
  );

  function setReady(value: boolean): void {
    streamReady = value;
    connectedGauge.set(value && connected ? 1 : 0);
    if (value) for (const wake of [...readyWaiters]) wake();
  }

  function isReady(): boolean {
    return connected && streamReady && js !== undefined;
  }

  /** Sleeps `ms`; wakes early on stop, and when `readyToo` once the bus is ready. */
  function pause(ms: number, readyToo = false): Promise<void> {
    if (stopping || (readyToo && isReady())) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        halt.signal.removeEventListener('abort', done);
        readyWaiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      t.unref();
      halt.signal.addEventListener('abort', done);
      if (readyToo) readyWaiters.add(done);
    });
  }

  /** Resolves when ready, when stopping, or after `ms`. */
  const waitReady = (ms: number) => pause(ms, true);

  function streamConfig(): Partial<StreamConfig> & { name: string } {
    return {
      name: config.stream,
      subjects: [`${config.subject_prefix}.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: config.replicas,
      max_age: nanos(config.max_age_seconds * 1000),
      max_bytes: config.max_bytes,
      duplicate_window: nanos(config.duplicate_window_ms),
      discard: DiscardPolicy.Old,
    };
  }

  async function ensureStream(m: JetStreamManager): Promise<void> {
    const want = streamConfig();
    try {
      const info = await m.streams.info(config.stream);
      const c = info.config;
      const differs =
        c.num_replicas !== want.num_replicas ||
        c.max_age !== want.max_age ||
        c.max_bytes !== want.max_bytes ||
        c.duplicate_window !== want.duplicate_window ||
        !c.subjects?.includes(want.subjects![0]);
      if (differs) {
        await m.streams.update(config.stream, {
          ...c,
          ...want,
          subjects: [...new Set([...(c.subjects ?? []), ...want.subjects!])],
        });
        log.info({ stream: config.stream, replicas: config.replicas }, 'The event stream settings were updated.');
      }
    } catch (err) {
      if (!isNotFound(err, JetStreamApiCodes.StreamNotFound)) throw err;
      await m.streams.add(want);
      log.info({ stream: config.stream, replicas: config.replicas }, 'The event stream was created.');
    }
  }

  /** Connects (retrying until stop), then keeps the stream in place; the client reconnects by itself after. */
  async function connectLoop(): Promise<void> {
    let attempt = 0;
    while (!stopping && !nc) {
      try {
        const conn = await connect({
          servers: config.servers,
          name: config.client_name || 'vigil',
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          pingInterval: config.ping_interval_ms,
          maxPingOut: 2,
          timeout: 2000,
        });
        if (stopping) {
          await conn.close();
          return;
        }
        nc = conn;
        connected = true;
        maxPayload = Math.min(config.max_message_bytes, (conn.info?.max_payload ?? config.max_message_bytes) - 4096);
        js = jetstream(conn, { timeout: config.publish_timeout_ms });
        void watchStatus(conn);
        log.info({ server: conn.getServer() }, 'Connected to NATS.');
      } catch (err) {
        attempt++;
        if (attempt === 1 || attempt % 20 === 0) {
          log.warn(
            // A server URL may carry credentials (nats://user:pass@host): logged redacted.
            { err: redactUrls(errorMessage(err)), servers: config.servers.map(redactUrl), attempt },
            'NATS is unreachable; publishes go to the local spool.',
          );
        }
        lastError = `NATS unreachable: ${redactUrls(errorMessage(err))}`;
        await pause(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
      }
    }
    attempt = 0;
    while (!stopping && nc && !streamReady) {
      try {
        jsm ??= await jetstreamManager(nc, { timeout: config.publish_timeout_ms });
        await ensureStream(jsm);
        setReady(true);
        lastError = undefined;
      } catch (err) {
        jsm = undefined;
        attempt++;
        lastError = `stream ${config.stream} not available: ${errorMessage(err)}`;
        if (attempt === 1 || attempt % 20 === 0)
          log.warn({ err: errorMessage(err), attempt }, 'The event stream is not available yet.');
        await pause(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
      }
    }
  }

  async function watchStatus(conn: NatsConnection): Promise<void> {
    for await (const s of conn.status()) {
      if (s.type === 'disconnect') {
        connected = false;
        connectedGauge.set(0);
        log.warn({ server: s.server }, 'Disconnected from NATS; reconnecting.');
      } else if (s.type === 'reconnect') {
        connected = true;
        connectedGauge.set(streamReady ? 1 : 0);
        log.info({ server: s.server }, 'Reconnected to NATS.');
        if (streamReady) setReady(true);
      }
    }
  }

  async function publishOnce(b: SpoolEntry, timeout: number): Promise<void> {
    const client = js;
    if (!client || !connected)
      throw new VigilError('bus_disconnected', 'not connected to NATS', { status: 503, retryable: true });
    const h = headers();
    h.set(ENCODING_HEADER, b.encoding);
    h.set(EVENTS_HEADER, String(b.events));
    const ack = await client.publish(b.subject, b.body, { msgID: b.id, timeout, headers: h });
    if (ack.stream !== config.stream) {
      throw new VigilError(
        'bus_wrong_stream',
        `subject ${b.subject} is stored by stream ${ack.stream}, not ${config.stream}`,
      );
    }
  }

  /** Publishes with retries until `deadline`; throws the last error when it passes. */
  async function publishUntil(b: EncodedBatch, deadline: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const left = deadline - Date.now();
      // Once another publish gave up, this one joins it in the spool instead of waiting its own deadline out:
      // if an attempt did land, the spool forwards it with the same Nats-Msg-Id and the stream drops the copy.
      if (left <= 0 || stopping || (attempt > 0 && mode === 'spool')) {
        throw new VigilError('bus_publish_failed', lastError ?? 'publish deadline passed', {
          status: 503,
          retryable: true,
        });
      }
      if (!isReady()) {
        await waitReady(Math.min(left, 250));
        continue;
      }
      try {
        await publishOnce(b, Math.max(100, Math.min(config.publish_timeout_ms, left)));
        return;
      } catch (err) {
        lastError = `publish failed: ${errorMessage(err)}`;
        retries.inc();
        // No responders / timeouts come in bursts while a stream leader is elected (seconds on 2.9).
        await sleep(Math.max(0, Math.min(deadline - Date.now(), 50 * 2 ** Math.min(attempt, 4))));
      }
    }
  }

  async function toSpool(batches: EncodedBatch[]): Promise<void> {
    await spool.append(batches);
    spooledTotal.inc(batches.length);
  }

  async function forwardLoop(): Promise<void> {
    let attempt = 0;
    while (!stopping) {
      if (spool.isEmpty()) {
        if (mode === 'spool') {
          mode = 'direct';
          log.info('The local spool is drained; publishing to JetStream directly again.');
        }
        await spool.appended(halt.signal);
        continue;
      }
      if (!isReady()) {
        await waitReady(1000);
        continue;
      }
      const entry = await spool.peek();
      if (!entry) {
        await spool.appended(halt.signal);
        continue;
      }
      try {
        await publishOnce(entry, config.publish_timeout_ms);
        await spool.commit();
        forwardedTotal.inc();
        batchesTotal.inc();
        if (attempt > 0) log.info({ attempts: attempt + 1 }, 'Forwarding the local spool to JetStream again.');
        attempt = 0;
      } catch (err) {
        attempt++;
        retries.inc();
        lastError = `forwarding the spool failed: ${errorMessage(err)}`;
        if (attempt === 1 || attempt % 50 === 0) {
          log.warn(
            { err: errorMessage(err), attempt, spooled: spool.stats().batches },
            'Forwarding the local spool failed; retrying.',
          );
        }
        // A stream removed by an operator is made again rather than blocking the spool forever.
        if (attempt % 25 === 0 && jsm) await ensureStream(jsm).catch(() => undefined);
        await pause(Math.min(2000, 50 * 2 ** Math.min(attempt, 6)));
      }
    }
  }

  // ---- consumers ----

  async function consumerConfig(slot: ConsumerSlot): Promise<string> {
    const m = jsm!;
    const base: Partial<ConsumerConfig> = {
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(config.consumer.ack_wait_ms),
      max_ack_pending: config.consumer.max_ack_pending,
      max_deliver: -1,
    };
    if (slot.opts.durable === false) {
      const info = await m.consumers.add(config.stream, {
        ...base,
        deliver_policy: DeliverPolicy.New,
        inactive_threshold: nanos(60000),
      });
      return info.name;
    }
    try {
      const info = await m.consumers.info(config.stream, slot.name);
      if (info.config.ack_wait !== base.ack_wait || info.config.max_ack_pending !== base.max_ack_pending) {
        await m.consumers.update(config.stream, slot.name, {
          ack_wait: base.ack_wait,
          max_ack_pending: base.max_ack_pending,
        });
      }
    } catch (err) {
      if (!isNotFound(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
      const start = slot.opts.startSequence ?? 0;
      await m.consumers.add(config.stream, {
        ...base,
        durable_name: slot.name,
        ...(start > 1
          ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start }
          : { deliver_policy: DeliverPolicy.All }),
      });
      log.info({ consumer: slot.name, start_seq: start || 1 }, 'A durable consumer was created.');
    }
    return slot.name;
  }

  async function consumerLoop(slot: ConsumerSlot): Promise<void> {
    let attempt = 0;
    while (!slot.stopped && !stopping) {
      if (!isReady() || !jsm) {
        await waitReady(1000);
        continue;
      }
      try {
        const name = await consumerConfig(slot);
        const consumer = await js!.consumers.get(config.stream, name);
        attempt = 0;
        await pump(slot, consumer);
      } catch (err) {
        attempt++;
        if (attempt === 1 || attempt % 20 === 0) {
          log.warn(
            { consumer: slot.name, err: errorMessage(err), attempt },
            'A bus consumer lost its stream; retrying.',
          );
        }
        await pause(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
      }
    }
  }

  /**
   * Pulls messages and hands them to the handler in stream order, one batch at a time: a reader task fills a
   * bounded buffer while the handler runs, and each batch takes what the buffer holds. (The iterator's own
   * getPending() also counts its internal callbacks, so it cannot tell whether next() would block.)
   */
  async function pump(slot: ConsumerSlot, consumer: Consumer): Promise<void> {
    const messages = await consumer.consume({
      max_messages: config.consumer.pull_max_messages,
      expires: config.consumer.pull_expires_ms,
    });
    slot.active = { stop: () => messages.stop() };
    const buffer: Pulled[] = [];
    const limit = config.consumer.pull_max_messages * 2;
    let wake: (() => void) | undefined;
    let space: (() => void) | undefined;
    let ended = false;
    let readError: unknown;
    let decodedSinceYield = 0;
    // Set once the handler loop is done: the reader then stops at its next step instead of waiting for room.
    let closing = false;
    const reader = (async () => {
      try {
        for await (const m of messages) {
          // Decoded here, so that decoding the next messages overlaps the handler's (asynchronous) write.
          const pulled = decode(slot, m);
          buffer.push(pulled);
          wake?.();
          // Messages the client already holds come without a turn of the event loop in between: a backlog
          // (after a failover) would be decoded in one go, holding HTTP answers and lease renewals.
          decodedSinceYield += pulled.events?.length ?? 1;
          if (decodedSinceYield >= DECODE_SLICE_EVENTS) {
            decodedSinceYield = 0;
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
          // Pushed ones are handed back by the handler loop's `finally`.
          if (closing) break;
          if (buffer.length >= limit) {
            await new Promise<void>((resolve) => {
              space = resolve;
            });
          }
        }
      } catch (err) {
        readError = err;
      } finally {
        ended = true;
        wake?.();
      }
    })();
    try {
      while (!slot.stopped && !stopping) {
        if (buffer.length === 0) {
          if (ended) break;
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
          continue;
        }
        const linger = slot.opts.lingerMs ?? 0;
        if (linger > 0 && !ended && buffer.length < limit) {
          const waitMs = buffer[0].at + linger - Date.now();
          const buffered = buffer.reduce((n, p) => n + (p.events?.length ?? 0), 0);
          if (waitMs > 0 && buffered < config.consumer.batch_max_events) {
            // Woken by the next message pulled, or when the oldest has waited long enough.
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, waitMs);
              wake = () => {
                clearTimeout(timer);
                resolve();
              };
            });
            wake = undefined;
            continue;
          }
        }
        let take = 0;
        let count = 0;
        while (take < buffer.length && (take === 0 || count < config.consumer.batch_max_events)) {
          count += buffer[take++].events?.length ?? 0;
        }
        const batch = buffer.splice(0, take);
        space?.();
        space = undefined;
        await handle(slot, batch);
      }
    } finally {
      slot.active = undefined;
      closing = true;
      messages.stop();
      space?.();
      await reader;
      // Pulled but not handled: handed back now rather than after ack_wait, to whoever consumes next.
      for (const p of buffer.splice(0)) if (p.events) p.msg.nak();
    }
    if (readError) throw readError;
  }

  function decode(slot: ConsumerSlot, m: JsMsg): Pulled {
    try {
      return { msg: m, events: decodeBatch(m.headers?.get(ENCODING_HEADER) || undefined, m.data), at: Date.now() };
    } catch (err) {
      // A message nobody can read would block the consumer forever: it is reported and set aside.
      failures.inc({ consumer: slot.name });
      log.error(
        { consumer: slot.name, seq: m.seq, err: errorMessage(err) },
        'A bus message cannot be decoded; it is skipped.',
      );
      m.term(`undecodable: ${errorMessage(err)}`);
      return { msg: m, at: Date.now() };
    }
  }

  async function handle(slot: ConsumerSlot, pulled: Pulled[]): Promise<void> {
    const events: NormalizedEvent[] = [];
    const good: JsMsg[] = [];
    for (const p of pulled) {
      if (!p.events) continue;
      for (const e of p.events) events.push(e);
      good.push(p.msg);
    }
    if (good.length === 0) return;
    const last = good[good.length - 1];
    const batch: StreamBatch = {
      events,
      firstSeq: good[0].seq,
      lastSeq: last.seq,
      messages: good.length,
      pending: last.info.pending,
    };
    for (let attempt = 0; ; attempt++) {
      // Keeps the messages ours while the handler runs or retries, so that they are not sent elsewhere.
      const keepAlive = setInterval(
        () => {
          for (const m of good) m.working();
        },
        Math.max(500, config.consumer.ack_wait_ms / 3),
      );
      try {
        await slot.handler(batch);
        for (const m of good) m.ack();
        return;
      } catch (err) {
        failures.inc({ consumer: slot.name });
        if (attempt === 0 || attempt % 20 === 0) {
          log.error(
            {
              consumer: slot.name,
              first_seq: batch.firstSeq,
              last_seq: batch.lastSeq,
              err: errorMessage(err),
              attempt,
            },
            'A bus consumer failed a batch; it is retried, never skipped.',
          );
        }
        if (slot.stopped || stopping) {
          for (const m of good) m.nak();
          return;
        }
        await pause(Math.min(5000, 100 * 2 ** Math.min(attempt, 6)));
      } finally {
        clearInterval(keepAlive);
      }
    }
  }

  function startSlot(slot: ConsumerSlot): void {
    slot.loop = consumerLoop(slot).catch((err) => {
      log.error({ consumer: slot.name, err: errorMessage(err) }, 'A bus consumer stopped on an error.');
    });
  }

  function subscribeStream(
    name: string,
    handler: StreamBatchHandler,
    opts: StreamConsumeOptions = {},
  ): StreamSubscription {
    if (!/^[A-Za-z0-9_-]+$/.test(name))
      throw new VigilError(
        'bad_consumer_name',
        `consumer name ${JSON.stringify(name)} must be letters, digits, _ or -`,
      );
    const slot: ConsumerSlot = { name, handler, opts, stopped: false };
    slots.push(slot);
    if (started && !stopping) startSlot(slot);
    return {
      name,
      async stop() {
        slot.stopped = true;
        slot.active?.stop();
        await slot.loop;
        slots.splice(slots.indexOf(slot), 1);
      },
    };
  }

  return {
    name: 'bus',

    async start() {
      await spool.open();
      if (!spool.isEmpty()) mode = 'spool';
      started = true;
      background = [connectLoop(), forwardLoop()];
      for (const slot of slots) startSlot(slot);
    },

    async stop(deadline) {
      stopping = true;
      halt.abort();
      for (const slot of slots) {
        slot.stopped = true;
        slot.active?.stop();
      }
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())).unref());
      await Promise.race([Promise.all([...background, ...slots.map((s) => s.loop)]), timeout]);
      await spool.close();
      const conn = nc;
      nc = undefined;
      js = undefined;
      jsm = undefined;
      connected = false;
      connectedGauge.set(0);
      if (conn) {
        await Promise.race([conn.drain().catch(() => conn.close()), timeout]);
        if (!conn.isClosed()) await conn.close();
      }
    },

    health(): ComponentHealth {
      if (!started || stopping) return { ok: false, detail: 'stopped' };
      const s = spool.stats();
      const full = s.bytes >= config.spool.max_bytes * 0.95;
      const old = s.oldestAt !== undefined && Date.now() - s.oldestAt >= config.spool.max_age_seconds * 1000;
      if (full || old) {
        return {
          ok: false,
          detail: `the local spool is ${full ? 'full' : 'too old'} (${s.batches} batches); publishes are refused`,
        };
      }
      if (isReady()) {
        return s.batches > 0 ? { ok: true, detail: `forwarding ${s.batches} spooled batches` } : { ok: true };
      }
      return {
        ok: true,
        detail: `${lastError ?? 'connecting to NATS'}; accepting into the local spool (${s.batches} batches)`,
      };
    },

    async publish(events) {
      if (events.length === 0) return;
      if (stopping || !started) throw new OverloadError('Vigil is shutting down', 5);
      if (inflight + events.length > config.max_pending_events && inflight > 0) {
        throw new OverloadError(`the intake queue is full (${inflight} events waiting for the event log)`, 1);
      }
      const batches = encodeBatches(events, {
        subjectPrefix: config.subject_prefix,
        maxBytes: maxPayload,
        compress: config.compress,
      });
      inflight += events.length;
      pendingGauge.set(inflight);
      const t0 = Date.now();
      let via = 'jetstream';
      try {
        // While the spool holds anything, new batches queue behind it: the log keeps the order of acceptance.
        if (mode === 'spool' || !spool.isEmpty()) {
          via = 'spool';
          mode = 'spool';
          await toSpool(batches);
          return;
        }
        const deadline = Date.now() + config.publish_max_wait_ms;
        for (let i = 0; i < batches.length; i++) {
          try {
            await publishUntil(batches[i], deadline);
            batchesTotal.inc();
          } catch (err) {
            if (stopping) throw new OverloadError('Vigil is shutting down', 5);
            via = 'spool';
            if (mode === 'direct') {
              log.warn(
                { err: errorMessage(err), waited_ms: Date.now() - t0 },
                'JetStream did not acknowledge a publish in time; publishes go to the local spool.',
              );
            }
            mode = 'spool';
            await toSpool(batches.slice(i));
            return;
          }
        }
      } finally {
        inflight -= events.length;
        pendingGauge.set(inflight);
        const took = Date.now() - t0;
        if (took > longestPublishMs) longestPublishMs = took;
        publishSeconds.observe({ via }, took / 1000);
      }
    },

    subscribe(name: string, handler: BatchHandler, opts: { durable?: boolean } = {}) {
      subscribeStream(name, (batch) => handler(batch.events), { durable: opts.durable ?? true });
    },

    subscribeStream,

    pending: () => inflight,

    async ready() {
      while (!isReady()) {
        if (stopping || !started) throw new VigilError('bus_stopped', 'the bus is not running', { status: 503 });
        await waitReady(1000);
      }
    },

    stats: () => ({ connected: isReady(), mode, spool: spool.stats(), longestPublishMs }),

    jetstream: () => (isReady() && js && jsm ? { js, jsm, replicas: config.replicas } : undefined),

    async streamPosition() {
      if (!jsm) throw new VigilError('bus_disconnected', 'not connected to NATS', { status: 503, retryable: true });
      const info = await jsm.streams.info(config.stream);
      return {
        stream: config.stream,
        created: info.created,
        firstSeq: info.state.first_seq,
        lastSeq: info.state.last_seq,
        messages: info.state.messages,
      };
    },

    async consumerPosition(name) {
      if (!jsm) throw new VigilError('bus_disconnected', 'not connected to NATS', { status: 503, retryable: true });
      let info: ConsumerInfo;
      try {
        info = await jsm.consumers.info(config.stream, name);
      } catch (err) {
        if (isNotFound(err, JetStreamApiCodes.ConsumerNotFound)) return undefined;
        throw err;
      }
      return {
        ackFloor: info.ack_floor.stream_seq,
        delivered: info.delivered.stream_seq,
        numPending: info.num_pending,
        numAckPending: info.num_ack_pending,
      };
    },

    async deleteConsumer(name) {
      if (!jsm) throw new VigilError('bus_disconnected', 'not connected to NATS', { status: 503, retryable: true });
      try {
        await jsm.consumers.delete(config.stream, name);
      } catch (err) {
        if (!isNotFound(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
      }
    },
  };
}
