/**
 * The event store of a test, in a data directory of its own. chdb binds one data directory per process, so
 * a test file opens every store (and every raw engine session) on the same `dataDir`.
 */
import { join } from 'node:path';
import { Session } from 'chdb';
import { Registry } from 'prom-client';
import { silentLogger } from '../../src/lib/logger.ts';
import { createEventStore, type EventStore, storeConfigSchema } from '../../src/store/index.ts';

/** An event store on `dataDir` (not started), without fsync, with its own metrics. */
export function openTestStore(dataDir: string): EventStore {
  return createEventStore(storeConfigSchema.parse({ fsync: false }), {
    dataDir,
    metrics: new Registry(),
    logger: silentLogger,
  });
}

/** Runs `fn` on a raw engine session over the store's files (to plant tables of older layouts), then closes it. */
export async function withEngineSession(dataDir: string, fn: (s: Session) => Promise<void>): Promise<void> {
  const s = new Session(join(dataDir, 'events'));
  try {
    await fn(s);
  } finally {
    s.close();
  }
}
