/**
 * A typed log on JetStream, written once for every stream of Vigil (events, routed matches, alerts, and
 * the second site's replication streams): a stream spec and a codec give
 *
 * - `ensure`: the stream exists with the spec's settings (made, or updated when they differ);
 * - `publish`: a message with a `Nats-Msg-Id` (the same id inside the duplicate window is stored once),
 *   retried through leader elections and reconnects until a deadline;
 * - `consume`: a pull consumer (durable or ephemeral) that hands consecutive messages to a handler in
 *   stream order and acknowledges them only after the handler resolved (its commit); a failing handler is
 *   retried with backoff, its messages kept with `working()`, never skipped; a message nobody can decode is
 *   reported and acknowledged (set aside).
 *
 * Delivery is at least once: every handler must be idempotent.
 */
import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JsMsg,
  RetentionPolicy,
  type StreamConfig,
  type StreamSource,
  type StreamSourceInfo,
  StorageType,
} from '@nats-io/jetstream';
import { headers as natsHeaders, nanos } from '@nats-io/transport-node';
import type { Registry } from 'prom-client';
import { errorMessage, VigilError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter } from '../../lib/metrics.ts';
import { type Backoff, backoffDelay, shouldLog, sleep } from '../../lib/retry.ts';
import { TURN_BUDGET_MS, takeTurn } from '../../lib/turns.ts';
import type { JetStreamConnection } from './connection.ts';

/** The stream a log lives in. */
export interface LogSpec {
  /** Stream name, e.g. VIGIL_EVENTS. */
  name: string;
  /** Subjects the stream holds (wildcards allowed). */
  subjects: string[];
  maxAgeMs: number;
  /** Largest stream size in bytes; -1 (default): no limit but the server's. */
  maxBytes?: number;
  /** A message published again with the same id within this window is stored once. */
  duplicateWindowMs: number;
  /** Copies; default the connection's replica count. */
  replicas?: number;
  /**
   * Streams this one sources (JetStream copies their messages in, with their subjects and headers): the
   * second site's stream of the same name in the peer's JetStream domain, reached over a leafnode.
   */
  sources?: LogSource[];
}

/** A stream sourced into a log's stream. */
export interface LogSource {
  /** The origin stream's name. */
  name: string;
  /** Only messages of this subject (a site sources only what the peer received itself: no loop). */
  filterSubject?: string;
  /** The origin's JetStream domain (`jetstream { domain }` of its servers); its API is `$JS.<domain>.API`. */
  domain?: string;
}

/** How far a sourced stream is behind its origin, as the server reports it. */
export interface SourceLag {
  name: string;
  domain?: string;
  /** Messages of the origin not yet copied here. */
  lag: number;
  /** Milliseconds since the source last made progress or heard from its origin; undefined: never. */
  activeAgoMs?: number;
  /** The last message copied from this source (its sequence and when this stream stored it); none yet: undefined. */
  lastReceived?: { seq: number; time: number };
}

/** How values are written into message bodies and read back. */
export interface LogCodec<T> {
  encode(value: T): { body: Uint8Array; headers?: Record<string, string> };
  /** Throws when the message cannot be read: the message is then reported and set aside. */
  decode(body: Uint8Array, header: (name: string) => string | undefined): T;
  /** What a value counts for in a batch's `batchMaxWeight` (events in a message); default 1. */
  weight?(value: T): number;
}

/** A message ready to publish (or to keep in a spool and publish later, unchanged). */
export interface LogMessage {
  subject: string;
  /** `Nats-Msg-Id`: deterministic, so that a retried publish is stored once. */
  id: string;
  body: Uint8Array;
  headers?: Record<string, string>;
}

/** A message as a consumer receives it. */
export interface LogEntry<T> {
  seq: number;
  subject: string;
  /** When the stream stored it, epoch ms. */
  time: number;
  value: T;
  /** Messages left for this consumer after this one, as the server counted at delivery. */
  pending: number;
}

