import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Registry } from 'prom-client';
import type { Bus } from '../bus/index.ts';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage } from '../lib/errors.ts';
import type { NormalizedEvent } from '../lib/event.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge } from '../lib/metrics.ts';
import { EVENTS_TABLE, type EventRow, type EventStore, rowToNormalized } from '../store/index.ts';
import { retry } from '../lib/retry.ts';

/**
 * How far behind the clock the position is raised after a batch is evaluated. The next batch then usually
 * has nothing older (no synchronous write before its commit); a restart re-evaluates at most about this much.
 */
const RAISE_MARGIN_MS = 5000;
/** The position is raised (one small fsynced file write) at most this often. */
const RAISE_EVERY_MS = 1000;
/** Events read from the store per page of the catch-up after a restart. */
const CATCH_UP_PAGE = 5000;

/**
 * Detection's committed position in the event log of a single node (ADR 0004): `ingested` ms such that
 * every stored event received before it has been evaluated and its alerts committed. Lowered (synchronously,
 * fsynced) before the store commits an older batch, raised after the alerts of a batch are committed.
 */
export interface DetectionPosition {
  /** Epoch ms; undefined before load(). */
  value(): number | undefined;
  load(): void;
  /**
   * Called before the store commits `events`: the position drops to their oldest receipt time if needed, and
   * the batch counts as not yet evaluated until {@link DetectionPosition.evaluated} names it (the same array).
   * The bus hands every committed batch to detection before it commits the next one: a batch given here
   * earlier and never handed over ({@link DetectionPosition.handedOver}) failed its commit and no longer counts.
   */
  beforeCommit(events: readonly NormalizedEvent[]): void;
  /** Called when the bus hands the committed batch `events` to detection, before its evaluation starts. */
  handedOver(events: readonly NormalizedEvent[]): void;
  /**
   * Called when `events` has been evaluated: the position may move up, never past a batch committed and not
   * evaluated yet (the bus commits the next batch while detection evaluates one).
   */
  evaluated(events: readonly NormalizedEvent[], now?: number): void;
}

/** A batch between beforeCommit and its evaluation. */
interface Unevaluated {
  /** The batch itself: found by identity, the first entry of it in commit order (an array sent twice is two). */
  events: readonly NormalizedEvent[];
  oldest: number;
  handedOver: boolean;
}

