import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Session } from 'chdb';
import type { Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage, VigilError } from '../lib/errors.ts';
import type { NormalizedEvent } from '../lib/event.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, histogram } from '../lib/metrics.ts';
import type { StoreConfig } from './config.ts';
import { eventsToRows } from './rows.ts';
import { DATABASE, EVENTS_TABLE, eventsTableDdl, WIDE_PART_BYTES } from './schema.ts';

/** The ClickHouse-engine event store, embedded in the process through chdb. */
export interface EventStore extends Component {
  /** Commits the events; resolves once the engine has written them (and fsynced them when configured). */
  write(events: readonly NormalizedEvent[]): Promise<void>;
  /** Runs a parameterized read and returns its JSONEachRow rows. */
  query<T = Record<string, unknown>>(sql: string, params: Record<string, unknown>): Promise<T[]>;
  /** Runs a parameterized statement (DDL, inserts built by other components) with no result. */
  exec(sql: string, params?: Record<string, unknown>): Promise<void>;
  /** Inserts JSONEachRow rows into a table of the store's database (alerts, bookkeeping). */
  insertRows(table: string, rows: Buffer): Promise<void>;
}

export { type StoreConfig, storeConfigSchema } from './config.ts';
export { type EventRow, rowToEvent, rowToNormalized } from './rows.ts';
export { DATABASE, EVENTS_TABLE } from './schema.ts';

/** Creates the store over `<dataDir>/events`; nothing is opened until start(). */
export function createEventStore(
  config: StoreConfig,
  deps: { dataDir: string; metrics: Registry; logger: Logger },
): EventStore {
  let session: Session | undefined;
  let lastError: string | undefined;
  const writeSeconds = histogram(deps.metrics, 'vigil_store_write_seconds', 'Latency of one committed batch.');
  const written = counter(deps.metrics, 'vigil_store_events_written_total', 'Events committed to the store.');
  const errors = counter(deps.metrics, 'vigil_store_errors_total', 'Failed store operations.', ['op']);

  function open(): Session {
    if (!session)
      throw new VigilError('store_closed', 'the event store is not running', { status: 503, retryable: true });
    return session;
  }

  return {
    name: 'store',
    async start() {
      const dir = join(deps.dataDir, 'events');
      mkdirSync(dir, { recursive: true });
      session = new Session(dir);
      await session.queryAsync(`CREATE DATABASE IF NOT EXISTS ${DATABASE}`);
      await session.queryAsync(eventsTableDdl(config.retention_days));
      const fsync = config.fsync ? 1 : 0;
      // The retention and durability settings follow the config on every start, not only at creation.
      await session.queryAsync(
        `ALTER TABLE ${EVENTS_TABLE} MODIFY TTL toDateTime(ingested) + INTERVAL ${config.retention_days} DAY`,
      );
      await session.queryAsync(
        `ALTER TABLE ${EVENTS_TABLE} MODIFY SETTING fsync_after_insert = ${fsync}, fsync_part_directory = ${fsync}, min_bytes_for_wide_part = ${WIDE_PART_BYTES}`,
      );
      deps.logger.info({ dir, retention_days: config.retention_days, fsync: config.fsync }, 'The event store is open.');
    },
    async stop() {
      session?.close();
      session = undefined;
    },
    health(): ComponentHealth {
      if (!session) return { ok: false, detail: 'not open' };
      return lastError ? { ok: false, detail: lastError } : { ok: true };
    },
    async write(events) {
      if (events.length === 0) return;
      const s = open();
      const end = writeSeconds.startTimer();
      try {
        await s.insert({ table: EVENTS_TABLE, values: eventsToRows(events), format: 'JSONEachRow' });
        lastError = undefined;
      } catch (err) {
        errors.inc({ op: 'write' });
        lastError = `write failed: ${errorMessage(err)}`;
        throw new VigilError('store_write_failed', lastError, { status: 503, retryable: true, cause: err });
      } finally {
        end();
      }
      written.inc(events.length);
    },
    async query<T>(sql: string, params: Record<string, unknown>) {
      const s = open();
      try {
        const result = await s.queryBindAsync(sql, params, { format: 'JSONEachRow', timeout: config.query_timeout_ms });
        const text = result.text();
        if (text.length === 0) return [];
        return text
          .trimEnd()
          .split('\n')
          .map((line) => JSON.parse(line) as T);
      } catch (err) {
        errors.inc({ op: 'query' });
        throw new VigilError('store_query_failed', `the query failed: ${errorMessage(err)}`, {
          status: 500,
          cause: err,
        });
      }
    },
    async exec(sql, params = {}) {
      await open().queryBindAsync(sql, params, { format: 'JSONEachRow' });
    },
    async insertRows(table, rows) {
      await open().insert({ table: `${DATABASE}.${table}`, values: rows, format: 'JSONEachRow' });
    },
  };
}
export { scanEvents } from './scan.ts';
