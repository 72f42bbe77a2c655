/**
 * Deadlines: a stop is given an epoch-ms deadline and passes it on. These helpers bound a wait by one,
 * and clear their timers, so that no stop is held by a forgotten timeout.
 */

/** Milliseconds left before `deadline` (epoch ms), never negative. */
export function remainingMs(deadline: number, now: number = Date.now()): number {
  return Math.max(0, deadline - now);
}

/**
 * Waits for `work` until `deadline`: resolves true when it settled in time, false when the deadline came
 * first (the work goes on unobserved). A rejection of `work` before the deadline is thrown; pass
 * `work.catch(...)` where a failure is reported elsewhere.
 */
export async function settleBy(work: Promise<unknown> | undefined, deadline: number): Promise<boolean> {
  if (work === undefined) return true;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    // Cleared as soon as the work settles, so it holds the process only while the work is pending.
    timer = setTimeout(() => resolve(false), remainingMs(deadline));
  });
  try {
    return await Promise.race([work.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves or rejects as `work` does, or rejects with `onTimeout()` when it takes longer than `ms`.
 */
export async function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
