/**
 * The spool forwarder: while the cluster cannot take a publish, batches are fsynced in the local spool
 * (`src/bus/spool/`); this sends them to the event log one at a time, in order, each with its original
 * `Nats-Msg-Id`, and hands publishing back to the direct path once the spool is empty. While the spool holds
 * anything, new batches are appended behind it, so the log keeps the order of acceptance.
 */
import type { Counter } from 'prom-client';
import { errorMessage } from '../../lib/errors.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import type { Logger } from '../../lib/logger.ts';
import { backoffDelay, sleep } from '../../lib/retry.ts';
import type { Spool } from '../spool/index.ts';
import { type EncodedBatch, messageOf } from './codec.ts';
import type { JetStreamConnection } from './connection.ts';
import type { JetStreamLog } from './log.ts';

/** Where the publish path goes: `direct` to JetStream, `spool` to the local spool until it is drained. */
export type PublishMode = 'direct' | 'spool';

/** The forwarder and the publish mode it owns. */
export interface SpoolForwarder {
  mode(): PublishMode;
  /** Appends batches behind whatever the spool holds (fsynced when it resolves); publishing goes via the spool. */
  append(batches: EncodedBatch[]): Promise<void>;
  /** Runs until the connection shuts down. */
  run(): Promise<void>;
}

/** Creates the forwarder over an opened spool; `start` it with `run()` once the spool is open. */
export function createSpoolForwarder(deps: {
  spool: Spool;
  log: JetStreamLog<NormalizedEvent[]>;
  conn: JetStreamConnection;
  publishTimeoutMs: number;
  logger: Logger;
  /** Why forwarding fails, for health details. */
  onError(message: string): void;
  counters: { spooled: Counter; forwarded: Counter; committed: Counter; retries: Counter };
}): SpoolForwarder {
  const { spool, log, conn, logger } = deps;
  let mode: PublishMode = 'direct';
  const ready = () => log.ready();

  return {
    mode: () => mode,

    async append(batches) {
      mode = 'spool';
      await spool.append(batches);
      deps.counters.spooled.inc(batches.length);
    },

    async run() {
      if (!spool.isEmpty()) mode = 'spool';
      let attempt = 0;
      while (!conn.stopping()) {
        if (spool.isEmpty()) {
          if (mode === 'spool') {
            mode = 'direct';
            logger.info('The local spool is drained; publishing to JetStream directly again.');
          }
          await spool.appended(conn.signal);
          continue;
        }
        if (!ready()) {
          await conn.wait(1000, ready);
          continue;
        }
        const entry = await spool.peek();
        if (!entry) {
          await spool.appended(conn.signal);
          continue;
        }
        try {
          await log.publishOnce(messageOf(entry), deps.publishTimeoutMs);
          await spool.commit();
          deps.counters.forwarded.inc();
          deps.counters.committed.inc();
          if (attempt > 0) logger.info({ attempts: attempt + 1 }, 'Forwarding the local spool to JetStream again.');
          attempt = 0;
        } catch (err) {
          attempt++;
          deps.counters.retries.inc();
          deps.onError(`forwarding the spool failed: ${errorMessage(err)}`);
          if (attempt === 1 || attempt % 50 === 0) {
            logger.warn(
              { err: errorMessage(err), attempt, spooled: spool.stats().batches },
              'Forwarding the local spool failed; retrying.',
            );
          }
          // A stream removed by an operator is made again rather than blocking the spool forever.
          if (attempt % 25 === 0) {
            // A failure here is retried with the next round of publishing (and counted in its retries).
            await log
              .ensure(true)
              .catch((e: unknown) =>
                logger.warn({ err: errorMessage(e), attempt }, 'Making the JetStream stream again failed; retrying.'),
              );
          }
          await sleep(backoffDelay(attempt, { initialMs: 50, maxMs: 2000 }), conn.signal);
        }
      }
    },
  };
}
