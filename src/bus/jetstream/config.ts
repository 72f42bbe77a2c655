import { z } from 'zod';
import { spoolConfigSchema } from '../spool/config.ts';

const NAME = /^[A-Za-z0-9_-]+$/;

/** Settings of the replicated event log on NATS JetStream (`bus.jetstream` in the config file). */
export const jetStreamBusConfigSchema = z
  .object({
    /** NATS servers to connect to (any of the cluster; the client learns the others). */
    servers: z.array(z.string().min(1)).min(1).default(['nats://127.0.0.1:4222']),
    /** Connection name shown by the server's monitoring; empty means `vigil`. */
    client_name: z.string().default(''),
    /** The stream of events. */
    stream: z.string().regex(NAME).default('VIGIL_EVENTS'),
    /** Events of tenant T go to `<subject_prefix>.<T>`. */
    subject_prefix: z
      .string()
      .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/)
      .default('vigil.events'),
    /** Copies of the stream (1, 3 or 5 in practice); a publish is acknowledged once a majority has it. */
    replicas: z.number().int().min(1).max(5).default(3),
    /** Messages older than this are removed from the stream (every consumer must have read them by then). */
    max_age_seconds: z
      .number()
      .int()
      .min(60)
      .default(7 * 86400),
    /** Largest stream size; the oldest messages go beyond it. -1: no limit but the server's. */
    max_bytes: z.number().int().min(-1).default(-1),
    /** A publish retried with the same Nats-Msg-Id within this window is stored once. */
    duplicate_window_ms: z.number().int().min(1000).default(120000),
    /** Largest message; the server's max_payload (1 MiB by default) caps it. Bigger batches are split. */
    max_message_bytes: z
      .number()
      .int()
      .min(64 * 1024)
      .default(1024 * 1024),
    /** gzip message bodies (level 1): a smaller stream on every replica for a few percent more CPU. */
    compress: z.boolean().default(true),
    /** Longest wait for one PubAck. */
    publish_timeout_ms: z.number().int().min(100).default(2000),
    /**
     * Longest a publish retries through leader elections and reconnects before it goes to the spool. A
     * stream leader election takes seconds on 2.9: past this wait the client is answered from the spool
     * (fsynced here, forwarded in order later), which keeps the intake gap near this value.
     */
    publish_max_wait_ms: z.number().int().min(0).default(750),
    /** Events accepted and not yet acknowledged by JetStream or the spool; beyond it publishers get 503. */
    max_pending_events: z.number().int().min(100).default(200000),
    /** Keepalive ping period: a silent dead server is noticed after two missed pings. */
    ping_interval_ms: z.number().int().min(500).default(5000),
    consumer: z
      .object({
        /** Messages delivered and not yet acknowledged, at most, per consumer. */
        max_ack_pending: z.number().int().min(1).default(1000),
        /**
         * A message not acknowledged within this time is delivered again. Short, because it is how long the
         * shared `detect` consumer waits before a batch held by a dead or cut node (or whose ack was lost in a
         * consumer leader election) goes to another node; a handler that runs longer extends it as it works.
         */
        ack_wait_ms: z.number().int().min(1000).default(5000),
        /** Messages pulled at a time. */
        pull_max_messages: z.number().int().min(1).default(64),
        /**
         * How long one pull request lives; heartbeats come at half of it, so a consumer whose server died
         * notices within about this time (the client's default is 30 s). Measured in the NATS fault: from
         * the stream's new leader to the correlation alert 1.9 s with 2 s, 2.8 to 5.1 s with 5 s. The record
         * streams (matches, alerts) use it too.
         */
        pull_expires_ms: z.number().int().min(1000).default(2000),
        /** Most events handed to a handler in one call (messages are never split). */
        batch_max_events: z.number().int().min(1).default(20000),
      })
      .strict()
      .prefault({}),
    spool: spoolConfigSchema.prefault({}),
  })
  .strict();

export type JetStreamBusConfig = z.infer<typeof jetStreamBusConfigSchema>;
export type JetStreamBusConfigInput = z.input<typeof jetStreamBusConfigSchema>;
