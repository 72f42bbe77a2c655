/**
 * Which site the collector sends to: the first endpoint (in the configured order of preference) that is up.
 * A send that fails marks its endpoint down; a down endpoint comes back up when a probe of it succeeds (or a
 * send to it, when every endpoint was down). Pure state, with the clock passed in: the forwarder and its
 * prober drive it, the tests too.
 */
export interface EndpointSelector {
  /** The endpoint to send to: the first that is up; undefined while every endpoint is down. */
  current(): number | undefined;
  /**
   * When every endpoint is down: the one to try now (the earliest due, in order of preference), else when the
   * next is due. A send to it that succeeds marks it up.
   */
  nextAttempt(now: number): { index: number } | { at: number };
  /** A send or probe to `index` failed: it is down, and retried or probed after a growing wait. */
  failed(index: number, now: number): void;
  /** A send or probe to `index` succeeded: it is up. */
  succeeded(index: number): void;
  /** Down endpoints preferred over the current one (or all down ones), whose probe is due at `now`. */
  dueProbes(now: number): number[];
  /** Called when the probe of `index` started, so that it is not probed again before the interval. */
  probing(index: number, now: number): void;
  isUp(index: number): boolean;
}

interface State {
  up: boolean;
  failures: number;
  /** When it may be tried (sent to or probed) again, epoch ms. */
  retryAt: number;
}

/** Creates the selector over `count` endpoints, all up at first; `retryDelay(failures)` spaces the retries. */
export function createEndpointSelector(opts: {
  count: number;
  probeIntervalMs: number;
  retryDelay: (failures: number) => number;
}): EndpointSelector {
  const states: State[] = Array.from({ length: opts.count }, () => ({ up: true, failures: 0, retryAt: 0 }));
  const current = () => {
    const i = states.findIndex((s) => s.up);
    return i < 0 ? undefined : i;
  };
  return {
    current,
    nextAttempt(now) {
      const due = states.findIndex((s) => s.retryAt <= now);
      if (due >= 0) return { index: due };
      return { at: Math.min(...states.map((s) => s.retryAt)) };
    },
    failed(index, now) {
      const s = states[index];
      s.up = false;
      s.failures++;
      s.retryAt = now + Math.min(opts.probeIntervalMs, opts.retryDelay(s.failures - 1));
    },
    succeeded(index) {
      states[index] = { up: true, failures: 0, retryAt: 0 };
    },
    dueProbes(now) {
      const limit = current() ?? states.length;
      const out: number[] = [];
      for (let i = 0; i < limit; i++) if (!states[i].up && states[i].retryAt <= now) out.push(i);
      return out;
    },
    probing(index, now) {
      states[index].retryAt = now + opts.probeIntervalMs;
    },
    isUp: (index) => states[index].up,
  };
}
