import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { PGlite } from '@electric-sql/pglite';
import { makePrivate } from '../lib/data-dir.ts';
import { type Db, DbError, type Queryable, wrapDbError } from './types.ts';

interface Reply {
  id: number;
  ok: boolean;
  rows?: unknown[];
  error?: { message: string; code?: string };
}

/**
 * Opens PGlite (PostgreSQL compiled to WebAssembly) with its data in `dataDir`, or in memory when `dataDir`
 * is undefined, in a worker thread of this process (pglite-worker.mjs). PGlite's work is synchronous
 * WebAssembly: in the main thread, creating the data folder stopped a cluster node's event loop for 11 to
 * 14.6 s (its HTTP answers and its lease renewals with it). One process only: PGlite has a single connection
 * and no locking between processes, so transactions run one at a time.
 */
export async function openPglite(dataDir: string | undefined, opts: { workerUrl?: URL } = {}): Promise<Db> {
  const workerUrl = opts.workerUrl ?? new URL('./pglite-worker.mjs', import.meta.url);
  if (dataDir && !existsSync(join(dataDir, 'PG_VERSION'))) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    await initInThread(dataDir, workerUrl);
  }
  const worker = new Worker(workerUrl);
  const pending = new Map<number, { resolve: (rows: unknown[]) => void; reject: (err: unknown) => void }>();
  let nextId = 1;
  let nextTx = 1;
  let failure: DbError | undefined;
  let closed = false;
  let opened = false;
  // The thread keeps the process alive only while a request waits on it, so a forgotten close never
  // holds a stopping process open.
  worker.unref();
  const fail = (err: DbError) => {
    failure ??= err;
    for (const p of pending.values()) p.reject(failure);
    pending.clear();
  };
  worker.on('message', (reply: Reply) => {
    const p = pending.get(reply.id);
    if (!p) return;
    pending.delete(reply.id);
    if (pending.size === 0) worker.unref();
    if (reply.ok) p.resolve(reply.rows ?? []);
    else p.reject(Object.assign(new Error(reply.error?.message), { code: reply.error?.code }));
  });
  // Retryable once open: the database component opens a new thread for the next attempt (see `lost`). A
  // thread that dies before the open answered (its script missing or broken) would die again. A statement
  // whose thread died may have been committed all the same: a retry must be idempotent, as every one is.
  worker.on('error', (err) =>
    fail(new DbError(`the PGlite thread failed: ${err.message}`, { cause: err, retryable: opened })),
  );
  worker.on('exit', (code) =>
    fail(new DbError(`the PGlite thread stopped (exit code ${code})`, { retryable: opened })),
  );

  const call = (sql: string, message: Record<string, unknown>): Promise<unknown[]> => {
    if (failure) return Promise.reject(failure);
    const id = nextId++;
    if (pending.size === 0) worker.ref();
    return new Promise<unknown[]>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      try {
        worker.postMessage({ ...message, id });
      } catch (err) {
        // A parameter that cannot be copied to the thread (a function, a symbol).
        pending.delete(id);
        if (pending.size === 0) worker.unref();
        reject(err);
      }
    }).catch((err: unknown) => {
      throw wrapDbError(err, sql);
    });
  };

  try {
    if (dataDir) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    await call(`OPEN PGlite ${dataDir ?? 'memory'}`, { op: 'open', dataDir });
    opened = true;
    // PGlite writes its files 0666 whatever the umask (see makePrivate): they hold password, session and
    // API key hashes. Files it creates later go through the umask.
    if (dataDir) makePrivate(dataDir);
  } catch (err) {
    await worker.terminate();
    throw err;
  }
  const run = <R>(sql: string, params: readonly unknown[] | undefined, tx?: number) =>
    call(sql, { op: 'query', sql, params, tx }) as Promise<R[]>;
  return {
    kind: 'pglite',
    query: (sql, params) => run(sql, params),
    async transaction(fn) {
      const tx = nextTx++;
      await call('BEGIN', { op: 'begin', tx });
      let result: Awaited<ReturnType<typeof fn>>;
      try {
        result = await fn({ query: (sql, params) => run(sql, params, tx) });
      } catch (err) {
        // Best effort: fn's error is the one thrown; a rollback fails only when the thread is lost (see lost()).
        await call('ROLLBACK', { op: 'end', tx, commit: false }).catch(() => {});
        throw err;
      }
      await call('COMMIT', { op: 'end', tx, commit: true });
      return result;
    },
    async close() {
      if (closed) return;
      closed = true;
      // Best effort: the thread is terminated next in any case, and PGlite's files are consistent at each commit.
      if (!failure) await call('CLOSE', { op: 'close' }).catch(() => {});
      failure ??= new DbError('the database is closed', {});
      await worker.terminate();
    },
    lost: () => (closed ? undefined : failure?.message),
  };
}

/**
 * Creates PGlite's data folder in a thread of its own, which then exits. initdb leaves its instance's
 * WebAssembly memory and code behind until the thread's heap is collected, which an idle thread rarely is:
 * measured, 609 MB resident after initdb and an open in one thread against 294 MB for an open alone, about
 * 300 MB that a node's first start kept (the ingest bench's peak included it). An exited thread gives all back.
 */
async function initInThread(dataDir: string, workerUrl: URL): Promise<void> {
  const worker = new Worker(workerUrl);
  try {
    await new Promise<void>((resolve, reject) => {
      worker.once('message', (reply: Reply) =>
        reply.ok ? resolve() : reject(Object.assign(new Error(reply.error?.message), { code: reply.error?.code })),
      );
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new DbError(`the PGlite thread stopped (exit code ${code})`, {})));
      worker.postMessage({ id: 1, op: 'init', dataDir });
    });
  } catch (err) {
    throw wrapDbError(err, `INIT PGlite ${dataDir}`);
  } finally {
    await worker.terminate();
  }
}

/** The Db of an open PGlite instance (closing the Db closes the instance). */
export function wrapPglite(pg: PGlite): Db {
  const run = async <R>(q: Pick<PGlite, 'query'>, sql: string, params?: readonly unknown[]): Promise<R[]> => {
    try {
      return (await q.query<R>(sql, params as unknown[] | undefined)).rows;
    } catch (err) {
      throw wrapDbError(err, sql);
    }
  };
  return {
    kind: 'pglite',
    query: (sql, params) => run(pg, sql, params),
    transaction(fn) {
      return pg.transaction(async (tx) => {
        const q: Queryable = { query: (sql, params) => run(tx, sql, params) };
        return fn(q);
      });
    },
    async close() {
      if (!pg.closed) await pg.close();
    },
  };
}
