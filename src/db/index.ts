import { join } from 'node:path';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { PostgresConfig } from './config.ts';
import { type Migration, migrate } from './migrate.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import { type Db, DbError, isRetryableDbError, type Queryable } from './types.ts';
import { settleBy } from '../lib/deadline.ts';
import { backoffDelay, sleep } from '../lib/retry.ts';

export { type PostgresConfig, postgresConfigSchema } from './config.ts';
export { type Migration, migrate } from './migrate.ts';
export { openPglite, wrapPglite } from './pglite.ts';
export { openPostgres } from './postgres.ts';
export { dbPositionStore, POSITION_MIGRATIONS, type PositionStore } from './positions.ts';
export { type Db, DbError, isRetryableDbError, type Queryable, withDbRetry, wrapDbError } from './types.ts';

/** The database as a component: `db` can be handed out at build time and works once started. */
export interface Database extends Component {
  readonly db: Db;
}

/**
 * Creates the database component. The database opens in the background, never blocking start or
 * readiness: alert intake and search must not wait for it. PostgreSQL (`config.url`) connects and
 * migrates at start, retrying while it cannot connect; PGlite (`<dataDir>/pg`, in a worker thread) opens on
 * first use, because compiling and starting it costs seconds of CPU that a node without incidents need not spend.
 * Queries made meanwhile wait for the open. Health stays ok with a `degraded` detail while the database
 * cannot be reached, and turns bad when opening fails for good (a migration refused, a broken data dir).
 */
export function createDatabase(
  config: PostgresConfig,
  deps: {
    dataDir: string;
    logger: Logger;
    migrations: readonly Migration[];
    /** Opens PGlite (tests replace it); openPglite by default. */
    openPglite?: (dataDir: string) => Promise<Db>;
  },
): Database {
  let inner: Db | undefined;
  let opening: Promise<Db> | undefined;
  let lastFailure: string | undefined;
  let fatal: string | undefined;
  let started = false;
  let stopping = false;
  const logger = deps.logger.child({ component: 'postgres' });

  const openOnce = async (): Promise<Db> => {
    const d = config.url
      ? openPostgres(
          {
            url: config.url,
            poolMax: config.pool_max,
            connectTimeoutMs: config.connect_timeout_ms,
            statementTimeoutMs: config.statement_timeout_ms,
          },
          logger,
        )
      : await (deps.openPglite ?? openPglite)(join(deps.dataDir, 'pg'));
    try {
      const applied = await migrate(d, deps.migrations);
      if (applied.length > 0) logger.info({ applied, kind: d.kind }, 'Database migrations applied.');
      return d;
    } catch (err) {
      await d.close().catch(() => {});
      throw err;
    }
  };

  /** Opens with retries (connection errors only); one attempt runs at a time. */
  const open = (): Promise<Db> => {
    const lost = inner?.lost?.();
    if (inner && lost) {
      // PGlite's thread died (out of memory, a WebAssembly abort): a new one opens the same data folder.
      logger.warn({ err: lost }, 'The database connection is lost; opening it again.');
      inner.close().catch(() => {});
      inner = undefined;
    }
    if (inner) return Promise.resolve(inner);
    if (!started || stopping)
      return Promise.reject(new DbError('the database is not open (the postgres component is not running)', {}));
    opening ??= (async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          const d = await openOnce();
          if (stopping) {
            await d.close();
            throw new DbError('the postgres component stopped while the database was opening', {});
          }
          inner = d;
          lastFailure = undefined;
          fatal = undefined;
          logger.info({ kind: d.kind }, 'The database is open.');
          return d;
        } catch (err) {
          if (stopping || !isRetryableDbError(err)) {
            fatal = errorMessage(err);
            logger.error({ err: fatal }, 'The database could not be opened.');
            throw err;
          }
          lastFailure = errorMessage(err);
          const delay = backoffDelay(attempt, { initialMs: 100, maxMs: 5000 });
          logger.warn({ err: lastFailure, attempt, delayMs: delay }, 'The database cannot be reached yet; retrying.');
          await sleep(delay);
        }
      }
    })().finally(() => {
      opening = undefined;
    });
    return opening;
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
    query: (sql, params) => watch(open().then((d) => d.query(sql, params))),
    transaction: <T>(fn: (tx: Queryable) => Promise<T>) => watch(open().then((d) => d.transaction(fn))),
    close: async () => {},
  };
  return {
    name: 'postgres',
    db,
    async start() {
      started = true;
      stopping = false;
      // Failures are reported by health and by the queries that wait for the open.
      if (config.url) open().catch(() => {});
    },
    async stop(deadline) {
      stopping = true;
      const pending = opening;
      if (pending) {
        await settleBy(
          pending.catch(() => {}),
          deadline,
        );
      }
      const d = inner;
      inner = undefined;
      started = false;
      await d?.close();
    },
    health(): ComponentHealth {
      if (!started) return { ok: false, detail: 'stopped' };
      const lost = inner?.lost?.();
      if (lost) return { ok: true, detail: `degraded: ${lost}; the next query opens the database again` };
      if (fatal && !inner) return { ok: false, detail: `cannot open the database: ${fatal}` };
      if (lastFailure) return { ok: true, detail: `degraded: cannot reach the database: ${lastFailure}` };
      if (!inner) return { ok: true, detail: opening ? 'opening the database' : 'opens on first use' };
      return { ok: true };
    },
  };
}
