import { createHash } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { EventStream, StreamBatch, StreamSubscription } from '../../bus/jetstream/index.ts';
import type { Component, ComponentHealth } from '../../lib/component.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge, histogram } from '../../lib/metrics.ts';
import type { EventStore } from '../index.ts';
import { DATABASE } from '../schema.ts';
import type { MaterializeConfig } from './config.ts';
import { settleBy } from '../../lib/deadline.ts';
import { backoffDelay, shouldLog, sleep } from '../../lib/retry.ts';
import {
  BATCHES_TABLE,
  batchesDdl,
  CopyError,
  CopyNoPeerError,
  type RangeCopy,
  recordBatch,
  recordBatches,
  sequenceRuns,
} from '../copy/index.ts';
import { ensureGapsTable, type Gap, openGaps, saveGap } from './gaps.ts';

export { type MaterializeConfig, materializeConfigSchema } from './config.ts';

/** The durable consumer of one shard on one node: `<node consumer>-s<shard>`. */
export function shardConsumerName(base: string, shard: number): string {
  return `${base}-s${shard}`;
}

/**
 * The dedup token of a batch's inserts: `<stream>:<first>-<last>:<digest>`, the digest over the consumer's
 * creation time and every sequence in delivery order. Every sequence: redeliveries come mixed with new
 * messages, so a later batch with the same ends may hold a message the earlier one did not, and the engine
 * would drop it whole (acknowledged, never written: an event stored once instead of R times). The consumer's
 * creation: the engine remembers a token after the rows are deleted, so a shard dropped and given back to
 * this node (a new consumer) would have the same first batches dropped.
 */
export function batchToken(
  streamId: string,
  consumerCreated: string,
  batch: Pick<StreamBatch, 'firstSeq' | 'lastSeq' | 'seqs'>,
): string {
  const digest = createHash('sha256')
    .update(`${consumerCreated}\n${batch.seqs.join(',')}`)
    .digest('base64url')
    .slice(0, 22);
  return `${streamId}:${batch.firstSeq}-${batch.lastSeq}:${digest}`;
}

/** Table of applied stream positions, in the store's own database (written after the events, see POSITION_INTERVAL_MS). */
export const POSITIONS_TABLE = `${DATABASE}.positions`;

/**
 * Least time between two position rows of a replica of the whole stream (a shard's replica writes one after
 * every batch). Each row is an INSERT, a part of about ten files and later a merge: at 6,000 events/s a
 * replica wrote one events INSERT a second and two of bookkeeping (this and the batch index), and creating
 * files was a fifth of the insert threads' perf samples (docs/performance.md). What a row would say is not
 * lost in between: the batch index, written after every batch, holds the highest sequence written (see
 * readPosition); the row's ack floor is then at most this much older, which is where a consumer made again
 * would resume (what it reads twice, the events table drops). A row is also written by the lag poll when
 * the batches stop, and at stop.
 */
export const POSITION_INTERVAL_MS = 5000;

/** The positions table (made by the materializer at start; the shard runner may read it first). */
export const POSITIONS_DDL = `CREATE TABLE IF NOT EXISTS ${POSITIONS_TABLE} (
  stream String,
  consumer String,
  seq UInt64,
  ack_floor UInt64,
  updated DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated)
ORDER BY (stream, consumer)`;

/** How far this store replica is behind the stream (the admin API shows it). */
export interface ReplicaLag {
  /** `<stream name>@<creation time>`: a stream deleted and made again is another stream. */
  stream: string;
  consumer: string;
  /** Highest stream sequence written to this replica. */
  appliedSeq: number;
  /** Every message up to here is acknowledged (the safe resume point). */
  ackFloor: number;
  /** The stream's last sequence, as last seen. */
  streamLastSeq: number;
  /**
   * Messages this replica has not acknowledged yet: the consumer's num_pending + num_ack_pending, about
   * streamLastSeq - ackFloor. Not streamLastSeq - appliedSeq: after a crash, messages delivered to the dead
   * process come again only after ack_wait, while later ones are already applied.
   */
  lagMessages: number;
  /** When the figures were last refreshed (epoch ms); 0 before the stream was first reached. */
  updatedAt: number;
  /**
   * Stream sequences this replica never wrote and the stream no longer holds, each until a peer's copy
   * fills it: exactly which events a search here may lack.
   */
  missing: { from_seq: number; to_seq: number; state: Gap['state']; detail: string; shard?: number }[];
}