/** How a publish retries. */
export interface PublishOptions {
  /** Epoch ms after which the last error is thrown. */
  deadline: number;
  /** Longest wait for one PubAck; an attempt never waits less than `minTimeoutMs`. */
  maxTimeoutMs: number;
  minTimeoutMs: number;
  /** Wait between failed attempts (never past the deadline). */
  backoff: Backoff;
  /** Checked before each retry: true gives up at once (the caller has somewhere else to put it). */
  giveUp?: (attempt: number) => boolean;
  /** Told of each failed attempt. */
  onError?: (err: unknown) => void;
  /** Code of the error thrown when the publish gives up (503, retryable). */
  failCode: string;
}

/** How a consumer is set up and paced. */
export interface ConsumeOptions {
  /**
   * true (default): a durable consumer named after the subscriber, kept by the cluster: it resumes where it
   * was acknowledged after a restart, and nodes subscribing by one name share it. false: an ephemeral one
   * that starts at new messages and goes with the process.
   */
  durable?: boolean;
  /** Where a durable consumer starts when it is created (it exists already: ignored). Default: the first message. */
  startSeq?: number;
  /** Only messages of this subject. */
  filterSubject?: string;
  /** A message not acknowledged within this time is delivered again (the handler extends it as it works). */
  ackWaitMs: number;
  maxAckPending: number;
  /** Messages pulled at a time; twice this many are held, at most, beside the handler's batch. */
  pullMaxMessages: number;
  /** How long one pull request lives: a consumer whose server died notices within about this time. */
  pullExpiresMs: number;
  /** Most weight (see LogCodec.weight) handed to a handler in one call; messages are never split. */
  batchMaxWeight: number;
  /** How long a batch may wait for more messages before the handler gets it (0: at once). */
  lingerMs?: number;
  /** Wait between retries of a failed batch, and between attempts to reach the stream. */
  retry: Backoff;
  /**
   * A durable consumer only this process reads (named after its node): when this process first reaches it
   * and it holds messages delivered but not acknowledged (to a process killed before it could), it is made
   * again from its ack floor, so they come again at once. nats-server 2.9.10, killed with it, was seen to
   * restore such a consumer without them pending: never delivered again, and passed over by the floor.
   * Only for a handler that takes a record twice without harm.
   */
  remakeUnacked?: boolean;
}

/** A running consumer. */
export interface LogConsumer {
  readonly name: string;
  /** Stops pulling, lets the batch in hand finish, and leaves the rest unacknowledged for redelivery. */
  stop(): Promise<void>;
  /** Stops, not waiting for it (the owner waits for `stopped()` under its own deadline). */
  halt(): void;
  /** Resolves once the consumer's loop ended. */
  stopped(): Promise<void>;
}

/** The identity and extent of a stream. `created` changes when the stream is deleted and made again. */
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
  /** When the consumer was made (RFC 3339): a consumer deleted and made again is another one. */
  created?: string;
}

