import { errorMessage, OverloadError, VigilError } from '../../lib/errors.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import type { Logger } from '../../lib/logger.ts';
import type { IntakeMetrics } from '../metrics.ts';
import { settleBy } from '../../lib/deadline.ts';
import { backoffDelay, sleep } from '../../lib/retry.ts';

/** What the batch pipeline needs; `onRoom` is called when paused readers may read again. */
export interface BatchPipelineOptions {
  batchMaxEvents: number;
  batchMaxWaitMs: number;
  maxPendingEvents: number;
  publish(events: NormalizedEvent[]): Promise<void>;
  metrics: IntakeMetrics;
  logger: Logger;
  onRoom(): void;
}

/**
 * What became of an event: committed; dropped for good (a publish refused as not retryable); abandoned at
 * the stop deadline, uncommitted.
 */
/**
 * What became of an event: committed; dropped (the pipeline gave it up); abandoned (the stop deadline passed
 * first: unanswered, the client sends it again); reserved (refused before the pipeline: it claims Vigil's own
 * logsource product, src/intake/reserved.ts).
 */
export type Outcome = 'committed' | 'dropped' | 'abandoned' | 'reserved';

interface Entry {
  event: NormalizedEvent;
  source: string;
  at: number;
  /** Told once what became of the event (RELP answers its sender from it). */
  settled?: (outcome: Outcome) => void;
}

const BACKOFF_FIRST_MS = 20;
const BACKOFF_MAX_MS = 2000;

/**
 * The events an intake has read and not yet seen committed: batched by size or age, published one batch at
 * a time (so events are committed in the order they were read), a failed batch retried with backoff until
 * it commits. While a publish is failing, or `maxPendingEvents` are pending, `hasRoom()` is false and
 * stream readers pause. Only a batch refused with a non-retryable VigilError is dropped.
 */
export class BatchPipeline {
  readonly #opts: BatchPipelineOptions;
  #queue: Entry[] = [];
  #inflight: Entry[] | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failing = false;
  #flushing = false;
  #abandoned = false;
  readonly #abort = new AbortController();
  #idleWaiters: (() => void)[] = [];

  constructor(opts: BatchPipelineOptions) {
    this.#opts = opts;
  }

  /** Events read and not yet committed (queued and in the batch being published). */
  get pending(): number {
    return this.#queue.length + (this.#inflight?.length ?? 0);
  }

  /** Whether the last publish failed and is being retried. */
  get failing(): boolean {
    return this.#failing;
  }

  /** Whether a stream reader may read more: publishing works and the pending cap is not reached. */
  hasRoom(): boolean {
    return !this.#failing && this.pending < this.#opts.maxPendingEvents;
  }

  /** Whether the pending cap is reached (readers that cannot wait, UDP, drop instead). */
  isFull(): boolean {
    return this.pending >= this.#opts.maxPendingEvents;
  }

  /**
   * Adds an event read from `source`; it is published with the next batch. `settled` is called once, after
   * the event's batch committed or was given up.
   */
  enqueue(event: NormalizedEvent, source: string, settled?: (outcome: Outcome) => void): void {
    if (this.#abandoned) {
      this.#opts.metrics.rejected.inc({ source, reason: 'publish_error' });
      settled?.('abandoned');
      return;
    }
    this.#queue.push(settled ? { event, source, at: Date.now(), settled } : { event, source, at: Date.now() });
    this.#opts.metrics.pending.inc({ source });
    if (this.#timer === undefined || this.#queue.length >= this.#opts.batchMaxEvents) this.#schedule();
  }

  /**
   * Publishes everything pending without waiting for batches to fill, retrying until `deadline` (epoch ms).
   * Events still uncommitted then are given up, counted as `publish_error`. Returns how many were given up.
   */
  async flush(deadline: number): Promise<number> {
    this.#flushing = true;
    this.#schedule();
    if (this.pending === 0) return 0;
    const idle = new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    return (await settleBy(idle, deadline)) ? 0 : this.#abandon();
  }

  #schedule(): void {
    if (this.#inflight !== undefined || this.#queue.length === 0 || this.#abandoned) return;
    const full = this.#queue.length >= this.#opts.batchMaxEvents;
    const wait = full || this.#flushing ? 0 : this.#opts.batchMaxWaitMs - (Date.now() - this.#queue[0].at);
    if (wait > 0) {
      this.#timer ??= setTimeout(() => {
        this.#timer = undefined;
        this.#schedule();
      }, wait);
      return;
    }
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#queue.splice(0, this.#opts.batchMaxEvents);
    this.#inflight = batch;
    void this.#publish(batch).then((outcome) => this.#settle(batch, outcome));
  }

  async #publish(batch: Entry[]): Promise<Outcome> {
    const events = batch.map((entry) => entry.event);
    const log = this.#opts.logger;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#opts.publish(events);
        if (this.#failing) log.info({ attempts: attempt }, 'Publishing works again; resuming the syslog intake.');
        this.#failing = false;
        return 'committed';
      } catch (err) {
        if (this.#abort.signal.aborted) return 'abandoned';
        if (err instanceof VigilError && !err.retryable) {
          log.error(
            { err, events: events.length, code: err.code },
            'Publishing a syslog batch failed for good; its events are dropped.',
          );
          this.#failing = false;
          return 'dropped';
        }
        const fields = { events: events.length, attempt, error: errorMessage(err) };
        if (!this.#failing) {
          this.#failing = true;
          log.warn(fields, 'Publishing a syslog batch failed; pausing TCP intake and retrying.');
        } else if (err instanceof OverloadError) {
          log.debug(fields, 'The pipeline is still full; retrying the syslog batch.');
        } else {
          log.warn(fields, 'Publishing a syslog batch failed again; retrying.');
        }
        await sleep(
          backoffDelay(attempt - 1, { initialMs: BACKOFF_FIRST_MS, maxMs: BACKOFF_MAX_MS, jitter: 'equal' }),
          this.#abort.signal,
        );
        if (this.#abort.signal.aborted) return 'abandoned';
      }
    }
  }

  #settle(batch: Entry[], outcome: Outcome): void {
    // An abandoned batch was counted by #abandon; one that commits after the deadline is not counted twice.
    if (outcome === 'abandoned' || this.#abandoned) return;
    this.#inflight = undefined;
    const { metrics } = this.#opts;
    for (const [source, count] of countBySource(batch)) {
      metrics.pending.dec({ source }, count);
      if (outcome === 'committed') metrics.accepted.inc({ source }, count);
      else metrics.rejected.inc({ source, reason: 'publish_error' }, count);
    }
    for (const entry of batch) entry.settled?.(outcome);
    if (this.pending === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const wake of waiters) wake();
    }
    this.#schedule();
    if (this.hasRoom()) this.#opts.onRoom();
  }

  #abandon(): number {
    this.#abandoned = true;
    this.#abort.abort();
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const lost = [...(this.#inflight ?? []), ...this.#queue];
    this.#inflight = undefined;
    this.#queue = [];
    const { metrics } = this.#opts;
    for (const [source, count] of countBySource(lost)) {
      metrics.pending.dec({ source }, count);
      metrics.rejected.inc({ source, reason: 'publish_error' }, count);
    }
    for (const entry of lost) entry.settled?.('abandoned');
    if (lost.length > 0) {
      this.#opts.logger.error(
        { events: lost.length },
        'The stop deadline passed before every syslog event was committed; the rest are dropped.',
      );
    }
    return lost.length;
  }
}

function countBySource(entries: Entry[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const { source } of entries) counts.set(source, (counts.get(source) ?? 0) + 1);
  return counts;
}
