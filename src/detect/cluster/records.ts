/**
 * A replicated log of JSON records on JetStream, beside the event stream and on the same connection: the
 * Sigma matches routed to correlation partitions and the alert log both use it. Publishing retries through
 * leader elections; consumers are durable pull consumers that hand records over in stream order and are
 * acknowledged only after their handler resolved (at least once: every handler is idempotent).
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JsMsg,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { JetStreamBus } from '../../bus/index.ts';
import { errorMessage, VigilError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';

/** A record as a consumer receives it. */
export interface StreamRecord<T> {
  seq: number;
  subject: string;
  /** When the stream stored it, epoch ms. */
  time: number;
  value: T;
}

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
}

/** Options of one durable consumer. */
export interface DurableOptions {
  filterSubject?: string;
  /** Where the consumer starts when it is created; it resumes at its ack floor when it exists. */
  startSeq?: number;
  ackWaitMs?: number;
  batch?: number;
}

export interface RecordConsumer {
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

const notFound = (err: unknown, code: number) => err instanceof JetStreamApiError && err.code === code;

export type RecordStream = ReturnType<typeof createRecordStream>;

/** Creates a record stream over the bus's JetStream connection; the stream is made on first use. */
export function createRecordStream(bus: JetStreamBus, opts: RecordStreamOptions, log: Logger) {
  let ensured: Promise<void> | undefined;

  const client = () => {
    const c = bus.jetstream();
    if (!c) throw new VigilError('bus_disconnected', 'not connected to NATS', { status: 503, retryable: true });
    return c;
  };

  const ensure = async (): Promise<void> => {
    const { jsm, replicas } = client();
    ensured ??= (async () => {
      const want = {
        name: opts.name,
        subjects: [opts.subject, `${opts.subject}.>`],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        num_replicas: replicas,
        max_age: nanos(opts.maxAgeMs),
        duplicate_window: nanos(opts.duplicateWindowMs),
        discard: DiscardPolicy.Old,
      };
      try {
        const info = await jsm.streams.info(opts.name);
        if (info.config.max_age !== want.max_age || info.config.num_replicas !== want.num_replicas) {
          await jsm.streams.update(opts.name, { ...info.config, ...want });
        }
      } catch (err) {
        if (!notFound(err, JetStreamApiCodes.StreamNotFound)) throw err;
        await jsm.streams.add(want);
        log.info({ stream: opts.name, replicas }, 'A record stream was created.');
      }
    })().catch((err) => {
      ensured = undefined;
      throw err;
    });
    return ensured;
  };

  /** Publishes one record; resolves with its stream sequence once JetStream acknowledged it. */
  const publish = async (subject: string, value: unknown, msgID: string): Promise<number> => {
    const data = Buffer.from(JSON.stringify(value));
    const deadline = Date.now() + opts.publishMaxWaitMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await ensure();
        const ack = await client().js.publish(subject, data, {
          msgID,
          timeout: Math.max(200, Math.min(2000, deadline - Date.now())),
        });
        return ack.seq;
      } catch (err) {
        if (Date.now() >= deadline) {
          throw new VigilError('record_publish_failed', `${opts.name}: ${errorMessage(err)}`, {
            status: 503,
            retryable: true,
            cause: err,
          });
        }
        await sleep(Math.min(1000, 50 * 2 ** Math.min(attempt, 5)));
      }
    }
  };

  /**
   * Runs a durable pull consumer: records in stream order, a batch at a time; the batch is acknowledged
   * after `handler` resolves, retried (never skipped) when it rejects. A record that is not JSON is logged
   * and terminated.
   */
  const consume = <T>(
    durable: string,
    handler: (records: StreamRecord<T>[]) => Promise<void>,
    o: DurableOptions = {},
  ): RecordConsumer => {
    let stopped = false;
    let wake: (() => void) | undefined;
    let halt: (() => void) | undefined;
    const handleWithRetry = async (msgs: JsMsg[], records: StreamRecord<T>[]) => {
      for (let attempt = 0; ; attempt++) {
        const keepAlive = setInterval(() => {
          for (const m of msgs) m.working();
        }, 1000);
        try {
          if (records.length > 0) await handler(records);
          for (const m of msgs) m.ack();
          return;
        } catch (err) {
          if (attempt === 0 || attempt % 20 === 0)
            log.error({ consumer: durable, err: errorMessage(err), attempt }, 'A record batch failed; retrying it.');
          if (stopped) {
            for (const m of msgs) m.nak();
            return;
          }
          await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
        } finally {
          clearInterval(keepAlive);
        }
      }
    };

    const loop = (async () => {
      let attempt = 0;
      while (!stopped) {
        try {
          await ensure();
          const { js, jsm } = client();
          await ensureConsumer(jsm, durable, o);
          const consumer = await js.consumers.get(opts.name, durable);
          attempt = 0;
          // Messages are handled as they arrive (a fetch would hold them until it is full or expires, a
          // second or more per hop): a reader fills the buffer, each turn takes what it holds.
          const messages = await consumer.consume({ max_messages: o.batch ?? 256, expires: opts.pullExpiresMs });
          const buffer: JsMsg[] = [];
          let arrived: (() => void) | undefined;
          let ended = false;
          let readError: unknown;
          halt = () => messages.stop();
          const reader = (async () => {
            try {
              for await (const m of messages) {
                buffer.push(m);
                arrived?.();
              }
            } catch (err) {
              readError = err;
            } finally {
              ended = true;
              arrived?.();
            }
          })();
          while (!stopped) {
            if (buffer.length === 0) {
              if (ended) break;
              await new Promise<void>((r) => {
                arrived = r;
              });
              arrived = undefined;
              continue;
            }
            const msgs = buffer.splice(0, o.batch ?? 256);
            const records: StreamRecord<T>[] = [];
            for (const m of msgs) {
              try {
                records.push({ seq: m.seq, subject: m.subject, time: m.time.getTime(), value: m.json<T>() });
              } catch (err) {
                log.error({ stream: opts.name, seq: m.seq, err: errorMessage(err) }, 'A record is not JSON; skipped.');
              }
            }
            await handleWithRetry(msgs, records);
          }
          messages.stop();
          await reader;
          // Delivered and not handled (stopping): handed back now rather than after ack_wait.
          for (const m of buffer.splice(0)) m.nak();
          if (readError) throw readError;
          if (!stopped) throw new Error('the consumer ended');
        } catch (err) {
          if (stopped) break;
          attempt++;
          if (attempt === 1 || attempt % 20 === 0)
            log.warn({ consumer: durable, err: errorMessage(err), attempt }, 'A record consumer is retrying.');
          await new Promise<void>((r) => {
            wake = r;
            setTimeout(r, Math.min(2000, 100 * 2 ** Math.min(attempt, 5))).unref();
          });
        }
      }
    })();

    return {
      async stop() {
        stopped = true;
        wake?.();
        halt?.();
        await loop;
      },
    };
  };

  const ensureConsumer = async (
    jsm: NonNullable<ReturnType<JetStreamBus['jetstream']>>['jsm'],
    durable: string,
    o: DurableOptions,
  ) => {
    try {
      await jsm.consumers.info(opts.name, durable);
    } catch (err) {
      if (!notFound(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
      const start = o.startSeq ?? 0;
      await jsm.consumers.add(opts.name, {
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(o.ackWaitMs ?? 10000),
        max_deliver: -1,
        max_ack_pending: 10000,
        ...(o.filterSubject ? { filter_subject: o.filterSubject } : {}),
        ...(start > 1
          ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start }
          : { deliver_policy: DeliverPolicy.All }),
      });
    }
  };

  return {
    subject: opts.subject,
    ensure,
    publish,
    consume,
    /** A durable consumer's ack floor (every record up to it is handled); undefined when it does not exist. */
    async ackFloor(durable: string): Promise<number | undefined> {
      await ensure();
      try {
        return (await client().jsm.consumers.info(opts.name, durable)).ack_floor.stream_seq;
      } catch (err) {
        if (notFound(err, JetStreamApiCodes.ConsumerNotFound)) return undefined;
        throw err;
      }
    },
    async deleteConsumer(durable: string): Promise<void> {
      try {
        await client().jsm.consumers.delete(opts.name, durable);
      } catch (err) {
        if (!notFound(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
      }
    },
    /** Time the stream stored record `seq`, epoch ms (undefined when it is gone). */
    async timeOf(seq: number): Promise<number | undefined> {
      const m = await client()
        .jsm.streams.getMessage(opts.name, { seq })
        .catch(() => null);
      return m ? m.time.getTime() : undefined;
    },
    /**
     * Reads the records of `subject` from `startTime` (epoch ms) up to `untilSeq` inclusive, in order, with
     * an ordered consumer (nothing acknowledged, nothing left behind).
     */
    async replay<T>(subject: string, startTime: number, untilSeq: number, each: (r: StreamRecord<T>) => void) {
      const consumer = await client().js.consumers.get(opts.name, {
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
          each({ seq: m.seq, subject: m.subject, time: m.time.getTime(), value: m.json<T>() });
          if (m.seq === untilSeq || m.info.pending === 0) return;
        }
        if (got === 0) return;
      }
    },
  };
}
