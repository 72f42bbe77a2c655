import { mkdirSync, rmSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ChdbResult, Session } from 'chdb';
import type { Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage, VigilError } from '../lib/errors.ts';
import type { NormalizedEvent } from '../lib/event.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge, histogram } from '../lib/metrics.ts';
import { createSearchAdmission } from './admission.ts';
import type { StoreConfig } from './config.ts';
import { createEngineGate, queryTimeoutError } from './engine-gate.ts';
import { ROW_BINARY_STRUCTURE, RowBuffers, rowsOf } from './row-binary.ts';
import { ActiveDays } from './active-days.ts';
import { mergeLoneParts } from './lone-parts.ts';
import {
  DATABASE,
  EVENTS_TABLE,
  eventsTableDdl,
  FORCE_MERGE_AGE_S,
  FORCE_MERGE_SETTINGS,
  FULL_TEXT_INDEX,
  migrateFromV1Sql,
  migrateFromV2Sql,
  migrateFromV3Sql,
  SCHEMA_VERSION,
  WIDE_PART_BYTES,
} from './schema.ts';

/**
 * Most events in one INSERT. Measured with Mordor events (about 5.6 KB a row as JSONEachRow) through HTTP
 * ingest, 50k events, 4 clients: the engine needs several times an INSERT's payload while it runs, so the
 * peak resident memory was 1.82 GB with the bus's 20,000-event writes in one INSERT or in 5,000-event ones,
 * and 1.31 GB in 2,500-event ones, which were also as fast (5.2k events/s, against 4.3k-4.5k).
 */
export const INSERT_CHUNK_EVENTS = 2500;

/**
 * Raw text an INSERT may carry before it is cut, about INSERT_CHUNK_EVENTS Mordor events: small events
 * (syslog lines) go many more to an INSERT, since every INSERT is a part, an fsync and later a merge.
 */
export const INSERT_CHUNK_RAW_BYTES = 6 * 1024 * 1024;

/**
 * Least time between two releases of the engine's freed memory after writes (see releaseMemory). Each release
 * hands every freed page back, and the next INSERT faults them in again: on a 3-node cluster at 6,000
 * events/s (a store replica writes once a second), page faults were 15 % of the insert threads' perf samples
 * with a release after every write; a single node's HTTP ingest (one write a request) faulted about 10 % less
 * and its engine insert threads took 45 to 58 CPU-µs an event against 56 to 75 with paced releases
 * (docs/performance.md, 2026-12-07, session 14).
 */
export const RELEASE_MEMORY_INTERVAL_MS = 5000;

/** Engine calls of the writing session let out at once (see engine-gate.ts); the others wait in JavaScript. */
const ENGINE_CALLS_OUTSTANDING = 2;

/**
 * Searches let out at once into the search session. The session runs one statement at a time (and chdb one
 * parameterized statement at a time in the process), so a second would only wait inside chdb, where its
 * deadline no longer takes it out of the line.
 */
const SEARCH_CALLS_OUTSTANDING = 1;

/**
 * The nice value of a search's engine threads while ingest's run at store.ingest_nice. Not 0 because the
 * engine sets a thread's priority only for a statement that asks for one, and puts it back to 0 after it:
 * a pool thread that an INSERT left at its nice value (seen with chdb 3.4, one thread after 12 niced INSERTs)
 * then ran searches' pipelines at that value. -1 sets every search thread, and leaves it at 0.
 */
const SEARCH_NICE = -1;

/** Folder (under the data directory) of the files the engine inserts rows from; emptied at every start. */
const INSERT_FILES_DIR = 'store-insert';

/**
 * What the insert files' folder may be named with: it is written into the INSERT's SQL, where the engine's
 * `file()` would read `*`, `?`, `{`, `}`, `[`, `]` as a glob and a quote or backslash would end the string.
 */
const SAFE_FILE_PATH = /^[\w/ .,:+=@%~-]+$/;