/** A typed log over one stream. */
export interface JetStreamLog<T> {
  readonly spec: LogSpec;
  /** Makes or updates the stream (once; again after a failure, or when `force`). */
  ensure(force?: boolean): Promise<void>;
  /** The stream was ensured on this connection. */
  ensured(): boolean;
  /** Connected and the stream ensured. */
  ready(): boolean;
  /** Encodes and publishes one value, retrying until `opts.deadline`; resolves with its stream sequence. */
  publish(subject: string, value: T, id: string, opts: PublishOptions): Promise<number>;
  /** Publishes an encoded message with retries until `opts.deadline`. */
  publishMessage(msg: LogMessage, opts: PublishOptions): Promise<number>;
  /** One attempt, no retry: resolves with the stream sequence once JetStream acknowledged it. */
  publishOnce(msg: LogMessage, timeoutMs: number): Promise<number>;
  /** Starts a consumer; it waits for the connection and the stream, and retries until stopped. */
  consume(name: string, handler: (batch: LogEntry<T>[]) => Promise<void>, opts: ConsumeOptions): LogConsumer;
  streamPosition(): Promise<StreamPosition>;
  /** Lag of each source of the stream (none without `spec.sources`). */
  sourceLags(): Promise<SourceLag[]>;
  /** A durable consumer's position; undefined when it does not exist. */
  consumerPosition(name: string): Promise<ConsumerPosition | undefined>;
  /** Deletes a durable consumer (so that it is made again from a chosen sequence); absent is fine. */
  deleteConsumer(name: string): Promise<void>;
  /** Time the stream stored message `seq`, epoch ms (undefined when it is gone; any other failure throws). */
  timeOf(seq: number): Promise<number | undefined>;
  /** The sequence of the first message of `subject` at or after `fromSeq` (undefined: none now). */
  nextSeq(subject: string, fromSeq: number): Promise<number | undefined>;
  /**
   * Reads the messages of `subject` from `startTime` (epoch ms) up to `untilSeq` inclusive, in order, with an
   * ordered consumer (nothing acknowledged, nothing left behind). A message that cannot be decoded is skipped,
   * reported as `consume` reports it.
   */
  replay(subject: string, startTime: number, untilSeq: number, each: (entry: LogEntry<T>) => void): Promise<void>;
}

/** Waits of a consumer that cannot reach its stream (a server restart, an election). */
const RECONNECT_BACKOFF: Backoff = { initialMs: 100, maxMs: 2000 };