/** The position kept in `<dataDir>/detect-position.json` (written to a temporary file, fsynced, renamed). */
export function createDetectionPosition(dataDir: string): DetectionPosition {
  const file = join(dataDir, 'detect-position.json');
  let position: number | undefined;
  let raisedAt = 0;
  /** Batches given to beforeCommit and not evaluated yet, in commit order (at most about three). */
  let unevaluated: Unevaluated[] = [];

  const persist = (ingested: number) => {
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ ingested_ms: ingested })}\n`);
    const fd = openSync(tmp, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    const dir = openSync(dirname(file), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    position = ingested;
  };

  return {
    value: () => position,
    load() {
      try {
        const v = JSON.parse(readFileSync(file, 'utf8')).ingested_ms;
        if (typeof v === 'number' && Number.isFinite(v)) {
          position = v;
          return;
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      // No position yet (a new data folder, or one from a Vigil before positions): what is stored counts as
      // evaluated, as it was before; from now on nothing stored goes unevaluated.
      persist(Date.now());
    },
    beforeCommit(events) {
      if (position === undefined || events.length === 0) return;
      let oldest = events[0].ingested;
      for (const e of events) if (e.ingested < oldest) oldest = e.ingested;
      // Every batch before this one has been handed over or has failed its commit (see beforeCommit's doc).
      unevaluated = unevaluated.filter((b) => b.handedOver);
      unevaluated.push({ events, oldest, handedOver: false });
      if (oldest < position) persist(oldest);
    },
    handedOver(events) {
      const batch = unevaluated.find((b) => b.events === events && !b.handedOver);
      if (batch) batch.handedOver = true;
    },
    evaluated(events, now = Date.now()) {
      const i = unevaluated.findIndex((b) => b.events === events && b.handedOver);
      if (i >= 0) unevaluated.splice(i, 1);
      if (position === undefined || now - raisedAt < RAISE_EVERY_MS) return;
      let next = now - RAISE_MARGIN_MS;
      for (const b of unevaluated) if (b.oldest < next) next = b.oldest;
      if (next <= position) return;
      raisedAt = now;
      persist(next);
    },
  };
}

/**
 * Detection of a single node as a consumer of the in-process event log with a committed position: the bus
 * hands it each batch after the store committed it, a failed evaluation is retried (the bus waits, so intake
 * pushes back) instead of skipped, and at start the events stored since the position are evaluated again
 * (alert ids are deterministic: an alert raised before is not stored twice).
 */
export function createLocalDetectionFeed(deps: {
  dataDir: string;
  bus: Bus;
  store: EventStore;
  handle: (events: NormalizedEvent[]) => Promise<void>;
  metrics: Registry;
  logger: Logger;
  retryInitialMs?: number;
  retryMaxMs?: number;
}): Component {
  const position = createDetectionPosition(deps.dataDir);
  const caughtUp = counter(
    deps.metrics,
    'vigil_detect_catch_up_events_total',
    'Stored events evaluated again at start, after the detection position.',
  );
  const retries = counter(deps.metrics, 'vigil_detect_retries_total', 'Event batches whose evaluation was retried.');
  const positionAge = gauge(
    deps.metrics,
    'vigil_detect_position_age_seconds',
    'Age of the detection position: events received after it may still need evaluating.',
  );
  let stopping = false;
  /** Aborted at stop: a retry in its wait gives up at once (the position is not raised). */
  let halt = new AbortController();
  let lastFailure: string | undefined;
  /** Set when a batch was given up at stop: the position must not move past it in this process. */
  let held = false;
  let markReady!: () => void;
  const ready = new Promise<void>((r) => {
    markReady = r;
  });

  /** Runs `fn` until it succeeds or the node stops (then throws: the position was not raised). */
  const untilDone = async (fn: () => Promise<void>, what: string) => {
    await retry(fn, {
      backoff: { initialMs: deps.retryInitialMs ?? 100, maxMs: deps.retryMaxMs ?? 5000 },
      signal: halt.signal,
      onRetry: (err, attempt, delayMs) => {
        lastFailure = `${what} failed: ${errorMessage(err)}`;
        retries.inc();
        deps.logger.warn(
          { err: errorMessage(err), attempt: attempt + 1, delayMs },
          'Detection failed a batch; retrying it.',
        );
      },
    });
    lastFailure = undefined;
  };

  const catchUp = async () => {
    const from = position.value() ?? Date.now();
    let after: [number, string, string] | undefined;
    let total = 0;
    for (;;) {
      const rows = await deps.store.query<EventRow & { ingested_ms: string; content_hash: string }>(
        `SELECT *, toUnixTimestamp64Milli(ingested) AS ingested_ms FROM ${EVENTS_TABLE} FINAL
         WHERE ingested >= fromUnixTimestamp64Milli({from:Int64})
           ${after ? 'AND (ingested, id, content_hash) > (fromUnixTimestamp64Milli({afterMs:Int64}), {afterId:String}, {afterHash:String})' : ''}
         ORDER BY ingested, id, content_hash LIMIT {page:UInt32}`,
        {
          from,
          page: CATCH_UP_PAGE,
          ...(after ? { afterMs: after[0], afterId: after[1], afterHash: after[2] } : {}),
        },
      );
      if (rows.length === 0) break;
      const events = rows.map((r) => rowToNormalized(r));
      await untilDone(() => deps.handle(events), 'catch-up');
      total += events.length;
      caughtUp.inc(events.length);
      const last = rows[rows.length - 1];
      after = [Number(last.ingested_ms), last.id, last.content_hash];
      if (rows.length < CATCH_UP_PAGE) break;
    }
    if (total > 0) {
      deps.logger.info(
        { events: total, since: new Date(from).toISOString() },
        'Detection evaluated the events stored after its position.',
      );
    }
  };

  // Before the store (subscribed earlier, durable too) commits a batch, the position covers it.
  deps.bus.subscribe(
    'detect-position',
    async (events) => {
      if (position.value() === undefined) position.load();
      position.beforeCommit(events);
    },
    {
      durable: true,
      first: true,
    },
  );
  deps.bus.subscribe('detect', async (events) => {
    position.handedOver(events);
    await ready;
    if (stopping) held = true;
    try {
      await untilDone(() => deps.handle(events), 'evaluation');
    } catch (err) {
      held = true;
      throw err;
    }
    if (!held) position.evaluated(events);
  });

  return {
    name: 'detect-feed',
    async start() {
      stopping = false;
      halt = new AbortController();
      if (position.value() === undefined) position.load();
      // Batches the bus commits meanwhile wait for the catch-up (the bus holds intake behind them).
      await catchUp();
      markReady();
    },
    async stop() {
      stopping = true;
      halt.abort();
      markReady();
    },
    health(): ComponentHealth {
      const p = position.value();
      if (p !== undefined) positionAge.set(Math.max(0, (Date.now() - p) / 1000));
      return lastFailure ? { ok: true, detail: `degraded: ${lastFailure}; retrying` } : { ok: true };
    },
  };
}