/**
 * The INSERT that reads one file of RowBinary rows (row-binary.ts) into the events table. Why a file: the
 * engine reads RowBinary at a fifth of the CPU of JSONEachRow (see row-binary.ts), and chdb 3.4 takes
 * only text formats in its insert call; binary data handed inline beside the statement lost a byte in
 * some rows of Mordor events ("Cannot read all data"). The file is written to the page cache only: the
 * table's part is what is fsynced, and the file is deleted once the INSERT ends. A dedup token of plain
 * characters (the store's own, `<stream>:<first>-<last>:<digest>#<chunk>`) goes in as it is, the same token as the
 * text insert gave before, so a batch redelivered across an upgrade is still dropped; any other goes in as
 * hex, so nothing of its text reaches the SQL.
 *
 * `deferToMerges` (rows of partitions this store keeps writing, see ActiveDays; ADR 13): the INSERT leaves
 * two pieces of work to the merges that follow, which redo them from the merged rows in any case. The text
 * index on `raw` (FULL_TEXT_INDEX): 32 to 37 -> 21 to 24 CPU-µs a Mordor event, and a part without it is
 * searched by reading `raw` (the same answers; 20,000 events in 8 parts: 14 ms a one-word count, 7 ms with
 * it). And the collapse of rows of the same sort key within the INSERT (`optimize_on_insert`; FINAL, in every
 * search, shows one): 20.4 to 24.4 -> 17.0 to 18.5 (in-process, fsync on, best of 5; the engine's
 * MergingBlocks time was 8 µs an event). The first INSERT into a partition (an import, a late event, the first
 * after a start) indexes and collapses at insert: a partition that only ever gets one INSERT never merges, and
 * its part would otherwise stay unindexed and be merged by every FINAL that reads it.
 */
