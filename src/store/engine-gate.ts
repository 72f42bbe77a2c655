/**
 * Holds calls into the embedded engine in JavaScript, at most `limit` outstanding at once. chdb runs one
 * statement at a time per process, and each insert or plain query waiting its turn inside chdb holds one of
 * libuv's pool threads (4 by default; chdb queues parameterized queries itself), which file writes share:
 * with six one-second inserts waiting, a write and fdatasync took 2.9 s instead of milliseconds
 * (engine-gate-pool.test.ts), and the disk spool and the ingest key log fdatasync every acknowledged batch.
 * Two outstanding keeps the next call ready when the engine frees up.
 */
export function createEngineGate(limit: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active < limit) active++;
    // A finished call hands its place straight to the first waiter, so no newcomer slips in between.
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}
