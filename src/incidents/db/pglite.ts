import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { type Db, type Queryable, wrapDbError } from './types.ts';

/**
 * Opens PGlite (PostgreSQL compiled to WebAssembly, in this process) with its data in `dataDir`, or in
 * memory when `dataDir` is undefined. One process only: PGlite has a single connection and no locking
 * between processes, so transactions run one at a time.
 */
export async function openPglite(dataDir: string | undefined): Promise<Db> {
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  let pg: PGlite;
  try {
    pg = await PGlite.create(dataDir);
  } catch (err) {
    throw wrapDbError(err, `OPEN PGlite ${dataDir ?? 'memory'}`);
  }
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
