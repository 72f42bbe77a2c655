/**
 * Moves this process's wall clock ahead by TEST_CLOCK_SHIFT (`31d`, `365d`, `12h`), for the
 * clock-shift run of the time-sensitive suites (scripts/test-clock.sh). Loaded with `--import` through
 * NODE_OPTIONS, so every Vigil node a test starts inherits the same shift. Only the wall clock moves
 * (Date.now and `new Date()`); timers and performance.now keep real time, so timeouts keep their meaning.
 * Every time Vigil uses comes from JavaScript (no SQL reads the engine's or PostgreSQL's clock), so this
 * is the clock a test that passes only this month depends on. libfaketime was tried first: under it the
 * embedded engine's threads spin on futex waits (a 20-query loop went from 25 ms to 12 s).
 */
const SHIFT = /^(\d+)([dhm])$/.exec(process.env.TEST_CLOCK_SHIFT ?? '');
if (SHIFT) {
  const unitMs = { d: 86_400_000, h: 3_600_000, m: 60_000 }[SHIFT[2]];
  const shiftMs = Number(SHIFT[1]) * unitMs;
  const RealDate = Date;
  // A function, not a subclass: `new Date()` must make ordinary Dates (same prototype as those made inside
  // Node or copied from a worker thread), or deepStrictEqual and instanceof tell them apart.
  function ShiftedDate(...args) {
    if (!new.target) return new RealDate(RealDate.now() + shiftMs).toString();
    return args.length === 0 ? new RealDate(RealDate.now() + shiftMs) : new RealDate(...args);
  }
  ShiftedDate.prototype = RealDate.prototype;
  ShiftedDate.now = () => RealDate.now() + shiftMs;
  ShiftedDate.parse = RealDate.parse;
  ShiftedDate.UTC = RealDate.UTC;
  globalThis.Date = ShiftedDate;
} else if (process.env.TEST_CLOCK_SHIFT) {
  throw new Error(
    `TEST_CLOCK_SHIFT: expected a whole number of d, h or m (as 31d), got ${process.env.TEST_CLOCK_SHIFT}`,
  );
}
