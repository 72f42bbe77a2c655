/**
 * Longest stretch of synchronous work on the ingest path between two turns of the event loop. Searches,
 * health probes and lease renewals are answered on the same loop: measured during HTTP ingest of Mordor
 * events, with slices of 1,000-2,000 events (30-60 ms each) a search waited a slice at each of its steps
 * and took 4 to 7 times its idle p50; a few milliseconds keep that wait near the search's own time, for
 * one `performance.now()` per event and a turn every few hundred events.
 */
export const TURN_BUDGET_MS = 4;

/** Tells a long loop when to let the event loop turn (see {@link createTurnTaker}). */
export interface TurnTaker {
  /** True once the budget has passed since the last turn. */
  due(): boolean;
  /** Lets the event loop turn (I/O callbacks, timers), then starts a new budget. */
  take(): Promise<void>;
}

/** A turn taker whose budget starts now; `budgetMs` 0 turns at every check (tests). */
export function createTurnTaker(budgetMs: number = TURN_BUDGET_MS): TurnTaker {
  let since = performance.now();
  return {
    due: () => performance.now() - since >= budgetMs,
    async take() {
      await new Promise<void>((resolve) => setImmediate(resolve));
      since = performance.now();
    },
  };
}
