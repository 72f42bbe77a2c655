import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { type Db, type Queryable, wrapDbError } from './types.ts';

/**
 * Opens PGlite (PostgreSQL compiled to WebAssembly, in this process) with its data in `dataDir`, or in
 * memory when `dataDir` is undefined. One process only: PGlite has a single connection and no locking
 * between processes, so transactions run one at a time.
 */
export async function openPglite(dataDir: string | undefined): Promise<Db> {
  let pg: PGlite;
  try {
    if (dataDir && !existsSync(join(dataDir, 'PG_VERSION'))) await initPglite(dataDir);
    pg = await PGlite.create(dataDir);
  } catch (err) {
    throw wrapDbError(err, `OPEN PGlite ${dataDir ?? 'memory'}`);
  }
  return wrapPglite(pg);
}

/**
 * Creates a PGlite cluster in `<dataDir>.init` and renames it to `dataDir` once complete, so a process
 * killed during initdb (seconds of work) leaves no half-made data folder that would never open.
 */
async function initPglite(dataDir: string): Promise<void> {
  const tmp = `${dataDir}.init`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(dirname(tmp), { recursive: true });
  const pg = await PGlite.create(tmp);
  await pg.close();
  rmSync(dataDir, { recursive: true, force: true });
  renameSync(tmp, dataDir);
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
