/**
 * The one backoff of Vigil: every loop that retries (a publish through a leader election, a consumer that
 * lost its stream, a database that cannot be reached) takes its waits from here, so that the schedule is
 * written, tested and tuned once.
 */

/** How the wait grows between attempts. */
export interface Backoff {
  /** Wait before the first retry (attempt 0), in ms. */
  initialMs: number;
  /** Longest wait, in ms. */
  maxMs: number;
  /** Growth per attempt; default 2. */
  factor?: number;
  /**
   * `none` (default): exactly the schedule. `equal`: a random wait in [half, all] of it, so that nodes that
   * failed together do not retry together, and never less than half the schedule.
   */
  jitter?: 'none' | 'equal';
}

/**
 * The wait before retry number `attempt` (0 for the first retry): `initialMs * factor^attempt`, at most
 * `maxMs`, with the backoff's jitter. `random` is for tests.
 */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number = Math.random): number {
  const factor = backoff.factor ?? 2;
  // Past the point where the wait reaches maxMs the power only grows toward Infinity: stop it there.
  const steps = Math.max(0, Math.min(Math.floor(attempt), 64));
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * factor ** steps);
  if (backoff.jitter === 'equal') return Math.round(ceiling / 2 + (random() * ceiling) / 2);
  return ceiling;
}

/**
 * Sleeps `ms`; resolves early (never rejects) when `signal` aborts. The timer holds the process open like any
 * awaited work: a background loop passes its stop signal, so that a stop never waits a backoff out.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted || ms <= 0) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done);
  });
}

/** How `retry` goes on. */
export interface RetryOptions {
  backoff: Backoff;
  /**
   * Epoch ms: no retry starts whose wait would end after it; the last error is thrown instead. A function is
   * asked before each wait (a stop may bring the deadline closer).
   */
  deadline?: number | (() => number);
  /** Stops the retries: the last error is thrown (the wait in progress ends at once). */
  signal?: AbortSignal;
  /** false: the error is thrown at once. Default: every error is retried. */
  retryable?: (err: unknown) => boolean;
  /** Told of each failure that will be retried (log it, count it): the attempt (0 first) and the wait. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `fn` until it resolves; each failure waits its backoff and tries again. Throws the last error when
 * it is not retryable, when the next wait would pass the deadline, or when the signal aborted.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (opts.signal?.aborted || (opts.retryable && !opts.retryable(err))) throw err;
      const delay = backoffDelay(attempt, opts.backoff);
      const deadline = typeof opts.deadline === 'function' ? opts.deadline() : opts.deadline;
      if (deadline !== undefined && Date.now() + delay > deadline) throw err;
      opts.onRetry?.(err, attempt, delay);
      await sleep(delay, opts.signal);
      if (opts.signal?.aborted) throw err;
    }
  }
}

/** Whether a failure of this attempt (0 first) is worth a log line: the first, then one in `every`. */
export function shouldLog(attempt: number, every = 20): boolean {
  return attempt === 0 || attempt % every === 0;
}