export function insertFromFileSql(path: string, dedupToken?: string, nice = 0, deferToMerges = false): string {
  const columns = ROW_BINARY_STRUCTURE.map(([name]) => name).join(', ');
  const structure = ROW_BINARY_STRUCTURE.map(([name, type]) => `${name} ${type}`)
    .join(', ')
    .replace(/'/g, "\\'");
  const token = dedupToken === undefined ? undefined : PLAIN_TOKEN.test(dedupToken) ? dedupToken : hexToken(dedupToken);
  const set = [
    ...(token === undefined ? [] : [`insert_deduplication_token = '${token}'`]),
    ...(deferToMerges
      ? [`exclude_materialize_skip_indexes_on_insert = '${FULL_TEXT_INDEX}'`, 'optimize_on_insert = 0']
      : []),
    ...(nice > 0 ? [`os_thread_priority = ${niceValue(nice)}`] : []),
  ];
  const settings = set.length === 0 ? '' : ` SETTINGS ${set.join(', ')}`;
  return `INSERT INTO ${EVENTS_TABLE} (${columns})${settings} SELECT * FROM file('${path}', 'RowBinary', '${structure}')`;
}

/** A nice value as the engine takes it: an integer of 0-19 (store.ingest_nice), whatever the caller passed. */
function niceValue(nice: number): number {
  return Math.min(19, Math.max(0, Math.trunc(nice)));
}

/**
 * The engine's arguments that make its merges run at `nice` (store.ingest_nice): merges are ingest's work too
 * (each INSERT is a part, merged later), and they ran on both cores beside the searches.
 */
export function ingestNiceArgs(nice: number): string[] {
  return nice > 0 ? [`--os_threads_nice_value_merge_mutate=${niceValue(nice)}`] : [];
}

/** Dedup tokens written into the SQL as they are. */
const PLAIN_TOKEN = /^[\w:.#-]{1,200}$/;

function hexToken(token: string): string {
  return `hex:${Buffer.from(token).toString('hex')}`;
}

/** The engine's answer to a statement stopped by max_execution_time (TIMEOUT_EXCEEDED). */
const ENGINE_TIMEOUT = /\bCode: 159\b|TIMEOUT_EXCEEDED/;

/** A SETTINGS clause ending a statement (the query compiler ends its statements with one). */
const TRAILING_SETTINGS = /\sSETTINGS\s[^()']*$/i;

/**
 * The statement with the engine's own time limit added: the engine stops it after `ms` (rounded up to a
 * millisecond) and fails it with TIMEOUT_EXCEEDED. chdb's `timeout` option only rejects the promise while
 * the engine goes on: 10 timed-out searches went on using 0.8 CPU-seconds after their answers. `nice`, when
 * not 0, is the OS nice value of the statement's threads while it runs (see SEARCH_NICE).
 */
export function withTimeLimit(sql: string, ms: number, nice = 0): string {
  if (!Number.isInteger(nice) || nice < -20 || nice > 19) throw new RangeError(`nice ${nice} is not an OS nice value`);
  const priority = nice === 0 ? '' : `, os_thread_priority = ${nice}`;
  const limit = `max_execution_time = ${Math.max(1, Math.ceil(ms)) / 1000}, timeout_overflow_mode = 'throw'${priority}`;
  const trimmed = sql.trimEnd();
  return TRAILING_SETTINGS.test(trimmed) ? `${trimmed}, ${limit}` : `${trimmed}\nSETTINGS ${limit}`;
}

/** How often the store merges partitions left with one unmerged part (lone-parts.ts): the force merge's age. */
const LONE_PARTS_SWEEP_MS = FORCE_MERGE_AGE_S * 1000;

/** Statements that take rows or parts out of a table. */
const REMOVES_ROWS = /\b(DELETE|DROP|TRUNCATE|DETACH|MOVE|REPLACE)\b/i;

/** Where a batch is cut into INSERTs: by raw size, at most 8x INSERT_CHUNK_EVENTS each; the same cut for the same batch. */
export function insertChunks(events: readonly NormalizedEvent[]): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < events.length; i++) {
    bytes += events[i].raw.length;
    if (bytes >= INSERT_CHUNK_RAW_BYTES || i + 1 - start >= 8 * INSERT_CHUNK_EVENTS) {
      out.push([start, i + 1]);
      start = i + 1;
      bytes = 0;
    }
  }
  if (start < events.length) out.push([start, events.length]);
  return out;
}

/** The ClickHouse-engine event store, embedded in the process through chdb. */
export interface EventStore extends Component {
  /**
   * Commits the events; resolves once the engine has written them (and fsynced them when configured).
   * `dedupToken` names the batch: written again with the same token (a redelivery), the engine drops it.
   */
  write(events: readonly NormalizedEvent[], opts?: { dedupToken?: string }): Promise<void>;
  /**
   * Runs a parameterized read for the store's own users (alerts, bookkeeping) and returns its JSONEachRow
   * rows; the engine stops it after store.query_timeout_ms (503 `query_timeout`).
   */
  query<T = Record<string, unknown>>(sql: string, params: Record<string, unknown>): Promise<T[]>;
  /**
   * Runs a user's search: `fn` gets a place among `user`'s searches (store.search_concurrency_per_user; more
   * wait in a bounded queue, and past it answer 429 `too_many_searches`), and its reads run on a connection of
   * their own (never behind a write, one search at a time) and stop at the deadline (store.query_timeout_ms from the call, waiting included; per read with
   * `perQuery`, for hunts that read page after page) with 503 `query_timeout`, the engine's work included.
   */
  search<T>(user: string, fn: (scope: SearchScope) => Promise<T>, opts?: { perQuery?: boolean }): Promise<T>;
  /** Runs a parameterized statement (DDL, inserts built by other components) with no result. */
  exec(sql: string, params?: Record<string, unknown>): Promise<void>;
  /**
   * Inserts JSONEachRow rows into a table of the store's database (alerts, bookkeeping, copied pages).
   * `dedupToken` names the insert: the same rows inserted again with it are dropped by a table that keeps
   * a deduplication window (the events table).
   */
  insertRows(table: string, rows: Buffer, opts?: { dedupToken?: string }): Promise<void>;
}

/** The reads of one admitted search (see {@link EventStore.search}). */
export interface SearchScope {
  /** Runs a parameterized read within the search's deadline and returns its JSONEachRow rows. */
  query<T = Record<string, unknown>>(sql: string, params: Record<string, unknown>): Promise<T[]>;
  /**
   * The same over rows of its own: `rows.text` is written to a private file of the store, whose path is bound
   * as the parameter `rows.fileParam` (the SQL reads `file({<fileParam>:String}, ...)`), removed after. Why
   * a file: chdb binds a string parameter at about 70 ns a byte; the 3.8 MB of 400 Mordor events gathered
   * from 4 shards took 280 CPU-ms to bind, and the whole merge over them read from a file 32 CPU-ms.
   */
  queryOverRows<T = Record<string, unknown>>(
    sql: string,
    params: Record<string, unknown>,
    rows: { fileParam: string; text: string },
  ): Promise<T[]>;
}

/**
 * A SearchScope over a bare engine session, with no admission or deadline: for tests and benchmarks that
 * run the compiler's SQL on a table of their own. Row files go to `filesDir`.
 */
export function sessionSearchScope(session: Session, filesDir: string): SearchScope {
  let files = 0;
  const query = async <T>(sql: string, params: Record<string, unknown>): Promise<T[]> => {
    const text = (await session.queryBindAsync(sql, params, { format: 'JSONEachRow' })).text().trim();
    return text === '' ? [] : (text.split('\n').map((l) => JSON.parse(l)) as T[]);
  };
  return {
    query,
    async queryOverRows<T>(sql: string, params: Record<string, unknown>, rows: { fileParam: string; text: string }) {
      const path = join(filesDir, `rows-${process.pid}-${files++}.json`);
      await writeFile(path, rows.text, { mode: 0o600 });
      try {
        return await query<T>(sql, { ...params, [rows.fileParam]: path });
      } finally {
        await rm(path, { force: true });
      }
    },
  };
}

export { type StoreConfig, storeConfigSchema } from './config.ts';
export { type EventRow, rowToEvent, rowToNormalized } from './rows.ts';
export { DATABASE, EVENTS_TABLE, SCHEMA_VERSION } from './schema.ts';

/** Creates the store over `<dataDir>/events`; nothing is opened until start(). */
export function createEventStore(
  config: StoreConfig,
  deps: {
    dataDir: string;
    metrics: Registry;
    logger: Logger;
    /** Server settings the engine takes at open, in `clickhouse local` form (`--backups.allowed_path=...`). */
    engineArgs?: readonly string[];
  },
): EventStore {
  /** Writes, the store's own reads and statements. */
  let session: Session | undefined;
  const insertDir = join(deps.dataDir, INSERT_FILES_DIR);
  /**
   * Users' searches, on a connection of their own to the same data path. chdb runs one statement at a time
   * per connection but the connections of one path run at once over the same tables: a 1 ms count waited
   * 2 s behind a 2 s query on the same session, and took 2 ms beside it on a second one. So a search never
   * waits behind an insert, and an insert never waits behind a search. Parameterized statements are the
   * exception: chdb runs them one at a time in the whole process (its parameter state is not per
   * connection), so a search can still wait for the store's own reads (detection positions, alerts), which
   * are short, but never for an insert, which is not parameterized.
   */
  let searchSession: Session | undefined;
  /**
   * The store's own parameterized reads (alerts, detection positions), on a third connection. On the writing
   * session such a read waited for the running INSERT while it held chdb's process-wide line of
   * parameterized statements (a search waited up to 240 ms for it); made to wait for the session to be idle
   * instead, it held the INSERTs behind it while it waited in that line for a search (up to the search's
   * time limit). Here it waits for neither: only for the parameterized statements ahead of it.
   */
  let readSession: Session | undefined;
  let lastError: string | undefined;
  const writeSeconds = histogram(deps.metrics, 'vigil_store_write_seconds', 'Latency of one committed batch.');
  const written = counter(deps.metrics, 'vigil_store_events_written_total', 'Events committed to the store.');
  const errors = counter(deps.metrics, 'vigil_store_errors_total', 'Failed store operations.', ['op']);
  const releases = counter(
    deps.metrics,
    'vigil_store_memory_releases_total',
    "Releases of the engine's freed memory to the system after writes (SYSTEM JEMALLOC PURGE).",
  );
  const loneMerged = counter(
    deps.metrics,
    'vigil_store_lone_partitions_merged_total',
    'Partitions left with one unmerged part (its word index not built) that the store merged (lone-parts.ts).',
  );
  const timeouts = counter(
    deps.metrics,
    'vigil_store_search_timeouts_total',
    'Reads stopped at store.query_timeout_ms, by where: waiting for the engine (queue) or in it (engine).',
    ['where'],
  );
  /**
   * Active parts of the events table, read from the engine at each scrape. Every search opens each part, and
   * FINAL merges the rows of parts whose key ranges overlap: a count that keeps growing (merges falling
   * behind inserts) is what slows searches first. A failed read keeps the last value and counts an error.
   */
  gauge(
    deps.metrics,
    'vigil_store_active_parts',
    'Active parts of the events table (read from the engine at each scrape).',
    [],
    async function () {
      const s = session;
      if (!s) return;
      try {
        const result = await engine(() =>
          s.queryAsync(
            `SELECT count() FROM system.parts WHERE database = '${DATABASE}' AND table = 'events' AND active`,
            { format: 'CSV' },
          ),
        );
        this.set(Number(result.text().trim()));
      } catch (err) {
        errors.inc({ op: 'parts' });
        deps.logger.warn({ err: errorMessage(err) }, 'Reading the count of active parts failed.');
      }
    },
  );
  const admission = createSearchAdmission(
    {
      concurrency: config.search_concurrency_per_user,
      queue: config.search_queue_per_user,
      queueTimeoutMs: config.search_queue_timeout_ms,
    },
    deps.metrics,
  );

  const engine = createEngineGate(ENGINE_CALLS_OUTSTANDING);
  const searchEngine = createEngineGate(SEARCH_CALLS_OUTSTANDING, { searchPlaces: SEARCH_CALLS_OUTSTANDING });
  /** One statement at a time on the read session (chdb runs one at a time per connection anyway). */
  const readEngine = createEngineGate(1);
  let purging = false;
  /** A release asked for while one ran: made once that one ends (the writes since are not released yet). */
  let releaseAgain = false;
  /** performance.now() of the last release: the wall clock may step back. */
  let lastReleaseAt = Number.NEGATIVE_INFINITY;
  let trailingRelease: NodeJS.Timeout | undefined;
  /**
   * Hands the engine's freed memory back to the system after a write, at most once per
   * RELEASE_MEMORY_INTERVAL_MS (a write within it leaves the release to a timer at its end). The engine's
   * allocator (jemalloc) keeps what an INSERT freed for reuse: measured with 5,000-event inserts of Mordor
   * events, the process stayed at 1.7 GB resident after the inserts, of which the engine still used 16 MB;
   * purged after each insert, the peak was 1.45 GB and the resident size between inserts 0.7 GB, for about
   * 5% of the rate. Runs after the write is acknowledged, one at a time.
   */
  function releaseMemory(): void {
    const waitMs = lastReleaseAt + RELEASE_MEMORY_INTERVAL_MS - performance.now();
    if (waitMs > 0) {
      trailingRelease ??= setTimeout(() => {
        trailingRelease = undefined;
        releaseMemory();
      }, waitMs);
      trailingRelease.unref();
      return;
    }
    const s = session;
    if (!s) return;
    if (purging) {
      releaseAgain = true;
      return;
    }
    purging = true;
    lastReleaseAt = performance.now();
    releases.inc();
    const ended = () => {
      purging = false;
      if (!releaseAgain) return;
      releaseAgain = false;
      releaseMemory();
    };
    engine(() => s.queryAsync('SYSTEM JEMALLOC PURGE')).then(ended, (err: unknown) => {
      errors.inc({ op: 'purge' });
      deps.logger.warn({ err: errorMessage(err) }, 'Releasing the engine memory failed.');
      ended();
    });
  }

  /**
   * Runs a read. A search's read (`search` given) runs on the search session, waits only behind other
   * searches, leaves the line at its deadline, and runs with the engine's time limit set to what is left of
   * it; any other read runs on the writing session with the engine's time limit set to store.query_timeout_ms.
   */
  async function read<T>(
    sql: string,
    params: Record<string, unknown>,
    search?: { deadline: number; timeoutMs: number },
  ): Promise<T[]> {
    const limitMs = search ? search.timeoutMs : config.query_timeout_ms;
    let text: string;
    try {
      let result: ChdbResult;
      if (!search) {
        // A plain read (alerts, detection positions) gets the engine's time limit too, without a deadline, on
        // the read session: it never waits for an INSERT, and no INSERT waits for it (see readSession).
        const s = openRead();
        result = await readEngine(() =>
          s.queryBindAsync(withTimeLimit(sql, limitMs), params, { format: 'JSONEachRow' }),
        );
      } else {
        const s = openSearch();
        result = await searchEngine(
          () => {
            const left = search.deadline - Date.now();
            if (left <= 0) throw queryTimeoutError(search.timeoutMs);
            const nice = config.ingest_nice > 0 ? SEARCH_NICE : 0;
            return s.queryBindAsync(withTimeLimit(sql, left, nice), params, { format: 'JSONEachRow' });
          },
          { lane: 'search', deadline: search.deadline },
        );
      }
      text = result.text();
    } catch (err) {
      if (search && err instanceof VigilError && err.code === 'query_timeout') {
        timeouts.inc({ where: 'queue' });
        throw queryTimeoutError(search.timeoutMs, err);
      }
      if (ENGINE_TIMEOUT.test(errorMessage(err))) {
        timeouts.inc({ where: 'engine' });
        throw queryTimeoutError(limitMs, err);
      }
      errors.inc({ op: 'query' });
      // The engine's reason quotes the statement: it goes to the log, never to the client.
      deps.logger.warn({ err: errorMessage(err) }, 'The engine failed a query.');
      throw new VigilError('store_query_failed', 'the engine failed the query (its reason is in the node log)', {
        status: 500,
        cause: err,
      });
    }
    if (text.length === 0) return [];
    return text
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as T);
  }

  let insertFiles = 0;
  /** The days this store wrote to lately: their INSERTs may leave work to merges (see insertFromFileSql). */
  const activeDays = new ActiveDays(FORCE_MERGE_AGE_S * 1000);
  let sweepTimer: NodeJS.Timeout | undefined;
  let sweeping: Promise<void> | undefined;
  /**
   * Merges the partitions left with one unmerged part (lone-parts.ts), every LONE_PARTS_SWEEP_MS; a failure is
   * counted and logged, and the next sweep tries again.
   */
  async function sweepLoneParts(): Promise<void> {
    try {
      const merged = await mergeLoneParts(
        {
          query: (sql, params) => read(sql, params),
          exec: async (sql) => {
            await engine(() => open().queryAsync(sql));
          },
        },
        FORCE_MERGE_AGE_S,
      );
      if (merged.length === 0) return;
      loneMerged.inc(merged.length);
      deps.logger.info({ partitions: merged }, 'Partitions left with one unmerged part were merged.');
    } catch (err) {
      errors.inc({ op: 'sweep' });
      deps.logger.warn({ err: errorMessage(err) }, 'Merging partitions left with one unmerged part failed.');
    }
  }
  /** The buffers chunks' rows are built in, reused (see RowBuffers: fewer full markings of the heap). */
  const rowBuffers = new RowBuffers();
  /**
   * Inserts RowBinary rows through a file of their own (see insertFromFileSql), deleted afterwards. `rows` go
   * back to rowBuffers once written to the file, before the engine reads it.
   */
  async function insertFile(
    s: Session,
    rows: Buffer,
    dedupToken: string | undefined,
    days: number[] | undefined,
  ): Promise<void> {
    const path = join(insertDir, `${process.pid}-${insertFiles++}.bin`);
    try {
      await writeFile(path, rows, { mode: 0o600 });
    } finally {
      rowBuffers.give(rows);
    }
    try {
      const defer = activeDays.allActive(days, Date.now());
      await engine(() => s.queryAsync(insertFromFileSql(path, dedupToken, config.ingest_nice, defer)));
      activeDays.written(days, Date.now());
    } finally {
      // Awaited: a file left behind is only disk until the next start empties the folder, but a failure to
      // delete it is reported by the write (the rows are committed by then; a retry is dropped by its token).
      await rm(path, { force: true });
    }
  }

  function open(): Session {
    if (!session)
      throw new VigilError('store_closed', 'the event store is not running', { status: 503, retryable: true });
    return session;
  }

  function openRead(): Session {
    if (!readSession)
      throw new VigilError('store_closed', 'the event store is not running', { status: 503, retryable: true });
    return readSession;
  }

  function openSearch(): Session {
    if (!searchSession)
      throw new VigilError('store_closed', 'the event store is not running', { status: 503, retryable: true });
    return searchSession;
  }

  return {
    name: 'store',
    async start() {
      const dir = join(deps.dataDir, 'events');
      mkdirSync(dir, { recursive: true });
      if (!SAFE_FILE_PATH.test(insertDir)) {
        throw new VigilError(
          'store_path',
          `the data directory ${deps.dataDir} has a character the engine's file() reads as a glob or a quote (* ? { } [ ] ' \\): choose a data_dir without one`,
          { retryable: false },
        );
      }
      // Files of INSERTs a stopped process left: their rows were committed or never acknowledged.
      rmSync(insertDir, { recursive: true, force: true });
      // Event data: private like the rest of data_dir (src/lib/data-dir.ts).
      mkdirSync(insertDir, { recursive: true, mode: 0o700 });
      // Both sessions share one engine (one data path): the first one's arguments are the engine's.
      const engineArgs = [...(deps.engineArgs ?? []), ...ingestNiceArgs(config.ingest_nice)];
      const sessionOpts = engineArgs.length > 0 ? { connectionArgs: engineArgs } : undefined;
      session = new Session(dir, sessionOpts);
      await session.queryAsync(`CREATE DATABASE IF NOT EXISTS ${DATABASE}`);
      await ensureEventsTable(session, config.retention_days, deps.logger);
      const fsync = config.fsync ? 1 : 0;
      // The retention and durability settings follow the config on every start, not only at creation.
      await session.queryAsync(
        `ALTER TABLE ${EVENTS_TABLE} MODIFY TTL toDateTime(ingested) + INTERVAL ${config.retention_days} DAY`,
      );
      await session.queryAsync(
        `ALTER TABLE ${EVENTS_TABLE} MODIFY SETTING fsync_after_insert = ${fsync}, fsync_part_directory = ${fsync}, min_bytes_for_wide_part = ${WIDE_PART_BYTES}, ${FORCE_MERGE_SETTINGS}`,
      );
      // Opened once the table is in its final layout: a search never sees a migration midway.
      searchSession = new Session(dir, sessionOpts);
      readSession = new Session(dir, sessionOpts);
      sweepTimer = setInterval(() => {
        sweeping ??= sweepLoneParts().finally(() => {
          sweeping = undefined;
        });
      }, LONE_PARTS_SWEEP_MS);
      sweepTimer.unref();
      deps.logger.info({ dir, retention_days: config.retention_days, fsync: config.fsync }, 'The event store is open.');
    },
    async stop() {
      clearTimeout(trailingRelease);
      trailingRelease = undefined;
      clearInterval(sweepTimer);
      sweepTimer = undefined;
      await sweeping;
      searchSession?.close();
      searchSession = undefined;
      readSession?.close();
      readSession = undefined;
      session?.close();
      session = undefined;
    },
    health(): ComponentHealth {
      if (!session) return { ok: false, detail: 'not open' };
      return lastError ? { ok: false, detail: lastError } : { ok: true };
    },
    async write(events, opts = {}) {
      if (events.length === 0) return;
      const s = open();
      const end = writeSeconds.startTimer();
      try {
        // A large batch goes as several INSERTs, each serialized while the engine inserts the one before:
        // Node and the engine then work at once (on two cores), and neither holds the whole batch twice.
        // Acknowledged only when all are committed; a retry after a partial failure rewrites rows that
        // FINAL collapses.
        let inserting: Promise<unknown> | undefined;
        for (const [i, end] of insertChunks(events)) {
          // Rows the intake's threads built come as they are; the others are built here.
          const values = await rowsOf(events.slice(i, end), undefined, rowBuffers);
          await inserting;
          // Chunks are cut the same way every time, so each has a token of its own.
          const token = opts.dedupToken ? `${opts.dedupToken}#${i}` : undefined;
          inserting = insertFile(s, values, token, activeDays.daysOf(events, i, end));
          // Awaited below, after the next chunk's rows are built (turns of the event loop): a failure meanwhile
          // must not count as an unhandled rejection, which would end the process.
          inserting.catch(() => {});
        }
        await inserting;
        lastError = undefined;
        releaseMemory();
      } catch (err) {
        errors.inc({ op: 'write' });
        lastError = `write failed: ${errorMessage(err)}`;
        throw new VigilError('store_write_failed', lastError, { status: 503, retryable: true, cause: err });
      } finally {
        end();
      }
      written.inc(events.length);
    },
    query: <T>(sql: string, params: Record<string, unknown>) => read<T>(sql, params),
    async search(user, fn, opts = {}) {
      const timeoutMs = config.query_timeout_ms;
      const deadline = Date.now() + timeoutMs;
      const release = await admission.admit(user, opts.perQuery ? undefined : deadline).catch((err: unknown) => {
        if (!(err instanceof VigilError) || err.code !== 'query_timeout') throw err;
        timeouts.inc({ where: 'queue' });
        throw queryTimeoutError(timeoutMs, err);
      });
      const limits = () => ({ deadline: opts.perQuery ? Date.now() + timeoutMs : deadline, timeoutMs });
      try {
        return await fn({
          query: (sql, params) => read(sql, params, limits()),
          async queryOverRows(sql, params, rows) {
            const path = join(insertDir, `${process.pid}-rows-${insertFiles++}.json`);
            await writeFile(path, rows.text, { mode: 0o600 });
            try {
              return await read(sql, { ...params, [rows.fileParam]: path }, limits());
            } finally {
              await rm(path, { force: true });
            }
          },
        });
      } finally {
        release();
      }
    },
    async exec(sql, params = {}) {
      const s = open();
      // Rows of the events table deleted: a day's earlier part may go without a merge (see ActiveDays).
      if (sql.includes(EVENTS_TABLE) && REMOVES_ROWS.test(sql)) activeDays.forget();
      // Parameterized and on the writing session (tables the writes use), so exclusive: let out behind an
      // INSERT it would hold chdb's line of parameterized statements, the searches' included (readSession).
      await engine(() => s.queryBindAsync(sql, params, { format: 'JSONEachRow' }), { exclusive: true });
    },
    async insertRows(table, rows, opts = {}) {
      const s = open();
      // A setting, never SQL text: the token reaches the engine as a value.
      // Bulk rows (a copy's pages) are ingest's work: niced like the events' INSERTs (store.ingest_nice).
      const settings = {
        ...(opts.dedupToken === undefined ? {} : { insert_deduplication_token: opts.dedupToken }),
        ...(config.ingest_nice > 0 ? { os_thread_priority: niceValue(config.ingest_nice) } : {}),
      };
      await engine(() =>
        s.insert({
          table: `${DATABASE}.${table}`,
          values: rows,
          format: 'JSONEachRow',
          ...(Object.keys(settings).length > 0 ? { settings } : {}),
        }),
      );
    },
  };
}
export { SCAN_PAGE, type ScanPage, type ScanRow, scanEvents, scanPage } from './scan.ts';

