/**
 * The record streams of a cluster (routed Sigma matches, the alert log): JSON values in a typed JetStream
 * log (`src/bus/jetstream/log.ts`) on the bus's connection, with the conventions they share: a stream holds
 * `<subject>` and `<subject>.>`, a publish retries through leader elections for `publishMaxWaitMs`, and a
 * durable consumer gets up to `batch` records at a time, acknowledged after its handler resolved.
 */
import {
  createJetStreamLog,
  type JetStreamBus,
  type JetStreamLog,
  jsonCodec,
  type LogEntry,
  type LogSource,
  type SourceLag,
} from '../../bus/jetstream/index.ts';
import type { Logger } from '../../lib/logger.ts';

/** A record as a consumer receives it. */
export type StreamRecord<T> = LogEntry<T>;

export interface RecordStreamOptions {
  /** Stream name, e.g. VIGIL_ALERTS. */
  name: string;
  /** The stream holds `<subject>` and `<subject>.>`. */
  subject: string;
  maxAgeMs: number;
  duplicateWindowMs: number;
  /** Longest one publish retries (elections take seconds on nats-server 2.9). */
  publishMaxWaitMs: number;
  /** How long one pull request lives: a consumer whose server died notices within about this time. */
  pullExpiresMs: number;
  /** Streams copied in by JetStream (the peer site's records, two sites). */
  sources?: LogSource[];
}

/** Options of one durable consumer. */
export interface DurableOptions {
  filterSubject?: string;
  /** Where the consumer starts when it is created; it resumes at its ack floor when it exists. */
  startSeq?: number;
  ackWaitMs?: number;
  /** Records pulled, and handed over, at a time. */
  batch?: number;
  /** Only this node reads the consumer (see ConsumeOptions.remakeUnacked). */
  remakeUnacked?: boolean;
}

export interface RecordConsumer {
  stop(): Promise<void>;
}

/** A record stream: one JSON log, read by each consumer as its own type. */
export interface RecordStream {
  readonly subject: string;
  ensure(): Promise<void>;
  /** Publishes one record; resolves with its stream sequence once JetStream acknowledged it. */
  publish(subject: string, value: unknown, msgID: string): Promise<number>;
  /** Runs a durable consumer (see ConsumeOptions): records in stream order, acknowledged after `handler`. */
  consume<T>(
    durable: string,
    handler: (records: StreamRecord<T>[]) => Promise<void>,
    o?: DurableOptions,
  ): RecordConsumer;
  /** How far this stream is behind each stream it sources (none without `sources`). */
  sourceLags(): Promise<SourceLag[]>;
  /** A durable consumer's ack floor (every record up to it is handled); undefined when it does not exist. */
  ackFloor(durable: string): Promise<number | undefined>;
  deleteConsumer(durable: string): Promise<void>;
  /** Records a durable consumer has not acknowledged yet (undelivered and in flight); undefined: no consumer. */
  consumerPending(durable: string): Promise<number | undefined>;
  timeOf(seq: number): Promise<number | undefined>;
  replay<T>(subject: string, startTime: number, untilSeq: number, each: (r: StreamRecord<T>) => void): Promise<void>;
}

/** Creates a record stream over the bus's JetStream connection; the stream is made on first use. */
export function createRecordStream(bus: JetStreamBus, opts: RecordStreamOptions, logger: Logger): RecordStream {
  const log: JetStreamLog<unknown> = createJetStreamLog(
    bus.connection,
    {
      name: opts.name,
      subjects: [opts.subject, `${opts.subject}.>`],
      maxAgeMs: opts.maxAgeMs,
      duplicateWindowMs: opts.duplicateWindowMs,
      ...(opts.sources ? { sources: opts.sources } : {}),
    },
    jsonCodec<unknown>(),
    { logger, label: 'record stream' },
  );
  return {
    subject: opts.subject,
    ensure: () => log.ensure(),
    publish: (subject, value, msgID) =>
      log.publish(subject, value, msgID, {
        deadline: Date.now() + opts.publishMaxWaitMs,
        maxTimeoutMs: 2000,
        minTimeoutMs: 200,
        backoff: { initialMs: 50, maxMs: 1000 },
        failCode: 'record_publish_failed',
      }),
    consume: <T>(durable: string, handler: (records: StreamRecord<T>[]) => Promise<void>, o: DurableOptions = {}) =>
      log.consume(durable, handler as (records: StreamRecord<unknown>[]) => Promise<void>, {
        filterSubject: o.filterSubject,
        startSeq: o.startSeq,
        ackWaitMs: o.ackWaitMs ?? 10000,
        maxAckPending: 10000,
        pullMaxMessages: o.batch ?? 256,
        pullExpiresMs: opts.pullExpiresMs,
        batchMaxWeight: o.batch ?? 256,
        retry: { initialMs: 100, maxMs: 2000 },
        remakeUnacked: o.remakeUnacked,
      }),
    ackFloor: async (durable) => {
      await log.ensure();
      return (await log.consumerPosition(durable))?.ackFloor;
    },
    deleteConsumer: (durable) => log.deleteConsumer(durable),
    sourceLags: () => log.sourceLags(),
    consumerPending: async (durable) => {
      await log.ensure();
      const p = await log.consumerPosition(durable);
      return p ? p.numPending + p.numAckPending : undefined;
    },
    timeOf: (seq) => log.timeOf(seq),
    replay: <T>(subject: string, startTime: number, untilSeq: number, each: (r: StreamRecord<T>) => void) =>
      log.replay(subject, startTime, untilSeq, each as (r: StreamRecord<unknown>) => void),
  };
}
