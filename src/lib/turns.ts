/**
 * Longest stretch of synchronous work on the ingest path between two turns of the event loop. Searches,
 * health probes and lease renewals are answered on the same loop: measured during HTTP ingest of Mordor
 * events, with slices of 1,000-2,000 events (30-60 ms each) a search waited a slice at each of its steps
 * and took 4 to 7 times its idle p50; a few milliseconds keep that wait near the search's own time, for
 * one `performance.now()` per event and a turn every few hundred events.
 */
export const TURN_BUDGET_MS = 4;

/** Loops waiting for their next slice, in the order they asked (so none starves). */
const waiting: (() => void)[] = [];
/**
 * Background loops waiting: each gets a slice only in a pass where no loop of `waiting` asks for one. For
 * work that no acknowledgement waits on (detection of committed events), so that the work a store commit
 * waits on (its rows, requests' normalization) is not slowed by it: evaluated with equal turns, detection
 * slowed the store's row building from 505 to 1,098 ms per 15,000 events while the engine sat idle.
 * It is not starved: after {@link BACKGROUND_AFTER_SLICES} foreground slices in a row while it waits, it
 * gets the next one. The loops ahead of it do not stop by themselves: requests refused while the bus waits
 * for detection have taken their turns all the same, and clients that retry kept a foreground loop waiting
 * at every pass (found in review: detection evaluated 1 batch in 3 s, intake refused nearly everything).
 */
const waitingBackground: (() => void)[] = [];
/** Foreground slices in a row after which a waiting background loop gets the next one. */
export const BACKGROUND_AFTER_SLICES = 4;
/** Foreground slices handed out in a row while a background loop waited. */
let passedOver = 0;
/** Whether a `setImmediate(nextSlice)` is pending. */
let scheduled = false;

/** Tells a long loop when to let the event loop turn (see {@link createTurnTaker}). */
export interface TurnTaker {
  /** True once the budget has passed since the last turn (or, before the first, while other loops wait). */
  due(): boolean;
  /** Waits for this loop's next turn (see {@link takeTurn}), then starts a new budget. */
  take(): Promise<void>;
}

/**
 * A turn taker whose budget starts now; `budgetMs` 0 turns at every check (tests). Until its first turn, it
 * is also due while other loops wait for theirs: a loop that starts in an I/O callback (a request's body
 * has come) goes behind them at its first look at the clock rather than adding its budget to the pass.
 * `background`: its slices come after every foreground loop's (see waitingBackground).
 */
export function createTurnTaker(budgetMs: number = TURN_BUDGET_MS, opts: { background?: boolean } = {}): TurnTaker {
  let since = performance.now();
  let queued = false;
  const background = opts.background === true;
  return {
    // A background loop also gives way at its budget's end whenever a foreground loop waits.
    due: () => ((background || !queued) && waiting.length > 0) || performance.now() - since >= budgetMs,
    async take() {
      queued = true;
      await takeTurn(background);
      since = performance.now();
    },
  };
}

/** Hands the next slice to the loop that has waited longest; one per pass of the event loop. */
function nextSlice(): void {
  let resume: (() => void) | undefined;
  if (waitingBackground.length > 0 && (waiting.length === 0 || passedOver >= BACKGROUND_AFTER_SLICES)) {
    resume = waitingBackground.shift();
    passedOver = 0;
  } else {
    resume = waiting.shift();
    if (waitingBackground.length > 0) passedOver++;
  }
  // Set before the loop resumes: an immediate scheduled from the check phase runs in the NEXT pass of
  // the event loop, after its poll phase has run the I/O (a search's request, the engine's answer) that
  // came meanwhile.
  if (waiting.length > 0 || waitingBackground.length > 0) setImmediate(nextSlice);
  else scheduled = false;
  resume?.();
}

/**
 * Lets the event loop turn, then resumes the caller when its slice comes: one slice of CPU work per pass
 * of the event loop in the whole process. With one `setImmediate` per loop, every loop that had yielded
 * resumed in the same check phase, so k busy loops (requests' normalization, a store INSERT's rows,
 * detection) made one pass of k budgets, and a search's I/O waited for all of them (src/lib/turns.test.ts:
 * behind 6 loops of 10 ms, a timer waited 60 ms, now 10). Loops take slices in turn, first come first served;
 * a `background` one only in a pass where no other loop waits, or after BACKGROUND_AFTER_SLICES others.
 */
export function takeTurn(background = false): Promise<void> {
  return new Promise<void>((resolve) => {
    (background ? waitingBackground : waiting).push(resolve);
    if (!scheduled) {
      scheduled = true;
      setImmediate(nextSlice);
    }
  });
}

/** Loops waiting for a slice right now (tests, metrics). */
export function turnsWaiting(): number {
  return waiting.length + waitingBackground.length;
}
