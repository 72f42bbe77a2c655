import { join } from 'node:path';
import type { Component, ComponentHealth } from '../../lib/component.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { PostgresConfig } from './config.ts';
import { type Migration, migrate } from './migrate.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import { type Db, DbError, isRetryableDbError, type Queryable } from './types.ts';

export { type PostgresConfig, postgresConfigSchema } from './config.ts';
export { type Migration, migrate } from './migrate.ts';
export { openPglite } from './pglite.ts';
export { openPostgres } from './postgres.ts';
export { type Db, DbError, isRetryableDbError, type Queryable, withDbRetry, wrapDbError } from './types.ts';

/** The database as a component: `db` can be handed out at build time and works once started. */
export interface Database extends Component {
  readonly db: Db;
}

/**
 * Creates the database component: start() opens PGlite in `<dataDir>/pg` (or the pool to `config.url`)
 * and applies `migrations` in order; stop() closes it. Health turns bad while queries fail to connect.
 */
export function createDatabase(
  config: PostgresConfig,
  deps: { dataDir: string; logger: Logger; migrations: readonly Migration[] },
): Database {
  let inner: Db | undefined;
  let lastFailure: string | undefined;
  const logger = deps.logger.child({ component: 'postgres' });
  const current = (): Db => {
    if (!inner) throw new DbError('the database is not open (the postgres component has not started)', {});
    return inner;
  };
  const watch = async <T>(p: Promise<T>): Promise<T> => {
    try {
      const result = await p;
      lastFailure = undefined;
      return result;
    } catch (err) {
      if (isRetryableDbError(err)) lastFailure = errorMessage(err);
      throw err;
    }
  };
  const db: Db = {
    get kind() {
      return config.url ? 'postgres' : 'pglite';
    },
    query: (sql, params) => watch(current().query(sql, params)),
    transaction: <T>(fn: (tx: Queryable) => Promise<T>) => watch(current().transaction(fn)),
    close: async () => {},
  };
  return {
    name: 'postgres',
    db,
    async start() {
      inner = config.url
        ? openPostgres(
            {
              url: config.url,
              poolMax: config.pool_max,
              connectTimeoutMs: config.connect_timeout_ms,
              statementTimeoutMs: config.statement_timeout_ms,
            },
            logger,
          )
        : await openPglite(join(deps.dataDir, 'pg'));
      try {
        const applied = await migrate(inner, deps.migrations);
        if (applied.length > 0) logger.info({ applied, kind: inner.kind }, 'Database migrations applied.');
      } catch (err) {
        await inner.close().catch(() => {});
        inner = undefined;
        throw err;
      }
    },
    async stop() {
      const d = inner;
      inner = undefined;
      await d?.close();
    },
    health(): ComponentHealth {
      if (!inner) return { ok: false, detail: 'not open' };
      return lastFailure ? { ok: false, detail: `cannot reach the database: ${lastFailure}` } : { ok: true };
    },
  };
}
