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
export { type AlertPosition, dbPositionStore, POSITION_MIGRATIONS, type PositionStore } from './positions.ts';
export { type Db, DbError, isRetryableDbError, type Queryable, withDbRetry, wrapDbError } from './types.ts';

/** The database as a component: `db` can be handed out at build time and works once started. */
export interface Database extends Component {
  readonly db: Db;
}

/**
 * How long readiness waits at start for the database to open and answer `SELECT 1`. Past it the node is
 * ready with the database reported degraded, so that a database that is down does not hold alert intake and
 * search; queries keep waiting for the open. PGlite opens in 2 to 5 s here, and took 27 s under load.
 */
export const DATABASE_READY_WAIT_MS = 30_000;

/**
 * Creates the database component. The database opens in the background from start (PostgreSQL
 * (`config.url`) connects and migrates, retrying while it cannot connect; PGlite (`<dataDir>/pg`) starts its
 * worker thread and migrates), so start does not block the components after it or `/health/live`. Health is
 * not ok (`opening the database`) until the database has answered a trivial query, at most
 * DATABASE_READY_WAIT_MS: `/health/ready` means a login or an incident list answers at once, not after an
 * open of seconds. Queries made meanwhile wait for the open. Once ready, health stays ok with a `degraded`
 * detail while the database cannot be reached, and turns bad when opening fails for good (a migration
 * refused, a broken data dir).
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
  /** The database has answered since start, or the wait for it is over: health may be ok. */
  let answered = false;
  let waitOver = false;
  let waitTimer: NodeJS.Timeout | undefined;
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
      // Best effort: the migration's error is the one thrown.
      await d
        .close()
        .catch((e: unknown) =>
          logger.debug({ err: errorMessage(e) }, 'Closing the database after a failed migration failed.'),
        );
      throw err;
    }
  };

  /** Opens with retries (connection errors only); one attempt runs at a time. */
  const open = (): Promise<Db> => {
    const lost = inner?.lost?.();
    if (inner && lost) {
      // PGlite's thread died (out of memory, a WebAssembly abort): a new one opens the same data folder.
      logger.warn({ err: lost }, 'The database connection is lost; opening it again.');
      // Best effort on a dead connection, not awaited: the next open must not wait for it.
      inner
        .close()
        .catch((e: unknown) => logger.debug({ err: errorMessage(e) }, 'Closing the lost database connection failed.'));
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
      answered = false;
      waitOver = false;
      const startedAt = Date.now();
      waitTimer = setTimeout(() => {
        waitOver = true;
        if (!answered) {
          logger.warn(
            { waitMs: DATABASE_READY_WAIT_MS, err: lastFailure ?? fatal },
            'The database has not opened in time; the node is ready without it and queries wait for it.',
          );
        }
      }, DATABASE_READY_WAIT_MS);
      waitTimer.unref();
      // Failures are reported by health and by the queries that wait for the open (which retries on its own).
      open()
        .then((d) => d.query('SELECT 1'))
        .then(
          () => {
            answered = true;
            clearTimeout(waitTimer);
            logger.info({ ms: Date.now() - startedAt }, 'The database answers.');
          },
          () => {},
        );
    },
    async stop(deadline) {
      stopping = true;
      clearTimeout(waitTimer);
      const pending = opening;
      if (pending) {
        await settleBy(
          // Only waits: the open loop logs its own failures.
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
      if (!answered && !waitOver) {
        return { ok: false, detail: lastFailure ? `opening the database: ${lastFailure}` : 'opening the database' };
      }
      if (lastFailure) return { ok: true, detail: `degraded: cannot reach the database: ${lastFailure}` };
      if (!inner) {
        return {
          ok: true,
          detail: answered
            ? 'degraded: opening the database again'
            : `degraded: not open after ${DATABASE_READY_WAIT_MS} ms; queries wait for it`,
        };
      }
      return { ok: true };
    },
  };
}
