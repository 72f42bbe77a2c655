/**
 * The event bus of a cluster: the Bus over the event log (VIGIL_EVENTS) on NATS JetStream, with a local
 * spool for when the cluster cannot take a publish. Built from the parts of this folder: the connection
 * (connection.ts), the typed log (log.ts, shared with the matches and alerts streams), the codec of event
 * batches (codec.ts) and the spool forwarder (forwarder.ts).
 */
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import type { ComponentHealth } from '../../lib/component.ts';
import { settleBy } from '../../lib/deadline.ts';
import { errorMessage, OverloadError, VigilError } from '../../lib/errors.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge, histogram } from '../../lib/metrics.ts';
import { backoffDelay, shouldLog, sleep } from '../../lib/retry.ts';
import type { BatchHandler, Bus } from '../index.ts';
import { createSpool, type SpoolStats } from '../spool/index.ts';
import { encodeBatches, eventsCodec, messageOf } from './codec.ts';
import type { JetStreamBusConfig } from './config.ts';
import { createJetStreamConnection, type JetStreamConnection } from './connection.ts';
import { createSpoolForwarder, type PublishMode } from './forwarder.ts';
import { shardFilter } from './names.ts';
import {
  type ConsumeOptions,
  type ConsumerPosition,
  checkConsumerName,
  createJetStreamLog,
  type LogConsumer,
  type SourceLag,
  type StreamPosition,
} from './log.ts';

export {
  batchId,
  decodeBatch,
  type EncodedBatch,
  encodeBatches,
  eventsCodec,
  jsonCodec,
  messageOf,
  tenantToken,
} from './codec.ts';
export { type JetStreamBusConfig, type JetStreamBusConfigInput, jetStreamBusConfigSchema } from './config.ts';
export { createJetStreamConnection, type JetStreamConnection } from './connection.ts';
export type { PublishMode } from './forwarder.ts';
export {
  type ConsumeOptions,
  type ConsumerPosition,
  createJetStreamLog,
  type JetStreamLog,
  type LogCodec,
  type LogConsumer,
  type LogEntry,
  type LogMessage,
  type LogSource,
  type LogSpec,
  type PublishOptions,
  type SourceLag,
  type StreamPosition,
} from './log.ts';

/** Consecutive messages of the stream handed to a consumer at once. */
export interface StreamBatch {
  events: NormalizedEvent[];
  /** Stream sequence of the first and last message of the batch. */
  firstSeq: number;
  lastSeq: number;
  messages: number;
  /**
   * Stream sequence of each message, in delivery order: redeliveries (after ack_wait, or a nak) come mixed
   * with new messages, so two batches with the same first and last sequence may hold different messages.
   */
  seqs: number[];
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
  /** Only the messages of this subject (one shard's: `EventStream.shardFilter`); every message when unset. */
  filterSubject?: string;
}

/** A running consumer. */
export interface StreamSubscription {
  readonly name: string;
  /** Stops pulling, lets the batch in hand finish, and leaves the rest unacknowledged for redelivery. */
  stop(): Promise<void>;
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
  /** The sequence of the first message of `subject` at or after `fromSeq`; undefined when there is none. */
  nextSeq?(subject: string, fromSeq: number): Promise<number | undefined>;
  /** The filter subject of shard `shard`'s messages (the events are sharded when `shards` > 1). */
  shardFilter(shard: number): string;
}

/** Where the publish path stands. */
export interface JetStreamBusStats {
  connected: boolean;
  /** `direct`: publishes go to JetStream; `spool`: they go to the local spool until it is drained. */
  mode: PublishMode;
  spool: SpoolStats;
  /** Longest time one publish took to be acknowledged (JetStream or spool) since start, in ms. */
  longestPublishMs: number;
}

/**
 * The site of a two-site deployment this bus belongs to. Events received here go to
 * `<subject_prefix>.<site>.<tenant>`, and the stream sources the peer's stream of the same name from the
 * peer's JetStream domain (named like the peer site), only the subjects the peer received itself: each event
 * is stored once on each site, and nothing comes back to where it came from.
 */
export interface BusSite {
  name: string;
  peer?: string;
}

/** The Bus over NATS JetStream, with a local spool for when the cluster cannot take a publish. */
export interface JetStreamBus extends Bus, EventStream {
  /** Resolves once connected and the stream exists (tests and the admin API; publish does not need it). */
  ready(): Promise<void>;
  stats(): JetStreamBusStats;
  /**
   * The node's NATS connection: other logs of the cluster (matches, alerts) are made over it with
   * `createJetStreamLog`, with the same replica count.
   */
  readonly connection: JetStreamConnection;
  /** How far the events stream is behind each stream it sources (the peer site's); none on one site. */
  replication(): Promise<SourceLag[]>;
}

