import pg from 'pg';
import type { Logger } from '../lib/logger.ts';
import { type Db, type Queryable, wrapDbError } from './types.ts';

const INT8_OID = 20;

/** Options of a PostgreSQL pool (see the `postgres:` config section). */
export interface PostgresOptions {
  url: string;
  poolMax: number;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
}

/**
 * Opens a pool to a PostgreSQL server. `bigint` is read as a JS number (epoch ms and counters fit in
 * 2^53), so rows look the same as PGlite's. A connection that fails while idle is logged and replaced.
 */
export function openPostgres(opts: PostgresOptions, logger: Logger): Db {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolMax,
    connectionTimeoutMillis: opts.connectTimeoutMs,
    statement_timeout: opts.statementTimeoutMs,
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID
          ? (v: string) => Number(v)
          : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
  // Without a listener an idle client's error (the server restarted, a failover) would crash the process.
  pool.on('error', (err) => logger.warn({ err: err.message }, 'An idle PostgreSQL connection failed; it is replaced.'));
  const run = async <R>(q: pg.Pool | pg.PoolClient, sql: string, params?: readonly unknown[]): Promise<R[]> => {
    try {
      return (await q.query(sql, params as unknown[] | undefined)).rows as R[];
    } catch (err) {
      throw wrapDbError(err, sql);
    }
  };
  return {
    kind: 'postgres',
    query: (sql, params) => run(pool, sql, params),
    async transaction(fn) {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        throw wrapDbError(err, 'CONNECT');
      }
      let broken: unknown;
      // A connection that dies between two statements emits 'error' on the client, which has no listener
      // while checked out: without this one the process would crash. The next statement fails instead.
      const onError = (err: Error) => {
        broken = err;
        logger.warn({ err: err.message }, 'A PostgreSQL connection failed inside a transaction.');
      };
      client.on('error', onError);
      try {
        await run(client, 'BEGIN');
        const q: Queryable = { query: (sql, params) => run(client, sql, params) };
        const result = await fn(q);
        await run(client, 'COMMIT');
        return result;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          // The connection is gone; it must not go back to the pool.
          broken = rollbackErr;
        }
        throw err;
      } finally {
        client.off('error', onError);
        client.release(broken instanceof Error ? broken : undefined);
      }
    },
    async close() {
      await pool.end();
    },
  };
}