const MIGRATION_TABLE = `${DATABASE}.events_migrating`;

/**
 * Creates the events table, or checks that an existing one has this version's layout. A version-1 table
 * (JSON `fields`, before SCHEMA_VERSION 2) is migrated in place: its rows are copied into a new table that
 * then takes its name (EXCHANGE is atomic), so a crash midway leaves the old table whole and the next start
 * redoes the copy. A table of another layout, or of a newer version, stops the start with a clear error.
 */
async function ensureEventsTable(session: Session, retentionDays: number, logger: Logger): Promise<void> {
  // Left by a migration that stopped midway (a partial copy), or after its EXCHANGE (the old rows).
  await session.queryAsync(`DROP TABLE IF EXISTS ${MIGRATION_TABLE} SYNC`);
  const version = await eventsTableVersion(session);
  if (version === undefined) {
    await session.queryAsync(eventsTableDdl(retentionDays));
    return;
  }
  if (version === SCHEMA_VERSION) return;
  if (version === 3) {
    await session.queryAsync(migrateFromV3Sql());
    logger.info({ from: 3, to: SCHEMA_VERSION }, 'The events table stores original string fields once, in the text.');
    return;
  }
  if (version === 2) {
    await session.queryAsync(migrateFromV2Sql());
    logger.info({ from: 2, to: SCHEMA_VERSION }, 'The events table keys rows by their content too.');
    return;
  }
  if (version !== 1) {
    throw new VigilError(
      'store_schema',
      `the events table in this data directory has ${version > SCHEMA_VERSION ? `layout ${version}, newer than this Vigil's (${SCHEMA_VERSION})` : 'an unknown layout'}: run the Vigil that made it, or move the data directory aside`,
      { retryable: false },
    );
  }
  const started = performance.now();
  logger.warn(
    { from: 1, to: SCHEMA_VERSION },
    'Migrating the events table to the new layout; searches wait until it ends.',
  );
  await session.queryAsync(eventsTableDdl(retentionDays, MIGRATION_TABLE));
  try {
    await session.queryAsync(migrateFromV1Sql(EVENTS_TABLE, MIGRATION_TABLE));
  } catch (err) {
    throw new VigilError('store_migration_failed', `migrating the events table failed: ${errorMessage(err)}`, {
      retryable: false,
      cause: err,
    });
  }
  await session.queryAsync(`EXCHANGE TABLES ${EVENTS_TABLE} AND ${MIGRATION_TABLE}`);
  await session.queryAsync(`DROP TABLE ${MIGRATION_TABLE} SYNC`);
  logger.info(
    { rows: await countRows(session), seconds: Math.round((performance.now() - started) / 100) / 10 },
    'The events table is migrated.',
  );
}

/** The layout version of the events table: undefined when there is none, 1 for the JSON layout without a comment. */
async function eventsTableVersion(session: Session): Promise<number | undefined> {
  const text = (
    await session.queryAsync(
      `SELECT comment, (SELECT any(type) FROM system.columns WHERE database = '${DATABASE}' AND table = 'events' AND name = 'fields') AS fields_type
FROM system.tables WHERE database = '${DATABASE}' AND name = 'events'`,
      { format: 'JSONEachRow' },
    )
  )
    .text()
    .trim();
  if (text === '') return undefined;
  const { comment, fields_type: fieldsType } = JSON.parse(text) as { comment: string; fields_type: string };
  const match = /^vigil events schema (\d+)$/.exec(comment);
  if (match) return Number(match[1]);
  if (comment === '' && fieldsType.startsWith('JSON')) return 1;
  return -1;
}

async function countRows(session: Session): Promise<number> {
  return Number((await session.queryAsync(`SELECT count() FROM ${EVENTS_TABLE}`, { format: 'CSV' })).text().trim());
}
