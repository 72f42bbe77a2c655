import { VigilError } from '../lib/errors.ts';

/**
 * What a call into the engine is for. `write`: inserts and the store's own statements (alerts, bookkeeping),
 * which intake and detection wait on. `search`: a user's search, which waits behind every queued write of
 * the same gate. The store gives searches a session and a gate of their own (see index.ts), so there a
 * search waits only behind other searches.
 */
export type EngineLane = 'write' | 'search';

/** Options of one engine call. */
export interface EngineCallOptions {
  /** The call's lane; `write` by default. */
  lane?: EngineLane;
  /** Epoch ms: a call still waiting for its turn then is refused with `query_timeout` and never runs. */
  deadline?: number;
  /**
   * Starts only when no other call of the gate is out, and none starts while it runs. For a parameterized
   * statement: chdb runs those one at a time in the whole process, from the moment the call enters chdb, so
   * one let out behind an INSERT on the same session would hold every other session's parameterized
   * statements (the searches) for the whole INSERT.
   */
  exclusive?: boolean;
}

/** Runs `fn` when the engine has a place for it (see {@link createEngineGate}). */
export type EngineGate = <T>(fn: () => Promise<T>, opts?: EngineCallOptions) => Promise<T>;

/** The error of a search that did not get its turn at the engine before its deadline. */
export function queryTimeoutError(timeoutMs: number, cause?: unknown): VigilError {
  return new VigilError(
    'query_timeout',
    `the search did not finish within ${timeoutMs} ms (store.query_timeout_ms, time waiting for the engine included)`,
    {
      status: 503,
      retryable: true,
      cause,
      details: {
        timeout_ms: timeoutMs,
        hint: 'narrow the time range or add filters, or retry when fewer searches run',
      },
    },
  );
}

interface Waiter {
  lane: EngineLane;
  exclusive: boolean;
  start: () => void;
  timer?: NodeJS.Timeout;
}

/**
 * Holds calls into one session of the embedded engine in JavaScript, at most `limit` outstanding at once.
 * chdb runs one statement at a time per session (connection), and each insert or plain query waiting its
 * turn inside chdb holds one of libuv's pool threads (4 by default; chdb queues parameterized queries
 * itself), which file writes share:
 * with six one-second inserts waiting, a write and fdatasync took 2.9 s instead of milliseconds
 * (engine-gate-pool.test.ts), and the disk spool and the ingest key log fdatasync every acknowledged batch.
 * Two outstanding keeps the next call ready when the engine frees up.
 *
 * Writes go first: a freed place goes to the oldest waiting write, and only then to the oldest search; and
 * searches hold at most `searchPlaces` places (`limit - 1` by default), so one place is always left for a
 * write. The engine cannot stop a statement to let an insert in, so an insert waits at most for the one
 * search the engine is running (itself bounded by max_execution_time), never for the searches queued
 * behind it: with 200 heavy searches queued in one line with the inserts, an ingest answer waited up to
 * 59.6 s. A search waiting past its `deadline` leaves the line with `query_timeout`.
 */
export function createEngineGate(limit: number, opts: { searchPlaces?: number } = {}): EngineGate {
  const searchPlaces = Math.max(1, Math.min(limit, opts.searchPlaces ?? limit - 1));
  let active = 0;
  let activeSearches = 0;
  /** An exclusive call is out: nothing else starts until it ends. */
  let exclusiveOut = false;
  const writes: Waiter[] = [];
  const searches: Waiter[] = [];

  /** Hands a freed place to the next waiter that may take it, if any. */
  function next(): void {
    while (active < limit && !exclusiveOut) {
      const queue = writes.length > 0 ? writes : activeSearches < searchPlaces ? searches : undefined;
      const w = queue?.[0];
      // An exclusive call waits for the gate to empty, and the calls behind it wait with it (arrival order).
      if (!queue || !w || (w.exclusive && active > 0)) return;
      queue.shift();
      if (w.timer) clearTimeout(w.timer);
      active++;
      if (w.lane === 'search') activeSearches++;
      if (w.exclusive) exclusiveOut = true;
      w.start();
    }
  }

  return async <T>(fn: () => Promise<T>, call: EngineCallOptions = {}): Promise<T> => {
    const lane = call.lane ?? 'write';
    const exclusive = call.exclusive === true;
    const queue = lane === 'search' ? searches : writes;
    // A newcomer never slips in ahead of a waiter of its lane (or, for a search, of a write).
    const mayStart =
      active < limit &&
      !exclusiveOut &&
      (!exclusive || active === 0) &&
      queue.length === 0 &&
      (lane === 'write' || (writes.length === 0 && activeSearches < searchPlaces));
    if (mayStart) {
      active++;
      if (lane === 'search') activeSearches++;
      if (exclusive) exclusiveOut = true;
    } else {
      await new Promise<void>((resolve, reject) => {
        const w: Waiter = { lane, exclusive, start: resolve };
        if (call.deadline !== undefined) {
          const wait = call.deadline - Date.now();
          w.timer = setTimeout(
            () => {
              const i = queue.indexOf(w);
              if (i >= 0) queue.splice(i, 1);
              // An exclusive head leaving lets the calls behind it start now, not at the next call's end.
              next();
              reject(queryTimeoutError(Math.max(0, wait)));
            },
            Math.max(0, wait),
          );
        }
        queue.push(w);
      });
    }
    try {
      return await fn();
    } finally {
      active--;
      if (lane === 'search') activeSearches--;
      if (exclusive) exclusiveOut = false;
      next();
    }
  };
}
