import type { Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../../lib/component.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge } from '../../lib/metrics.ts';
import type { AlertPosition, PositionStore } from '../../db/index.ts';
import type { Alert, AlertOutbox } from './index.ts';
import { settleBy } from '../../lib/deadline.ts';
import { backoffDelay } from '../../lib/retry.ts';

/**
 * How often a consumer reads the log when no alert was announced (see pollIntervalMs): a safety net only,
 * each read a FINAL query of the current month.
 */
export const DEFAULT_POLL_INTERVAL_MS = 30_000;

/** Options of one consumer of the local alert log. */
export interface AlertConsumerOptions {
  /** incidents, notify: names its position, metrics and log lines. */
  name: string;
  outbox: AlertOutbox & { onAlert(listener: (alerts: Alert[]) => void): void };
  /** Where the consumer stands, kept by the consumer's own database. */
  positions: PositionStore;
  /** Commits the alerts (idempotent per alert id); resolving means committed. */
  handle(alerts: Alert[]): Promise<unknown>;
  /** Alerts handed over at once. */
  batchMaxAlerts: number;
  /** First wait after a failure (doubles up to retryMaxMs). */
  retryInitialMs: number;
  retryMaxMs: number;
  /**
   * How often the log is read when no new alert was announced (DEFAULT_POLL_INTERVAL_MS): a safety net, since
   * the outbox's onAlert wakes the consumer as soon as an alert is stored on this node.
   */
  pollIntervalMs?: number;
  metrics: Registry;
  logger: Logger;
}

/**
 * A consumer of the local alert log with a committed position (the store's materializer is the model): it
 * reads the alerts stored after its position, hands them to `handle`, and moves the position only after
 * `handle` committed them. A failure or an overload is retried with backoff for as long as it lasts, never
 * given up: meanwhile health says degraded and vigil_alerts_consumer_backlog_alerts grows. A crash between
 * the commit and the position hands the same alerts over again, which `handle` ignores by alert id.
 */
export function createAlertConsumer(opts: AlertConsumerOptions): Component {
  const { name, outbox, positions, logger } = opts;
  const backlog = gauge(
    opts.metrics,
    'vigil_alerts_consumer_backlog_alerts',
    'Alerts stored and not yet committed by a consumer of the alert log (incidents, notify).',
    ['consumer'],
  );
  const retries = counter(
    opts.metrics,
    'vigil_alerts_consumer_retries_total',
    'Alert batches a consumer of the alert log retried after a failure or an overload.',
    ['consumer'],
  );
  const handled = counter(
    opts.metrics,
    'vigil_alerts_consumer_alerts_total',
    'Alerts committed by a consumer of the alert log.',
    ['consumer'],
  );
  let running = false;
  let loop: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  let startHead: AlertPosition | undefined;
  let failingSince: number | undefined;
  let lastFailure: string | undefined;
  let pendingCount = 0;
  let announced = false;
  const pollMs = opts.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  outbox.onAlert(() => {
    announced = true;
    wake?.();
  });

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    }).finally(() => {
      wake = undefined;
    });

  /** Runs `fn` until it succeeds; undefined when the consumer stops first. */
  const untilDone = async <T>(fn: () => Promise<T>, what: string): Promise<{ value: T } | undefined> => {
    for (let attempt = 1; running; attempt++) {
      try {
        const value = await fn();
        failingSince = undefined;
        lastFailure = undefined;
        return { value };
      } catch (err) {
        if (!running) return undefined;
        const delay = backoffDelay(attempt - 1, { initialMs: opts.retryInitialMs, maxMs: opts.retryMaxMs });
        failingSince ??= Date.now();
        lastFailure = `${what}: ${errorMessage(err)}`;
        retries.inc({ consumer: name });
        logger.warn(
          { consumer: name, err: errorMessage(err), attempt, delayMs: delay },
          'An alert consumer failed; it retries the same alerts.',
        );
        await sleep(delay);
      }
    }
    return undefined;
  };

  const run = async () => {
    // With no alert stored yet, the database (PGlite compiles for seconds) is opened with the first alert.
    while (running && !startHead && !announced) await sleep(pollMs);
    const loaded = await untilDone(() => positions.load(), 'loading the position');
    if (!loaded) return;
    // No position yet: from the first stored alert. Alerts a Vigil before positions handed over already are
    // duplicates by id (no new incident link, no second delivery); those it lost are handed over now.
    let position = loaded.value;
    while (running) {
      // An alert announced from here on is read again at once: it may have missed this read.
      announced = false;
      const read = await untilDone(() => outbox.readAfter(position, opts.batchMaxAlerts), 'reading alerts');
      if (!read) return;
      const batch = read.value;
      if (batch.length === 0) {
        pendingCount = 0;
        backlog.set({ consumer: name }, 0);
        if (!announced) await sleep(pollMs);
        continue;
      }
      if (!(await untilDone(() => opts.handle(batch.map((b) => b.alert)), 'committing alerts'))) return;
      handled.inc({ consumer: name }, batch.length);
      const next = batch[batch.length - 1].position;
      if (!(await untilDone(() => positions.save(next), 'saving the position'))) return;
      position = next;
      // A short batch read the log to its end: the backlog is 0 without counting it again.
      const count =
        batch.length < opts.batchMaxAlerts
          ? 0
          : await outbox.countAfter(position).catch((err: unknown) => {
              logger.debug({ consumer: name, err: errorMessage(err) }, 'Counting the alert backlog failed.');
              return undefined;
            });
      if (count !== undefined) {
        pendingCount = count;
        backlog.set({ consumer: name }, count);
      }
    }
  };

  return {
    name: `${name}-alerts`,
    async start() {
      startHead = await outbox.head();
      running = true;
      loop = run().catch((err: unknown) => {
        lastFailure = errorMessage(err);
        logger.error({ consumer: name, err: lastFailure }, 'An alert consumer stopped.');
      });
    },
    async stop(deadline) {
      running = false;
      wake?.();
      await settleBy(loop, deadline);
    },
    health(): ComponentHealth {
      if (!running) return { ok: false, detail: 'stopped' };
      if (failingSince === undefined) return { ok: true };
      const seconds = Math.round((Date.now() - failingSince) / 1000);
      return {
        ok: true,
        detail: `degraded: ${lastFailure}; retrying for ${seconds} s, ${pendingCount} alerts or more waiting`,
      };
    },
  };
}