/** Whether `err` is JetStream's answer `code` (e.g. StreamNotFound). */
export function isApiError(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

/** Throws `bad_consumer_name` unless `name` can name a JetStream consumer. */
export function checkConsumerName(name: string): void {
  if (!/^[A-Za-z0-9_-]+$/.test(name))
    throw new VigilError('bad_consumer_name', `consumer name ${JSON.stringify(name)} must be letters, digits, _ or -`);
}

/** A pulled message and its value (none when it could not be decoded). */
interface Pulled<T> {
  msg: JsMsg;
  value?: T;
  weight: number;
  /** When it was pulled (epoch ms). */
  at: number;
  /** When it was last kept ours with `working()` while it waited in the buffer (epoch ms). */
  keptAt?: number;
}

/** Creates a log over the connection; nothing is sent until it is used. */
export function createJetStreamLog<T>(
  conn: JetStreamConnection,
  spec: LogSpec,
  codec: LogCodec<T>,
  deps: { logger: Logger; metrics?: Registry; label?: string },
): JetStreamLog<T> {
  const log = deps.logger;
  const what = deps.label ?? 'stream';
  const weightOf = (v: T) => codec.weight?.(v) ?? 1;
  const failures = deps.metrics
    ? counter(deps.metrics, 'vigil_bus_consumer_failures_total', 'Batches a consumer failed.', ['consumer'])
    : undefined;
  // A message the server delivers again (its delivery count > 1): after ack_wait passed, mostly. Many of them
  // mean batches slower than ack_wait, duplicates the store merges away, and batches cut out of sequence
  // order. (nats-server 2.9.10 often sends a nak'd message again with a delivery count of 1: not counted.)
  const redelivered = deps.metrics
    ? counter(
        deps.metrics,
        'vigil_bus_consumer_redelivered_total',
        'Messages a consumer received again as the server counts them (mostly: not acknowledged within ack_wait).',
        ['consumer'],
      )
    : undefined;
  // Ensured once per log, as a stream survives reconnects; a publisher that keeps failing asks again (force).
  let ensuring: Promise<void> | undefined;
  let isEnsured = false;

  function streamConfig(): Partial<StreamConfig> & { name: string; subjects: string[] } {
    return {
      name: spec.name,
      subjects: spec.subjects,
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: spec.replicas ?? conn.replicas,
      max_age: nanos(spec.maxAgeMs),
      max_bytes: spec.maxBytes ?? -1,
      duplicate_window: nanos(spec.duplicateWindowMs),
      discard: DiscardPolicy.Old,
      ...(spec.sources?.length ? { sources: spec.sources.map(sourceConfig) } : {}),
    };
  }

  function sourceConfig(src: LogSource): StreamSource {
    return {
      name: src.name,
      ...(src.filterSubject ? { filter_subject: src.filterSubject } : {}),
      ...(src.domain ? { external: { api: `$JS.${src.domain}.API`, deliver: '' } } : {}),
    } as StreamSource;
  }

  /** A comparable form of a stream's sources (the server adds fields of its own). */
  const sourcesKey = (list: StreamSource[] | undefined) =>
    JSON.stringify((list ?? []).map((x) => [x.name, x.filter_subject ?? '', x.external?.api ?? '']).sort());

  async function ensureOnce(): Promise<void> {
    const { jsm } = conn.clients();
    const want = streamConfig();
    try {
      const c = (await jsm.streams.info(spec.name)).config;
      const differs =
        c.num_replicas !== want.num_replicas ||
        c.max_age !== want.max_age ||
        c.max_bytes !== want.max_bytes ||
        c.duplicate_window !== want.duplicate_window ||
        !want.subjects.every((s) => c.subjects?.includes(s)) ||
        (spec.sources !== undefined && sourcesKey(c.sources) !== sourcesKey(want.sources));
      if (differs) {
        await jsm.streams.update(spec.name, {
          ...c,
          ...want,
          subjects: [...new Set([...(c.subjects ?? []), ...want.subjects])],
        });
        log.info({ stream: spec.name, replicas: want.num_replicas }, `The ${what} settings were updated.`);
      }
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
      await jsm.streams.add(want);
      log.info({ stream: spec.name, replicas: want.num_replicas }, `The ${what} was created.`);
    }
    isEnsured = true;
    conn.notify();
  }

  function ensure(force = false): Promise<void> {
    if (force) ensuring = undefined;
    ensuring ??= ensureOnce().catch((err) => {
      ensuring = undefined;
      throw err;
    });
    return ensuring;
  }

  const ready = () => conn.ready() && isEnsured;

  async function publishOnce(msg: LogMessage, timeoutMs: number): Promise<number> {
    const { js } = conn.clients();
    let h: ReturnType<typeof natsHeaders> | undefined;
    if (msg.headers) {
      h = natsHeaders();
      for (const [k, v] of Object.entries(msg.headers)) h.set(k, v);
    }
    const ack = await js.publish(msg.subject, msg.body, { msgID: msg.id, timeout: timeoutMs, headers: h });
    if (ack.stream !== spec.name) {
      throw new VigilError(
        'bus_wrong_stream',
        `subject ${msg.subject} is stored by stream ${ack.stream}, not ${spec.name}`,
      );
    }
    return ack.seq;
  }

  async function publishMessage(msg: LogMessage, o: PublishOptions): Promise<number> {
    let last: unknown;
    for (let attempt = 0; ; attempt++) {
      const left = o.deadline - Date.now();
      // A publish that did land before a failure is stored once when it is sent again: same Nats-Msg-Id.
      if (left <= 0 || conn.stopping() || (attempt > 0 && o.giveUp?.(attempt))) {
        const why = last ? errorMessage(last) : (conn.lastError() ?? 'publish deadline passed');
        throw new VigilError(o.failCode, `${spec.name}: ${why}`, { status: 503, retryable: true, cause: last });
      }
      if (!conn.ready()) {
        await conn.wait(Math.min(left, 250), conn.ready);
        continue;
      }
      try {
        await ensure();
        return await publishOnce(msg, Math.max(o.minTimeoutMs, Math.min(o.maxTimeoutMs, left)));
      } catch (err) {
        last = err;
        o.onError?.(err);
        // No responders / timeouts come in bursts while a stream leader is elected (seconds on 2.9).
        await sleep(Math.min(o.deadline - Date.now(), backoffDelay(attempt, o.backoff)), conn.signal);
      }
    }
  }

  /**
   * Decodes a message; one nobody can read is reported (counted for `consumer` in
   * vigil_bus_consumer_failures_total, logged) and undefined is returned, so that the caller skips it.
   */
  function decodeOrSkip(m: JsMsg, consumer: string): T | undefined {
    try {
      return codec.decode(m.data, (h) => m.headers?.get(h) || undefined);
    } catch (err) {
      failures?.inc({ consumer });
      log.error(
        { stream: spec.name, consumer, seq: m.seq, err: errorMessage(err) },
        'A log message cannot be decoded; it is skipped.',
      );
      return undefined;
    }
  }

  function entryOf(m: JsMsg, value: T): LogEntry<T> {
    return { seq: m.seq, subject: m.subject, time: m.time.getTime(), value, pending: m.info.pending };
  }

  async function consumerName(name: string, o: ConsumeOptions, first = false): Promise<string> {
    const { jsm } = conn.clients();
    const base: Partial<ConsumerConfig> = {
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(o.ackWaitMs),
      max_ack_pending: o.maxAckPending,
      max_deliver: -1,
      ...(o.filterSubject ? { filter_subject: o.filterSubject } : {}),
    };
    if (o.durable === false) {
      const info = await jsm.consumers.add(spec.name, {
        ...base,
        deliver_policy: DeliverPolicy.New,
        inactive_threshold: nanos(60000),
      });
      return info.name;
    }
    try {
      const info = await jsm.consumers.info(spec.name, name);
      const floor = info.ack_floor.stream_seq;
      if (first && o.remakeUnacked && info.delivered.stream_seq > floor) {
        log.warn(
          { stream: spec.name, consumer: name, ack_floor: floor, delivered: info.delivered.stream_seq },
          'Messages delivered before this start were never acknowledged; the consumer is made again from its floor.',
        );
        await jsm.consumers.delete(spec.name, name);
        await jsm.consumers.add(spec.name, {
          ...base,
          durable_name: name,
          ...(floor > 0
            ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 }
            : { deliver_policy: DeliverPolicy.All }),
        });
      } else if (info.config.ack_wait !== base.ack_wait || info.config.max_ack_pending !== base.max_ack_pending) {
        await jsm.consumers.update(spec.name, name, { ack_wait: base.ack_wait, max_ack_pending: base.max_ack_pending });
      }
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
      const start = o.startSeq ?? 0;
      await jsm.consumers.add(spec.name, {
        ...base,
        durable_name: name,
        ...(start > 1
          ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start }
          : { deliver_policy: DeliverPolicy.All }),
      });
      // From a recorded position (start > 1) it was lost or deleted while its reader kept a position: rare, and
      // where a reader would skip messages if that position were wrong, so it is logged where operators look.
      const where = { stream: spec.name, consumer: name, start_seq: start || 1 };
      if (start > 1) log.warn(where, 'A durable consumer was made again from a recorded position.');
      else log.info(where, 'A durable consumer was created.');
    }
    return name;
  }

  function consume(name: string, handler: (batch: LogEntry<T>[]) => Promise<void>, o: ConsumeOptions): LogConsumer {
    checkConsumerName(name);
    const halt = new AbortController();
    const onShutdown = () => halt.abort();
    conn.signal.addEventListener('abort', onShutdown);
    let active: { stop(): void } | undefined;
    const stopped = () => halt.signal.aborted || conn.stopping();
    // How often a message waiting for its handler (or in it) is kept ours with working(): a third of ack_wait.
    const keepPeriodMs = Math.max(500, o.ackWaitMs / 3);
    let keepFailed = false;
    /**
     * Keeps a message ours. working() throws when the connection is closing: the message is then delivered
     * again after ack_wait and written again idempotently, so this is said once and not thrown in a timer.
     */
    const keep = (p: Pulled<T>) => {
      try {
        p.msg.working();
        p.keptAt = Date.now();
        keepFailed = false;
      } catch (err) {
        if (!keepFailed) {
          keepFailed = true;
          log.warn(
            { stream: spec.name, consumer: name, err: errorMessage(err) },
            'A log consumer could not keep its messages (the connection is closing): they will be delivered again.',
          );
        }
      }
    };

    function decode(m: JsMsg): Pulled<T> {
      if (m.info.redelivered) redelivered?.inc({ consumer: name });
      const value = decodeOrSkip(m, name);
      if (value !== undefined) return { msg: m, value, weight: weightOf(value), at: Date.now() };
      // A message nobody can read would block the consumer forever: it is reported and set aside. Acknowledged,
      // not terminated: nats-server 2.9 does not move the ack floor past a terminated message, so a consumer
      // that resumes from its floor (the store replica, a correlation takeover) would go back to it forever.
      m.ack();
      return { msg: m, weight: 0, at: Date.now() };
    }

    async function handle(pulled: Pulled<T>[]): Promise<void> {
      const good = pulled.filter((p) => p.value !== undefined);
      if (good.length === 0) return;
      const batch = good.map((p) => entryOf(p.msg, p.value as T));
      // A message kept while it waited is kept again now unless that was recent, so the gap between two
      // keeps stays under ack_wait across the hand-over from the buffer to the handler.
      const now = Date.now();
      for (const p of good) if (now - (p.keptAt ?? p.at) >= keepPeriodMs / 2) keep(p);
      for (let attempt = 0; ; attempt++) {
        // Keeps the messages ours while the handler runs or retries, so that they are not sent elsewhere.
        const keepAlive = setInterval(() => {
          for (const p of good) keep(p);
        }, keepPeriodMs);
        try {
          await handler(batch);
          for (const p of good) p.msg.ack();
          return;
        } catch (err) {
          failures?.inc({ consumer: name });
          if (shouldLog(attempt)) {
            log.error(
              {
                stream: spec.name,
                consumer: name,
                first_seq: batch[0].seq,
                last_seq: batch[batch.length - 1].seq,
                err: errorMessage(err),
                attempt,
              },
              'A log consumer failed a batch; it is retried, never skipped.',
            );
          }
          if (stopped()) {
            for (const p of good) p.msg.nak();
            return;
          }
          await sleep(backoffDelay(attempt, o.retry), halt.signal);
          if (stopped()) {
            for (const p of good) p.msg.nak();
            return;
          }
        } finally {
          clearInterval(keepAlive);
        }
      }
    }

    /**
     * Pulls with the client's consume() (a fetch would hold a batch until it is full or expires, a second or
     * more per hop); a reader fills a bounded buffer while the handler runs, and each batch takes what the
     * buffer holds. (The iterator's own getPending() also counts its internal callbacks, so it cannot tell
     * whether next() would block.)
     */
    let reached = false;
    async function pump(onPulling: () => void): Promise<void> {
      const { js } = conn.clients();
      const consumer = await js.consumers.get(spec.name, await consumerName(name, o, !reached));
      reached = true;
      const messages = await consumer.consume({ max_messages: o.pullMaxMessages, expires: o.pullExpiresMs });
      onPulling();
      active = { stop: () => messages.stop() };
      const buffer: Pulled<T>[] = [];
      const limit = o.pullMaxMessages * 2;
      let wake: (() => void) | undefined;
      let space: (() => void) | undefined;
      let ended = false;
      let readError: unknown;
      // Milliseconds spent decoding since the last turn (waits for the server not counted).
      let decodingMs = 0;
      // Set once the handler loop is done: the reader then stops at its next step instead of waiting for room.
      let closing = false;
      // Messages waiting in the buffer (a linger, or behind a slow handler) are kept ours as the handler's are:
      // past ack_wait the server would deliver them again and they would be written twice. Each is kept once
      // it has waited a third of ack_wait (so by half of it at the latest): a short linger sends nothing more.
      // The timer runs only while the buffer holds messages: an idle node has a dozen consumers, and a timer
      // each, always armed, woke its event loop about ten times a second for nothing.
      let keepBuffered: NodeJS.Timeout | undefined;
      const armKeep = () => {
        keepBuffered ??= setInterval(() => {
          const now = Date.now();
          for (const p of buffer) if (p.value !== undefined && now - (p.keptAt ?? p.at) >= keepPeriodMs) keep(p);
        }, keepPeriodMs / 2);
      };
      const disarmKeep = () => {
        clearInterval(keepBuffered);
        keepBuffered = undefined;
      };
      const reader = (async () => {
        try {
          for await (const m of messages) {
            // Decoded here, so that decoding the next messages overlaps the handler's (asynchronous) write.
            const t = performance.now();
            const pulled = decode(m);
            decodingMs += performance.now() - t;
            buffer.push(pulled);
            armKeep();
            wake?.();
            // Messages the client already holds come without a turn of the event loop in between: a backlog
            // (after a failover) would be decoded in one go, holding HTTP answers and lease renewals.
            if (decodingMs >= TURN_BUDGET_MS) {
              decodingMs = 0;
              await takeTurn();
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
        while (!stopped()) {
          if (buffer.length === 0) {
            if (ended) break;
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
            wake = undefined;
            continue;
          }
          const linger = o.lingerMs ?? 0;
          if (linger > 0 && !ended && buffer.length < limit) {
            const waitMs = buffer[0].at + linger - Date.now();
            const buffered = buffer.reduce((n, p) => n + p.weight, 0);
            if (waitMs > 0 && buffered < o.batchMaxWeight) {
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
          let weight = 0;
          while (take < buffer.length && (take === 0 || weight < o.batchMaxWeight)) weight += buffer[take++].weight;
          const batch = buffer.splice(0, take);
          if (buffer.length === 0) disarmKeep();
          space?.();
          space = undefined;
          await handle(batch);
        }
      } finally {
        active = undefined;
        closing = true;
        messages.stop();
        space?.();
        await reader;
        // After the reader: a message it pushed meanwhile armed the timer again.
        disarmKeep();
        // Pulled but not handled: handed back now rather than after ack_wait, to whoever consumes next.
        for (const p of buffer.splice(0)) if (p.value !== undefined) p.msg.nak();
      }
      if (readError) throw readError;
    }

    const loop = (async () => {
      for (let attempt = 0; !stopped(); ) {
        if (!conn.ready()) {
          await conn.wait(1000, conn.ready, halt.signal);
          continue;
        }
        try {
          await ensure();
          await pump(() => {
            attempt = 0;
          });
        } catch (err) {
          if (stopped()) break;
          if (shouldLog(attempt)) {
            log.warn(
              { stream: spec.name, consumer: name, err: errorMessage(err), attempt: attempt + 1 },
              'A log consumer lost its stream; retrying.',
            );
          }
          attempt++;
          await sleep(backoffDelay(attempt, RECONNECT_BACKOFF), halt.signal);
        }
      }
    })()
      .catch((err) => {
        log.error({ stream: spec.name, consumer: name, err: errorMessage(err) }, 'A log consumer stopped on an error.');
      })
      .finally(() => conn.signal.removeEventListener('abort', onShutdown));

    const haltNow = () => {
      halt.abort();
      active?.stop();
    };
    return {
      name,
      halt: haltNow,
      stopped: () => loop,
      async stop() {
        haltNow();
        await loop;
      },
    };
  }

  return {
    spec,
    ensure,
    ensured: () => isEnsured,
    ready,
    publish: (subject, value, id, opts) => publishMessage({ subject, id, ...codec.encode(value) }, opts),
    publishMessage,
    publishOnce,
    consume,

    async streamPosition() {
      const info = await conn.clients().jsm.streams.info(spec.name);
      return {
        stream: spec.name,
        created: info.created,
        firstSeq: info.state.first_seq,
        lastSeq: info.state.last_seq,
        messages: info.state.messages,
      };
    },

    async sourceLags() {
      const info = await conn.clients().jsm.streams.info(spec.name);
      // The server reports each source's `external` (seen on 2.9.10); the client's type leaves it out.
      const sources = (info.sources ?? []) as (StreamSourceInfo & { external?: { api?: string } })[];
      const lags: SourceLag[] = [];
      for (const src of sources) {
        const domain = src.external?.api?.replace(/^\$JS\.(.*)\.API$/, '$1');
        const filter = spec.sources?.find((x) => x.name === src.name && x.domain === domain)?.filterSubject;
        // The last message of the source's subjects (2.9 takes a wildcard in last_by_subj).
        const last = filter
          ? await conn
              .clients()
              .jsm.streams.getMessage(spec.name, { last_by_subj: filter })
              .catch((err) => {
                if (isApiError(err, JetStreamApiCodes.NoMessageFound)) return null;
                throw err;
              })
          : null;
        lags.push({
          name: src.name,
          ...(domain ? { domain } : {}),
          lag: src.lag,
          ...(src.active >= 0 ? { activeAgoMs: Math.round(src.active / 1e6) } : {}),
          ...(last ? { lastReceived: { seq: last.seq, time: last.time.getTime() } } : {}),
        });
      }
      return lags;
    },

    async consumerPosition(name) {
      let info: ConsumerInfo;
      try {
        info = await conn.clients().jsm.consumers.info(spec.name, name);
      } catch (err) {
        if (isApiError(err, JetStreamApiCodes.ConsumerNotFound)) return undefined;
        throw err;
      }
      return {
        ackFloor: info.ack_floor.stream_seq,
        delivered: info.delivered.stream_seq,
        numPending: info.num_pending,
        numAckPending: info.num_ack_pending,
        created: info.created,
      };
    },

    async deleteConsumer(name) {
      try {
        await conn.clients().jsm.consumers.delete(spec.name, name);
      } catch (err) {
        if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
      }
    },

    async nextSeq(subject, fromSeq) {
      // STREAM.MSG.GET takes next_by_subj since nats-server 2.9; the client's type lists only seq and last_by_subj.
      const query = { seq: fromSeq, next_by_subj: subject } as unknown as { seq: number };
      const m = await conn
        .clients()
        .jsm.streams.getMessage(spec.name, query)
        .catch((err) => {
          if (isApiError(err, JetStreamApiCodes.NoMessageFound)) return null;
          throw err;
        });
      return m ? m.seq : undefined;
    },

    async timeOf(seq) {
      // Only "no such message" (deleted, or aged out) answers undefined; any other failure is thrown, so that
      // the caller retries instead of guessing a time.
      const m = await conn
        .clients()
        .jsm.streams.getMessage(spec.name, { seq })
        .catch((err) => {
          if (isApiError(err, JetStreamApiCodes.NoMessageFound)) return null;
          throw err;
        });
      return m ? m.time.getTime() : undefined;
    },

    async replay(subject, startTime, untilSeq, each) {
      const consumer = await conn.clients().js.consumers.get(spec.name, {
        filter_subjects: subject,
        deliver_policy: DeliverPolicy.StartTime,
        opt_start_time: new Date(startTime).toISOString(),
      });
      for (;;) {
        const batch = await consumer.fetch({ max_messages: 512, expires: 2000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          if (m.seq > untilSeq) return;
          const value = decodeOrSkip(m, `replay:${subject}`);
          if (value !== undefined) each(entryOf(m, value));
          if (m.seq === untilSeq || m.info.pending === 0) return;
        }
        if (got === 0) return;
      }
    },
  };
}
