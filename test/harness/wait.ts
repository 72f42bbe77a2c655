/**
 * Bounded waits of the tests and the harness: poll until something holds, fail with what was awaited and
 * the last error seen. One copy, so that every fault test times out the same way.
 */

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Polls `fn` every `everyMs` until it returns something other than undefined, and resolves to it. A throw
 * counts as "not yet" (a node restarting refuses connections); the last one is in the timeout's message.
 * Fails with `timed out after <ms> ms waiting for <what>` once `timeoutMs` has passed.
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  fn: () => Promise<T | undefined>,
  everyMs = 500,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    }
    await sleep(everyMs);
  }
}

/** `waitFor`, with how long the wait took (a figure the fault tests report). */
export async function waitForTimed<T>(
  what: string,
  timeoutMs: number,
  fn: () => Promise<T | undefined>,
  everyMs = 500,
): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  const value = await waitFor(what, timeoutMs, fn, everyMs);
  return { value, ms: Date.now() - start };
}

/** `waitFor` of a condition: resolves once `check` answers true. */
export async function waitUntil(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean> | boolean,
  everyMs = 500,
): Promise<void> {
  await waitFor(what, timeoutMs, async () => ((await check()) ? true : undefined), everyMs);
}