interface ConsumerSlot {
  name: string;
  handler: StreamBatchHandler;
  opts: StreamConsumeOptions;
  consumer?: LogConsumer;
}

/**
 * Creates the JetStream bus. `publish` resolves once JetStream acknowledged the batch (a majority of the
 * stream's replicas has it) or, when the cluster cannot take it within `publish_max_wait_ms`, once it is
 * fsynced in the local spool; a forwarder then sends the spool to JetStream in order, each batch with its
 * original Nats-Msg-Id. Nothing is opened until start(); the bus starts even when NATS is unreachable.
 */
export function createJetStreamBus(
  config: JetStreamBusConfig,
  deps: {
    dataDir: string;
    metrics: Registry;
    logger: Logger;
    site?: BusSite;
    /** Shards of the events (`store.shards`): > 1 publishes each shard on subjects of its own. */
    shards?: number;
  },
): JetStreamBus {
  const log = deps.logger;
  const spool = createSpool(config.spool, {
    dir: config.spool.dir || join(deps.dataDir, 'spool'),
    metrics: deps.metrics,
    logger: log.child({ component: 'spool' }),
  });
  const conn = createJetStreamConnection(
    {
      servers: config.servers,
      clientName: config.client_name,
      pingIntervalMs: config.ping_interval_ms,
      requestTimeoutMs: config.publish_timeout_ms,
      maxMessageBytes: config.max_message_bytes,
      replicas: config.replicas,
    },
    log,
  );
  const subjectPrefix = deps.site ? `${config.subject_prefix}.${deps.site.name}` : config.subject_prefix;
  const peer = deps.site?.peer;
  const events = createJetStreamLog(
    conn,
    {
      name: config.stream,
      subjects: [`${subjectPrefix}.>`],
      ...(deps.site
        ? {
            sources: peer
              ? [{ name: config.stream, filterSubject: `${config.subject_prefix}.${peer}.>`, domain: peer }]
              : [],
          }
        : {}),
      maxAgeMs: config.max_age_seconds * 1000,
      maxBytes: config.max_bytes,
      duplicateWindowMs: config.duplicate_window_ms,
    },
    eventsCodec,
    { logger: log, metrics: deps.metrics, label: 'event stream' },
  );
  const slots: ConsumerSlot[] = [];
  let started = false;
  let stopping = false;
  let inflight = 0;
  let longestPublishMs = 0;
  let lastError: string | undefined;
  let background: Promise<void>[] = [];

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
  const connectedGauge = gauge(
    deps.metrics,
    'vigil_bus_connected',
    '1 while connected to NATS with the stream in place.',
  );
  const isReady = () => events.ready();
  conn.onState(() => connectedGauge.set(isReady() ? 1 : 0));

  const forwarder = createSpoolForwarder({
    spool,
    log: events,
    conn,
    publishTimeoutMs: config.publish_timeout_ms,
    logger: log,
    onError: (message) => {
      lastError = message;
    },
    counters: { spooled: spooledTotal, forwarded: forwardedTotal, committed: batchesTotal, retries },
  });

  /** Once connected, keeps trying until the event stream is in place. */
  async function ensureLoop(): Promise<void> {
    for (let attempt = 0; !stopping && !events.ensured(); ) {
      if (!conn.ready()) {
        await conn.wait(1000, conn.ready);
        continue;
      }
      try {
        await events.ensure();
        connectedGauge.set(isReady() ? 1 : 0);
        lastError = undefined;
      } catch (err) {
        attempt++;
        lastError = `stream ${config.stream} not available: ${errorMessage(err)}`;
        if (shouldLog(attempt - 1))
          log.warn({ err: errorMessage(err), attempt }, 'The event stream is not available yet.');
        await sleep(backoffDelay(attempt, { initialMs: 100, maxMs: 2000 }), conn.signal);
      }
    }
  }

  const consumeOptions = (opts: StreamConsumeOptions): ConsumeOptions => ({
    durable: opts.durable,
    startSeq: opts.startSequence,
    ackWaitMs: config.consumer.ack_wait_ms,
    maxAckPending: config.consumer.max_ack_pending,
    pullMaxMessages: config.consumer.pull_max_messages,
    pullExpiresMs: config.consumer.pull_expires_ms,
    batchMaxWeight: config.consumer.batch_max_events,
    lingerMs: opts.lingerMs,
    filterSubject: opts.filterSubject,
    retry: { initialMs: 100, maxMs: 5000 },
  });

  function startSlot(slot: ConsumerSlot): void {
    slot.consumer = events.consume(
      slot.name,
      async (entries) => {
        const last = entries[entries.length - 1];
        await slot.handler({
          events: entries.flatMap((e) => e.value),
          firstSeq: entries[0].seq,
          lastSeq: last.seq,
          messages: entries.length,
          seqs: entries.map((e) => e.seq),
          pending: last.pending,
        });
      },
      consumeOptions(slot.opts),
    );
  }

  function subscribeStream(
    name: string,
    handler: StreamBatchHandler,
    opts: StreamConsumeOptions = {},
  ): StreamSubscription {
    checkConsumerName(name);
    const slot: ConsumerSlot = { name, handler, opts };
    slots.push(slot);
    if (started && !stopping) startSlot(slot);
    return {
      name,
      async stop() {
        const i = slots.indexOf(slot);
        if (i >= 0) slots.splice(i, 1);
        await slot.consumer?.stop();
      },
    };
  }

  const disconnected = () =>
    new VigilError('bus_disconnected', 'not connected to NATS', { status: 503, retryable: true });

  return {
    name: 'bus',
    connection: conn,

    async start() {
      await spool.open();
      started = true;
      conn.open();
      background = [ensureLoop(), forwarder.run()];
      for (const slot of slots) startSlot(slot);
    },

    async stop(deadline) {
      stopping = true;
      conn.shutdown();
      for (const slot of slots) slot.consumer?.halt();
      await settleBy(Promise.all([...background, ...slots.map((s) => s.consumer?.stopped())]), deadline);
      await spool.close();
      connectedGauge.set(0);
      await conn.close(deadline);
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
        detail: `${lastError ?? conn.lastError() ?? 'connecting to NATS'}; accepting into the local spool (${s.batches} batches)`,
      };
    },

    async publish(batch) {
      if (batch.length === 0) return;
      if (stopping || !started) throw new OverloadError('Vigil is shutting down', 5);
      if (inflight + batch.length > config.max_pending_events && inflight > 0) {
        throw new OverloadError(`the intake queue is full (${inflight} events waiting for the event log)`, 1);
      }
      const batches = encodeBatches(batch, {
        subjectPrefix,
        maxBytes: conn.maxPayload(),
        compress: config.compress,
        shards: deps.shards ?? 1,
      });
      inflight += batch.length;
      pendingGauge.set(inflight);
      const t0 = Date.now();
      let via = 'jetstream';
      try {
        // While the spool holds anything, new batches queue behind it: the log keeps the order of acceptance.
        if (forwarder.mode() === 'spool' || !spool.isEmpty()) {
          via = 'spool';
          await forwarder.append(batches);
          return;
        }
        const deadline = Date.now() + config.publish_max_wait_ms;
        for (let i = 0; i < batches.length; i++) {
          try {
            await events.publishMessage(messageOf(batches[i]), {
              deadline,
              maxTimeoutMs: config.publish_timeout_ms,
              minTimeoutMs: 100,
              backoff: { initialMs: 50, maxMs: 800 },
              // Once another publish gave up, this one joins it in the spool instead of waiting its own deadline
              // out: if an attempt did land, the spool forwards it with the same Nats-Msg-Id and the stream drops
              // the copy.
              giveUp: () => forwarder.mode() === 'spool',
              onError: (err) => {
                lastError = `publish failed: ${errorMessage(err)}`;
                retries.inc();
              },
              failCode: 'bus_publish_failed',
            });
            batchesTotal.inc();
          } catch (err) {
            if (stopping) throw new OverloadError('Vigil is shutting down', 5);
            via = 'spool';
            if (forwarder.mode() === 'direct') {
              log.warn(
                { err: errorMessage(err), waited_ms: Date.now() - t0 },
                'JetStream did not acknowledge a publish in time; publishes go to the local spool.',
              );
            }
            await forwarder.append(batches.slice(i));
            return;
          }
        }
      } finally {
        inflight -= batch.length;
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
        await conn.wait(1000, isReady);
      }
    },

    stats: () => ({ connected: isReady(), mode: forwarder.mode(), spool: spool.stats(), longestPublishMs }),

    async streamPosition() {
      if (!conn.ready()) throw disconnected();
      return events.streamPosition();
    },

    async replication() {
      if (!conn.ready()) throw disconnected();
      return events.sourceLags();
    },

    async consumerPosition(name) {
      if (!conn.ready()) throw disconnected();
      return events.consumerPosition(name);
    },

    async deleteConsumer(name) {
      if (!conn.ready()) throw disconnected();
      await events.deleteConsumer(name);
    },

    async nextSeq(subject, fromSeq) {
      if (!conn.ready()) throw disconnected();
      return events.nextSeq(subject, fromSeq);
    },

    shardFilter: (shard) => shardFilter(config.subject_prefix, shard, deps.site !== undefined),
  };
}