/** The store node's consumer: writes the replicated log into this node's chdb replica. */
export interface Materializer extends Component {
  lag(): ReplicaLag;
}

/**
 * Creates the materializer of one store replica. Each batch of messages is inserted with
 * `insert_deduplication_token = <stream>:<first seq>-<last seq>:<digest of the seqs>#<chunk>` on each of its inserts (the events table keeps a
 * non-replicated de-duplication window, so a batch redelivered whole is dropped by the engine), and any
 * other duplicate (a batch redelivered cut differently) is hidden by ReplacingMergeTree + FINAL on the
 * event id. The position row follows the events; the consumer is acknowledged last. On start the durable
 * consumer resumes from its own ack floor; it is made again from the recorded ack floor when it is gone, or
 * when its floor is ahead of what this replica holds (a replica restored from an older copy or wiped).
 */
export function createMaterializer(
  config: MaterializeConfig,
  deps: {
    stream: EventStream;
    store: EventStore;
    nodeId: string;
    metrics: Registry;
    logger: Logger;
    /**
     * One shard of sharded events (`store.shards` > 1): the consumer reads only the shard's subject and is
     * named `<consumer>-s<shard>`; the node-wide lag gauges are left to the shard runner (sharded.ts).
     */
    shard?: number;
    /** S, with `shard`: a missing range of the shard is copied from a peer replica of the shard, filtered by shard. */
    shards?: number;
    /**
     * The store's folder was rebuilt from a backup (`restored-from.json` in the data folder): its positions
     * may be older than its consumer's, so what it cannot check against the stream it takes as missing.
     */
    restored?: boolean;
    /** Copies from a peer what the stream no longer holds; without it such a range stays missing. */
    copy?: RangeCopy;
    /** How long a missing range waits before it is asked for again (store.copy.retry_interval_ms). */
    copyRetryMs?: number;
    /** store.retention_days: the batch index ages out with the events. */
    retentionDays?: number;
  },
): Materializer {
  const log = deps.logger;
  const base = config.consumer || `store-${deps.nodeId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const consumer = deps.shard === undefined ? base : shardConsumerName(base, deps.shard);
  const filterSubject = deps.shard === undefined ? undefined : deps.stream.shardFilter(deps.shard);
  let streamId = '';
  /** The durable consumer's creation time, part of each dedup token (see batchToken). */
  let consumerCreated: string | undefined;
  /** The highest consumer ack floor recorded in the positions table by poll(). */
  let recordedFloor = 0;
  /** When a position row was last written (epoch ms), and its sequence. */
  let positionAt = 0;
  let positionSeq = 0;
  let appliedSeq = 0;
  let ackFloor = 0;
  let streamLastSeq = 0;
  let updatedAt = 0;
  let lagMessages = 0;
  let subscription: StreamSubscription | undefined;
  let running = false;
  let setup: Promise<void> | undefined;
  let poller: NodeJS.Timeout | undefined;
  let lastError: string | undefined;
  let gaps: Gap[] = [];
  let filling: Promise<void> | undefined;
  /**
   * A gap found at this start, before the consumer was made: its end is settled once the consumer exists
   * (the stream may drop more messages in between, which the consumer then never sees).
   */
  let unsettled: Gap | undefined;
  const shardFilter =
    deps.shard !== undefined && deps.shards !== undefined ? { index: deps.shard, count: deps.shards } : undefined;
  const halt = new AbortController();

  const lagGauge = gauge(
    deps.metrics,
    'vigil_store_replica_lag_messages',
    'Stream messages not yet written to this store replica (stream last seq - applied seq).',
  );
  const appliedGauge = gauge(
    deps.metrics,
    'vigil_store_applied_sequence',
    'Last stream sequence written to this replica.',
  );
  const materialized = counter(
    deps.metrics,
    'vigil_store_materialized_events_total',
    'Events written to this replica from the stream (redeliveries included).',
  );
  const seconds = histogram(
    deps.metrics,
    'vigil_store_materialize_seconds',
    'Time to write one batch from the stream.',
  );

  const missingGauge = gauge(
    deps.metrics,
    'vigil_store_replica_missing_messages',
    'Stream messages this replica never wrote and the stream no longer holds (until a peer copy fills them).',
  );
  const missingFirst = gauge(
    deps.metrics,
    'vigil_store_replica_missing_first_sequence',
    'First stream sequence of the lowest missing range (0: none missing).',
  );
  const missingLast = gauge(
    deps.metrics,
    'vigil_store_replica_missing_last_sequence',
    'Last stream sequence of the highest missing range (0: none missing).',
  );

  function updateLag(): void {
    if (deps.shard !== undefined) return;
    lagGauge.set(lagMessages);
    appliedGauge.set(appliedSeq);
    const open = gaps.filter((g) => g.state !== 'copied');
    missingGauge.set(open.reduce((n, g) => n + g.toSeq - g.fromSeq + 1, 0));
    missingFirst.set(open[0]?.fromSeq ?? 0);
    missingLast.set(open[open.length - 1]?.toSeq ?? 0);
  }

  function missingText(): string | undefined {
    const open = gaps.filter((g) => g.state !== 'copied');
    if (open.length === 0) return undefined;
    const of = deps.shard === undefined ? '' : `shard ${deps.shard}'s `;
    return `missing ${of}stream messages ${open.map((g) => `${g.fromSeq}-${g.toSeq} (${g.detail})`).join(', ')} of ${streamId}`;
  }

  /**
   * Settles the end of a gap found before the consumer was made: once the consumer exists it starts at or
   * before the stream's first message, so every message below that first one is in the gap (a superset:
   * what the copy brings twice collapses with the stream's).
   */
  async function settle(gap: Gap): Promise<void> {
    for (let attempt = 1; running; attempt++) {
      try {
        if (await deps.stream.consumerPosition(consumer)) {
          const s = await deps.stream.streamPosition();
          if (s.firstSeq - 1 > gap.toSeq) {
            log.info(
              { consumer, from_seq: gap.fromSeq, to_seq: s.firstSeq - 1, was_to_seq: gap.toSeq },
              'The stream dropped more messages before the consumer was made; the missing range grows.',
            );
            gap.toSeq = s.firstSeq - 1;
            // Another range: what a copy of the old one reached says nothing of the messages added to it.
            delete gap.progress;
            await saveGap(deps.store, gap);
            updateLag();
          }
          return;
        }
      } catch (err) {
        if (shouldLog(attempt)) log.warn({ err: errorMessage(err) }, 'The missing range cannot be settled yet.');
      }
      await sleep(backoffDelay(attempt, { initialMs: 100, maxMs: 2000 }), halt.signal);
    }
  }

  /**
   * Fills each open gap from a peer, oldest first, asking again with backoff (up to copyRetryMs) while no
   * peer holds one, and another peer than the one whose copy just failed. A filled gap of the whole stream is
   * recorded as a batch too, so that this replica serves it to the next one (a shard's replica serves its
   * shard to the next one from what it consumed, see ShardSource).
   */
  async function fill(): Promise<void> {
    const attempts = new Map<Gap, number>();
    let exclude: string[] = [];
    if (unsettled) await settle(unsettled);
    unsettled = undefined;
    while (running) {
      const next = gaps.find((g) => g.state !== 'copied');
      if (!next) return;
      const range = `${next.fromSeq}-${next.toSeq}`;
      if (!deps.copy) {
        next.detail = 'no peer copy on this node (store.copy.enabled is off, or the bus is not jetstream)';
        await saveGap(deps.store, next);
        updateLag();
        return;
      }
      try {
        const result = await deps.copy.copy(
          {
            stream: next.stream,
            fromSeq: next.fromSeq,
            toSeq: next.toSeq,
            ...(shardFilter ? { shard: shardFilter } : {}),
          },
          {
            signal: halt.signal,
            exclude,
            ...(next.progress ? { resume: next.progress } : {}),
            onPeer: (peer) => {
              next.state = 'copying';
              next.detail = next.progress
                ? `copying from ${peer}, after the ${next.progress.pages} pages already copied`
                : `copying from ${peer}`;
            },
            // Recorded with the range before the next page is asked: a restart resumes after this page.
            onPage: async (progress) => {
              next.progress = progress;
              await saveGap(deps.store, next);
            },
          },
        );
        if (!shardFilter && result.fromIngested !== null && result.toIngested !== null) {
          await recordBatch(deps.store, {
            stream: next.stream,
            firstSeq: next.fromSeq,
            lastSeq: next.toSeq,
            events: result.events,
            minIngested: result.fromIngested,
            maxIngested: result.toIngested,
          });
        }
        next.state = 'copied';
        const resumed = result.resumedPages > 0 ? ` (resumed after page ${result.resumedPages})` : '';
        next.detail = `copied from ${result.peer}: ${result.events} events in ${result.pages} pages${resumed}`;
        delete next.progress;
        await saveGap(deps.store, next);
        exclude = [];
        updateLag();
        log.info(
          { range, stream: next.stream, shard: deps.shard, peer: result.peer, events: result.events },
          'A missing range was copied from a peer replica.',
        );
      } catch (err) {
        if (!running) return;
        next.state = 'missing';
        const failed = attempts.get(next) ?? 0;
        attempts.set(next, failed + 1);
        if (err instanceof CopyNoPeerError) {
          next.detail =
            exclude.length > 0
              ? `no peer replica holds it but ${exclude.join(', ')}, whose copy failed`
              : 'no peer replica holds it';
          // The peers left out may be the only ones: they are asked again next time.
          exclude = [];
        } else {
          next.detail = `the copy failed: ${errorMessage(err)}`;
          if (err instanceof CopyError && err.peer && !exclude.includes(err.peer)) exclude.push(err.peer);
        }
        updateLag();
        if (shouldLog(failed))
          log.error(
            {
              range,
              stream: next.stream,
              shard: deps.shard,
              from_seq: next.fromSeq,
              to_seq: next.toSeq,
              reason: next.detail,
            },
            'Stream messages this replica never wrote are missing: the stream no longer holds them and no peer copy filled them.',
          );
        try {
          await saveGap(deps.store, next);
        } catch (saveErr) {
          log.warn({ err: errorMessage(saveErr) }, 'The missing range could not be recorded; it is kept in memory.');
        }
        const retryMs = deps.copyRetryMs ?? 30_000;
        await sleep(backoffDelay(failed, { initialMs: Math.min(1000, retryMs), maxMs: retryMs }), halt.signal);
      }
    }
  }

  /**
   * What this replica recorded of the stream: the highest sequence it wrote and the consumer ack floor it
   * last recorded. A replica of the whole stream writes its position row at most every POSITION_INTERVAL_MS,
   * so its highest sequence is read from the batch index as well, written after every batch's events (a
   * range copied from a peer is in it too: this replica holds it).
   */
  async function readPosition(id: string): Promise<{ seq: number; ackFloor: number }> {
    const params = { stream: id, consumer };
    const rows = await deps.store.query<{ seq: string | number; ack_floor: string | number }>(
      `SELECT max(seq) AS seq, max(ack_floor) AS ack_floor FROM ${POSITIONS_TABLE} WHERE stream = {stream:String} AND consumer = {consumer:String}`,
      params,
    );
    let seq = Number(rows[0]?.seq ?? 0);
    if (deps.shard === undefined) {
      const batches = await deps.store.query<{ seq: string | number }>(
        `SELECT max(last_seq) AS seq FROM ${BATCHES_TABLE} WHERE stream = {stream:String}`,
        params,
      );
      seq = Math.max(seq, Number(batches[0]?.seq ?? 0));
    }
    return { seq, ackFloor: Number(rows[0]?.ack_floor ?? 0) };
  }

  async function writePosition(seq: number, floor: number = ackFloor): Promise<void> {
    const at = Date.now();
    await deps.store.insertRows(
      'positions',
      Buffer.from(JSON.stringify({ stream: streamId, consumer, seq, ack_floor: floor, updated: at })),
    );
    positionAt = at;
    positionSeq = Math.max(positionSeq, seq);
  }

  async function apply(batch: StreamBatch): Promise<void> {
    const end = seconds.startTimer();
    try {
      let minIngested = 0;
      let maxIngested = 0;
      if (batch.events.length > 0) {
        // Asked once per run: the consumer exists, it delivered this batch.
        if (consumerCreated === undefined) consumerCreated = (await deps.stream.consumerPosition(consumer))?.created;
        // The token lets the engine drop a batch redelivered exactly as it was.
        await deps.store.write(batch.events, { dedupToken: batchToken(streamId, consumerCreated ?? '', batch) });
        minIngested = Number.POSITIVE_INFINITY;
        for (const e of batch.events) {
          if (e.ingested < minIngested) minIngested = e.ingested;
          if (e.ingested > maxIngested) maxIngested = e.ingested;
        }
      }
      // After the events (the rows say this replica holds them), before the position: one row per run of
      // consecutive sequences the batch holds, never its first and last delivered (a redelivery after a
      // newer message made rows of first_seq > last_seq). Each run is given the batch's ingestion times, a
      // superset as the batch index allows. A shard's consumer records none: it holds its shard's messages
      // only, never a run of the stream, and serves its shard by its ack floor (see ShardSource).
      if (deps.shard === undefined) {
        await recordBatches(
          deps.store,
          sequenceRuns(batch.seqs).map(([firstSeq, lastSeq]) => ({
            stream: streamId,
            firstSeq,
            lastSeq,
            events: batch.events.length,
            minIngested,
            maxIngested,
          })),
        );
      }
      // The highest sequence, not the last delivered: a redelivery may come after a newer message.
      const seq = batch.seqs.reduce((a, b) => Math.max(a, b), Math.max(appliedSeq, batch.lastSeq));
      // A shard's consumer records no batch index: its position row is its only record of what it holds.
      if (deps.shard !== undefined || Date.now() - positionAt >= POSITION_INTERVAL_MS) await writePosition(seq);
      appliedSeq = seq;
      streamLastSeq = Math.max(streamLastSeq, batch.lastSeq + batch.pending);
      materialized.inc(batch.events.length);
      lastError = undefined;
      updateLag();
      log.trace(
        { first_seq: batch.firstSeq, last_seq: batch.lastSeq, events: batch.events.length },
        'Stream batch written.',
      );
    } catch (err) {
      lastError = `writing stream messages ${batch.firstSeq}-${batch.lastSeq} failed: ${errorMessage(err)}`;
      throw err;
    } finally {
      end();
    }
  }

  async function poll(): Promise<void> {
    try {
      const [s, c] = await Promise.all([deps.stream.streamPosition(), deps.stream.consumerPosition(consumer)]);
      // Not before begin() has settled what is missing: a shard replica would report a lag without its gap.
      if (!streamId || !subscription) return;
      streamLastSeq = s.lastSeq;
      if (c && c.ackFloor > recordedFloor && c.ackFloor > appliedSeq) {
        // Every message up to the floor was written here before it was acknowledged: recorded, so that a
        // restart does not take a floor past this shard's last message for a wiped replica (see begin).
        await writePosition(appliedSeq, c.ackFloor);
        recordedFloor = c.ackFloor;
      }
      if (c) ackFloor = c.ackFloor;
      // Batches written since the last row, none for an interval: the row catches up.
      if (appliedSeq > positionSeq && Date.now() - positionAt >= POSITION_INTERVAL_MS) await writePosition(appliedSeq);
      lagMessages = c ? c.numPending + c.numAckPending : Math.max(0, s.lastSeq - ackFloor);
      updatedAt = Date.now();
      updateLag();
    } catch (err) {
      log.debug({ err: errorMessage(err) }, 'The replica lag could not be refreshed.');
    }
  }

  /** Finds the stream, decides where the consumer starts, and subscribes; retries until the stream answers. */
  async function begin(): Promise<void> {
    for (let attempt = 1; running; attempt++) {
      try {
        const s = await deps.stream.streamPosition();
        streamId = `${s.stream}@${s.created}`;
        const stored = await readPosition(streamId);
        appliedSeq = stored.seq;
        ackFloor = stored.ackFloor;
        streamLastSeq = s.lastSeq;
        const existing = await deps.stream.consumerPosition(consumer);
        lagMessages = Math.max(0, s.lastSeq - stored.ackFloor);
        // What this replica holds: its highest written sequence, or the consumer floor it recorded (a shard's
        // consumer floor passes the other shards' messages after its own last one, which it never writes).
        let held = Math.max(stored.seq, stored.ackFloor);
        // That recorded floor can be older than the consumer's (a kill before the lag poll recorded it): a
        // shard's replica is behind only if a message of its shard lies between what it holds and the
        // consumer's floor, which the stream tells while it still holds them all.
        if (filterSubject && existing && existing.ackFloor > held) {
          if (held + 1 >= s.firstSeq && deps.stream.nextSeq) {
            const next = await deps.stream.nextSeq(filterSubject, held + 1);
            if (next === undefined || next > existing.ackFloor) held = existing.ackFloor;
          } else if (stored.seq > 0 && !deps.restored) {
            // The stream no longer holds what lies between. This replica wrote the stream before and its folder
            // was not rebuilt from a backup: it held all its consumer acknowledged (the acknowledgement follows
            // the write), and the floor passed other shards' messages before the poll recorded it.
            held = existing.ackFloor;
          }
        }
        const behind = existing !== undefined && existing.ackFloor > held;
        // Delivered to a process that is gone, never acknowledged: nats-server 2.9.10, killed with the
        // consumer, was seen to restore it without them pending (never delivered again, and passed over by the
        // ack floor once a later message was acknowledged: acknowledged events missing from this replica). So
        // the consumer is made again from its floor: they come again, and what this replica holds is deduped.
        const inFlight = existing !== undefined && !behind && existing.delivered > existing.ackFloor;
        let resumeSeq = stored.ackFloor + 1;
        if (existing && inFlight) {
          log.warn(
            {
              consumer,
              consumer_ack_floor: existing.ackFloor,
              consumer_delivered: existing.delivered,
              acknowledgements_pending: existing.numAckPending,
            },
            'Messages delivered before this start were never acknowledged; the consumer is made again from its floor.',
          );
          await deps.stream.deleteConsumer(consumer);
          resumeSeq = existing.ackFloor + 1;
          ackFloor = Math.max(ackFloor, existing.ackFloor);
        } else if (existing && behind) {
          // The consumer says more was written than this replica holds: it lost data, so read it again.
          log.warn(
            {
              consumer,
              consumer_ack_floor: existing.ackFloor,
              applied_seq: stored.seq,
              resume_seq: stored.ackFloor + 1,
            },
            'This store replica is behind its consumer (restored or wiped); the consumer is made again.',
          );
          await deps.stream.deleteConsumer(consumer);
        } else if (existing) {
          ackFloor = Math.max(ackFloor, Math.min(existing.ackFloor, held));
          lagMessages = existing.numPending + existing.numAckPending;
        }
        gaps = await openGaps(deps.store, streamId, shardFilter ? consumer : undefined);
        if (resumeSeq < s.firstSeq && (!existing || behind || inFlight)) {
          const gap: Gap = {
            stream: streamId,
            ...(shardFilter ? { consumer } : {}),
            fromSeq: resumeSeq,
            toSeq: s.firstSeq - 1,
            state: 'missing',
            detail: 'to be copied from a peer replica',
          };
          log.warn(
            { consumer, from_seq: gap.fromSeq, to_seq: gap.toSeq, stream_first_seq: s.firstSeq },
            'Messages this replica never wrote have aged out of the stream; they are asked of a peer replica.',
          );
          // The same start recorded before (a restart before the copy): the new end replaces it; a copy of
          // the very same range goes on where it stopped.
          const same = gaps.find((g) => g.fromSeq === gap.fromSeq && g.toSeq === gap.toSeq);
          if (same?.progress) gap.progress = same.progress;
          // Recorded before the consumer moves past them: a restart still knows the range.
          await saveGap(deps.store, gap);
          gaps = [...gaps.filter((g) => g.fromSeq !== gap.fromSeq), gap];
          unsettled = gap;
        }
        updateLag();
        if (gaps.length > 0) filling = fill();
        subscription = deps.stream.subscribeStream(consumer, apply, {
          durable: true,
          startSequence: resumeSeq,
          lingerMs: config.linger_ms,
          ...(filterSubject ? { filterSubject } : {}),
        });
        updatedAt = Date.now();
        updateLag();
        void poll();
        log.info(
          { consumer, stream: streamId, applied_seq: appliedSeq, stream_last_seq: s.lastSeq },
          'The store replica follows the event stream.',
        );
        return;
      } catch (err) {
        lastError = `event stream not reachable: ${errorMessage(err)}`;
        if (attempt === 1 || attempt % 20 === 0) {
          log.warn(
            { err: errorMessage(err), attempt },
            'The store replica cannot reach the event stream yet; retrying.',
          );
        }
        await sleep(backoffDelay(attempt, { initialMs: 100, maxMs: 2000 }), halt.signal);
      }
    }
  }

  return {
    name: 'materialize',
    async start() {
      await deps.store.exec(POSITIONS_DDL);
      await ensureGapsTable(deps.store);
      await deps.store.exec(batchesDdl(deps.retentionDays ?? 30));
      running = true;
      setup = begin();
      poller = setInterval(() => void poll(), config.lag_poll_interval_ms);
      poller.unref();
    },
    async stop(deadline) {
      running = false;
      halt.abort();
      if (poller) clearInterval(poller);
      await settleBy(setup, deadline);
      await settleBy(filling, deadline);
      await settleBy(subscription?.stop(), deadline);
      subscription = undefined;
      // The last batches' position, for the next start (the batch index holds their highest sequence already).
      if (streamId && appliedSeq > positionSeq) {
        await settleBy(
          writePosition(appliedSeq).catch((err: unknown) =>
            log.warn({ err: errorMessage(err) }, 'The last stream position could not be recorded at stop.'),
          ),
          deadline,
        );
      }
    },
    health(): ComponentHealth {
      if (!running) return { ok: false, detail: 'stopped' };
      // Searches still work on what this replica holds: lagging is reported, not a reason to leave the pool.
      const behind = [lastError, `${lagMessages} messages behind the stream`, missingText()].filter(Boolean);
      return { ok: true, detail: behind.join('; ') };
    },
    lag: () => ({
      stream: streamId,
      consumer,
      appliedSeq,
      ackFloor,
      streamLastSeq,
      lagMessages,
      updatedAt,
      missing: gaps.map((g) => ({
        from_seq: g.fromSeq,
        to_seq: g.toSeq,
        state: g.state,
        detail: g.detail,
        ...(deps.shard !== undefined ? { shard: deps.shard } : {}),
      })),
    }),
  };
}
