import type { Registry } from 'prom-client';
import { OverloadError } from '../lib/errors.ts';
import { counter, gauge, histogram } from '../lib/metrics.ts';
import { queryTimeoutError } from './engine-gate.ts';

/** Limits of {@link createSearchAdmission} (from the store config). */
export interface SearchAdmissionLimits {
  /** Searches of one user that run at once. */
  concurrency: number;
  /** Searches of one user that wait for a place; beyond it a search is refused (429). */
  queue: number;
  /** Longest a search waits for a place before it is refused (429). */
  queueTimeoutMs: number;
}

/** Admits searches per user: `concurrency` at once, `queue` more waiting in order, the rest refused. */
export interface SearchAdmission {
  /**
   * Resolves with the function that gives the place back once one of `user`'s places is free; rejects with
   * `too_many_searches` (429, Retry-After) when the user's queue is full or the wait passes the queue
   * timeout, and with `query_timeout` (503) when it passes `deadline` (epoch ms) first.
   */
  admit(user: string, deadline?: number): Promise<() => void>;
  /** Searches running and waiting, all users together. */
  stats(): { running: number; queued: number };
}

interface UserLine {
  running: number;
  waiting: { admit: () => void; timer: NodeJS.Timeout }[];
}

/**
 * Creates the per-user admission of searches. A user is who the request authenticated as (a user name or
 * the admin token), so one user's burst waits in its own line while other users' searches, and every
 * write, go on. Counted in `vigil_store_searches_total{outcome}` (admitted: given a place; queued: had to
 * wait first; refused: the queue was full; expired: waited past the deadline), with the wait in
 * `vigil_store_search_queue_wait_seconds` and the waiting searches in `vigil_store_searches_queued`.
 */
export function createSearchAdmission(limits: SearchAdmissionLimits, metrics: Registry): SearchAdmission {
  const outcomes = counter(
    metrics,
    'vigil_store_searches_total',
    'Searches by admission outcome: admitted, queued (waited first), refused (queue full), expired (waited past the deadline).',
    ['outcome'],
  );
  const waitSeconds = histogram(
    metrics,
    'vigil_store_search_queue_wait_seconds',
    'Time a search waited for a place among its user concurrent searches.',
    [],
    [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );
  const queuedGauge = gauge(metrics, 'vigil_store_searches_queued', 'Searches waiting for a place, all users.');
  const lines = new Map<string, UserLine>();
  let running = 0;
  let queued = 0;

  const refuse = (message: string, retryAfterSeconds: number) =>
    new OverloadError(message, retryAfterSeconds, 429, 'too_many_searches');

  function release(user: string, line: UserLine): void {
    running--;
    const w = line.waiting.shift();
    if (w) {
      clearTimeout(w.timer);
      queued--;
      queuedGauge.set(queued);
      running++;
      w.admit();
      return;
    }
    line.running--;
    if (line.running === 0) lines.delete(user);
  }

  function place(user: string, line: UserLine): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release(user, line);
    };
  }

  return {
    async admit(user, deadline) {
      let line = lines.get(user);
      if (!line) {
        line = { running: 0, waiting: [] };
        lines.set(user, line);
      }
      const l = line;
      if (l.running < limits.concurrency) {
        l.running++;
        running++;
        outcomes.inc({ outcome: 'admitted' });
        return place(user, l);
      }
      const retryAfter = Math.max(1, Math.ceil(limits.queueTimeoutMs / 1000));
      if (l.waiting.length >= limits.queue) {
        outcomes.inc({ outcome: 'refused' });
        throw refuse(
          `${user} has ${l.running} searches running and ${l.waiting.length} waiting (store.search_concurrency_per_user, store.search_queue_per_user): wait for one to end`,
          retryAfter,
        );
      }
      const untilDeadline = deadline === undefined ? Number.POSITIVE_INFINITY : deadline - Date.now();
      const byDeadline = untilDeadline < limits.queueTimeoutMs;
      const waitMs = Math.max(0, Math.min(limits.queueTimeoutMs, untilDeadline));
      const end = waitSeconds.startTimer();
      outcomes.inc({ outcome: 'queued' });
      queued++;
      queuedGauge.set(queued);
      await new Promise<void>((resolve, reject) => {
        const w = {
          // The place is handed over by release(), which has already counted it for this user.
          admit: () => {
            end();
            outcomes.inc({ outcome: 'admitted' });
            resolve();
          },
          timer: setTimeout(() => {
            l.waiting.splice(l.waiting.indexOf(w), 1);
            queued--;
            queuedGauge.set(queued);
            end();
            outcomes.inc({ outcome: 'expired' });
            // Past the search's own deadline it is a timeout like any other (503); past the queue's, a refusal.
            if (byDeadline) return reject(queryTimeoutError(waitMs));
            reject(
              refuse(
                `the search waited ${waitMs} ms behind ${user}'s ${l.running} running searches (store.search_queue_timeout_ms): wait for one to end`,
                retryAfter,
              ),
            );
          }, waitMs),
        };
        l.waiting.push(w);
      });
      return place(user, l);
    },
    stats: () => ({ running, queued }),
  };
}
