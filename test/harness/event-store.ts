/**
 * The event store of a test, in a data directory of its own. chdb binds one data directory per process, so
 * a test file opens every store (and every raw engine session) on the same `dataDir`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
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

/**
 * One started event store for a whole test file, in a temporary folder removed after it: `before` starts it,
 * `after` stops it. Returns the getter the tests read it through.
 */
export function fileStore(prefix: string): () => EventStore {
  const dataDir = mkdtempSync(join(tmpdir(), prefix));
  let store: EventStore | undefined;
  before(async () => {
    store = openTestStore(dataDir);
    await store.start();
  });
  after(async () => {
    await store?.stop(Date.now() + 10_000);
    rmSync(dataDir, { recursive: true, force: true });
  });
  return () => {
    if (!store) throw new Error('the file store is used before its before() hook ran');
    return store;
  };
}
