import { Worker } from 'node:worker_threads';
import type { Registry } from 'prom-client';
import type { ComponentHealth } from '../../lib/component.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import { settleBy } from '../../lib/deadline.ts';
import { errorMessage, VigilError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter } from '../../lib/metrics.ts';
import type { ParseConfig } from '../../parse/index.ts';
import type { PrepareContext, Prepared } from './prepare.ts';

/** What every intake thread is started with. */
export interface PrepareWorkerData {
  parse: ParseConfig;
  /** Build the store's rows too (the in-process bus hands these very events to the store). */
  buildRows: boolean;
}

/** One request for an intake thread. */
export interface PrepareJob {
  id: number;
  body: string;
  ctx: PrepareContext;
  maxEvents: number;
  maxEventBytes: number;
}

/** Asks a thread for the next part of an answer's events. */
export interface PrepareNext {
  id: number;
  next: true;
}

/** An intake thread's answer: the request refused for its size, its events, or the thread's failure. */
export interface PrepareAnswer {
  id: number;
  tooMany?: true;
  prepared?: Prepared;
  /** The RowBinary rows of `prepared.events`, and where each ends (see eventsToRowBinaryWithEnds). */
  rows?: Uint8Array;
  ends?: Uint32Array;
  error?: string;
  /**
   * Some of the events, in order: an answer comes as parts of its events, each sent when asked for
   * ({@link PrepareNext}), then the rest (whose `prepared.events` is empty), so the event loop turns between them.
   */
  part?: NormalizedEvent[];
}

/** What {@link PreparePool.prepare} answers. */
export type PrepareResult =
  | { tooMany: true }
  | { tooMany?: undefined; prepared: Prepared; rows?: Buffer; ends?: Uint32Array };

/** Threads that split and normalize HTTP ingest requests beside the event loop. */
export interface PreparePool {
  start(): void;
  /** Answers the requests in the threads until `deadline`, then stops the threads (the rest fail). */
  stop(deadline: number): Promise<void>;
  health(): ComponentHealth;
  /** Sorts a request's body into events (and rows) on the least busy thread. */
  prepare(job: Omit<PrepareJob, 'id'>): Promise<PrepareResult>;
}

interface Slot {
  worker: Worker;
  waiting: Map<
    number,
    { resolve: (a: PrepareAnswer) => void; reject: (err: unknown) => void; events: NormalizedEvent[] }
  >;
}

/**
 * `threads` worker threads, each normalizing whole requests in turn, so that the event loop only moves
 * request bodies and events while the engine writes and detection runs on the other core. A thread that
 * fails (an error it did not catch, an exit) fails the requests it held with 503 `intake_thread_failed`
 * (nothing of them was published: the client retries) and is replaced.
 */
export function createPreparePool(
  config: { threads: number } & PrepareWorkerData,
  deps: { metrics: Registry; logger: Logger },
): PreparePool {
  const failures = counter(
    deps.metrics,
    'vigil_intake_http_thread_failures_total',
    'HTTP intake threads that failed (their requests answered 503 intake_thread_failed) and were replaced.',
  );
  const slots: Slot[] = [];
  let running = false;
  let nextId = 0;
  let lastFailure: string | undefined;
  /** Requests in the threads, settled either way: what stop waits for. */
  const inflight = new Set<Promise<void>>();

  const failed = (slot: Slot, why: string) => {
    const err = new VigilError('intake_thread_failed', `an HTTP intake thread failed: ${why}; nothing was stored`, {
      status: 503,
      retryable: true,
    });
    for (const w of slot.waiting.values()) w.reject(err);
    slot.waiting.clear();
    const at = slots.indexOf(slot);
    if (at < 0) return;
    failures.inc();
    lastFailure = why;
    deps.logger.error({ err: why }, 'An HTTP intake thread failed; it is replaced.');
    void slot.worker.terminate();
    if (running) slots[at] = spawn();
    else slots.splice(at, 1);
  };

  const spawn = (): Slot => {
    const worker = new Worker(new URL('./prepare-boot.mjs', import.meta.url), {
      workerData: { parse: config.parse, buildRows: config.buildRows } satisfies PrepareWorkerData,
    });
    const slot: Slot = { worker, waiting: new Map() };
    worker.on('message', (a: PrepareAnswer) => {
      const w = slot.waiting.get(a.id);
      if (!w) return;
      if (a.part) {
        for (const e of a.part) w.events.push(e);
        // Asked for after a turn of the event loop, so that other work runs between the parts.
        setImmediate(() => worker.postMessage({ id: a.id, next: true } satisfies PrepareNext));
        return;
      }
      slot.waiting.delete(a.id);
      if (a.prepared) a.prepared.events = w.events;
      if (slot.waiting.size === 0) worker.unref();
      if (a.error !== undefined) {
        w.reject(new VigilError('intake_thread_failed', `an HTTP intake thread failed: ${a.error}`, { status: 500 }));
      } else w.resolve(a);
    });
    worker.on('error', (err) => failed(slot, errorMessage(err)));
    worker.on('exit', (code) => failed(slot, `it exited with code ${code}`));
    // An idle thread does not keep the process alive; one with requests does (see prepare).
    worker.unref();
    return slot;
  };

  return {
    start() {
      running = true;
      while (slots.length < config.threads) slots.push(spawn());
    },
    async stop(deadline) {
      running = false;
      await settleBy(Promise.all(inflight), deadline);
      const stopping = slots.splice(0);
      for (const s of stopping) {
        s.worker.removeAllListeners('exit');
        for (const w of s.waiting.values()) w.reject(stoppingError());
        s.waiting.clear();
      }
      await Promise.all(stopping.map((s) => s.worker.terminate()));
    },
    health(): ComponentHealth {
      if (!running) return { ok: false, detail: 'stopped' };
      return lastFailure ? { ok: true, detail: `last thread failure: ${lastFailure}` } : { ok: true };
    },
    prepare(job) {
      if (!running || slots.length === 0) return Promise.reject(stoppingError());
      let slot = slots[0];
      for (const s of slots) if (s.waiting.size < slot.waiting.size) slot = s;
      const id = nextId++;
      const answer = new Promise<PrepareAnswer>((resolve, reject) => {
        slot.waiting.set(id, { resolve, reject, events: [] });
        if (slot.waiting.size === 1) slot.worker.ref();
        slot.worker.postMessage({ id, ...job } satisfies PrepareJob);
      });
      // Only to know when it ends (stop waits for it); its outcome goes to the caller below.
      const settled = answer.then(
        () => undefined,
        () => undefined,
      );
      inflight.add(settled);
      void settled.then(() => inflight.delete(settled));
      return answer.then((a) => {
        if (a.tooMany) return { tooMany: true as const };
        const rows = a.rows ? Buffer.from(a.rows.buffer, a.rows.byteOffset, a.rows.byteLength) : undefined;
        return { prepared: a.prepared!, rows, ends: a.ends };
      });
    },
  };
}

function stoppingError(): VigilError {
  return new VigilError('intake_stopping', 'Vigil is shutting down; nothing was stored', {
    status: 503,
    retryable: true,
  });
}
