import { lookup } from '../lib/lookup.ts';
import { sha256Hex } from '../lib/sha256.ts';

/**
 * The event table of the ClickHouse-engine store, and the names of its columns as search fields.
 *
 * Core ECS fields are typed columns (fast filters, group-bys and time scans); every other field, ECS or
 * original, is a key of the `fields` map under its flat dotted name, except the original string fields that
 * the engine reads back from `raw` by their path, which are stored there only (original-fields.ts, ADR 12). Values in `fields` are strings:
 * numbers and booleans are stored as their JSON text, arrays as a JSON array of strings (text beginning
 * with `[`). The hottest fields of Windows and ECS events (PROMOTED_FIELDS) are also computed at insert
 * into typed columns of their own, so that a filter or a group-by on them reads one small column.
 * ReplacingMergeTree sorted on (tenant, ts, id, content_hash) plus `FINAL` in every read makes a re-stored
 * event invisible; the same event always has the same ts, so both copies share a partition and a sort key.
 * `content_hash` (see {@link contentHash}) keeps stored evidence immutable: an event.id and @timestamp a
 * client chose again with other content is a row of its own, never a replacement of the first.
 * Retention counts from ingestion (as Elastic ILM does), so historical logs loaded today are kept.
 *
 * Why a map and not the JSON type (measured in bench and .scratch, 20k Mordor events, 5,000-row inserts,
 * fsync on, on this 2-core machine): JSON(max_dynamic_paths=1024) inserted 5.5k events/s, a map 11k
 * events/s; with 550 distinct Mordor paths a JSON part is one stream per path, which also made the
 * search data set copy at 3.7k rows/s and merges exhaust file descriptors. A map lookup reads the whole
 * map of the rows it scans, which the promoted columns avoid for the fields searched most. `raw` keeps the
 * default LZ4 codec: ZSTD(1) saved a fifth of the disk and cost about a tenth of the insert rate.
 */
export const DATABASE = 'vigil';
export const EVENTS_TABLE = `${DATABASE}.events`;

/**
 * The version of the events table layout, kept in the table's comment. 1 (no comment): `fields` was
 * JSON(max_dynamic_paths = 1024). 2: `fields` is Map(LowCardinality(String), String) with promoted columns.
 * 3: `content_hash` ends the sort key, so a replayed event.id with other content no longer replaces a row.
 * 4: the string fields the engine reads back from `raw` may be left out of `fields` (original-fields.ts, ADR
 * 12); the table is the same, its rows are not readable by a Vigil that does not know it.
 */
export const SCHEMA_VERSION = 4;
export const SCHEMA_COMMENT = `vigil events schema ${SCHEMA_VERSION}`;

/** Search field name -> typed column. Anything else is a key of `fields` (or a promoted column). */
export const COLUMN_FIELDS: Readonly<Record<string, { column: string; type: 'time' | 'string' }>> = lookup({
  '@timestamp': { column: 'ts', type: 'time' },
  'event.ingested': { column: 'ingested', type: 'time' },
  'event.id': { column: 'id', type: 'string' },
  'tenant.id': { column: 'tenant', type: 'string' },
  'input.type': { column: 'source', type: 'string' },
  'vigil.layout': { column: 'layout', type: 'string' },
  'host.name': { column: 'host', type: 'string' },
  message: { column: 'message', type: 'string' },
  'event.original': { column: 'raw', type: 'string' },
  'error.message': { column: 'parse_error', type: 'string' },
});

/**
 * Fields of `fields` that are also stored, at insert, in a LowCardinality(Nullable(String)) column (NULL
 * when the event has no such field): the Windows and ECS fields that searches filter and group on most
 * (event ids and channels, ECS categorization, user, process name, addresses), all of few distinct values
 * in the Mordor data. Field name -> column name. The map keeps them too (a few bytes an event), so every
 * writer of rows, and every row read back, needs nothing but `fields`.
 */
export const PROMOTED_FIELDS: Readonly<Record<string, string>> = lookup({
  EventID: 'f_EventID',
  Channel: 'f_Channel',
  'event.code': 'f_event_code',
  'event.category': 'f_event_category',
  'event.action': 'f_event_action',
  'event.type': 'f_event_type',
  'event.outcome': 'f_event_outcome',
  'event.provider': 'f_event_provider',
  'winlog.channel': 'f_winlog_channel',
  'winlog.event_id': 'f_winlog_event_id',
  'winlog.provider_name': 'f_winlog_provider_name',
  'user.name': 'f_user_name',
  'user.domain': 'f_user_domain',
  'process.name': 'f_process_name',
  'source.ip': 'f_source_ip',
  'destination.ip': 'f_destination_ip',
  'log.syslog.appname': 'f_log_syslog_appname',
});

/**
 * The column searched by bare words. Its text (inverted) index on `lower(raw)` splits on what `hasToken`
 * splits on, so the engine answers `hasToken(lower(raw), t)` from the index alone ("direct read"), without
 * reading `raw`, in every part that has it (a part of today's INSERTs gets it at its first merge, see
 * FULL_TEXT_INDEX): over 10M Mordor events a one-word count took 129 ms, against 738 ms with the token bloom
 * filter of schema 1 (which still had to read and scan `raw` in the 5% of granules it kept). It costs about
 * as much at insert, and six times the bloom filter's disk (705 MB for 10M events, 3,990 MB the table).
 */
export const FULL_TEXT_COLUMN = 'raw';

/**
 * The name of that text index. INSERTs of the days live ingest writes leave it out of their parts, and the
 * merges that follow build it (insertFromFileSql's `deferToMerges`); until then a part is searched by reading `raw`.
 */
export const FULL_TEXT_INDEX = 'idx_raw_text';

/**
 * The columns every writer gives (the promoted ones are computed by the engine), in table order, and that a
 * search reads; writers of events (rows.ts) give `content_hash` as well.
 */
export const STORED_COLUMNS = [
  'ts',
  'ingested',
  'id',
  'tenant',
  'source',
  'layout',
  'host',
  'message',
  'raw',
  'parse_error',
  'fields',
] as const;

/**
 * Parts stay "compact" (one data file) below this size, uncompressed. A wide part writes (and fsyncs) one
 * file per column: measured 2.6x slower inserts with the JSON column, and fsync became nearly free with
 * compact parts. An insert is at most INSERT_CHUNK_RAW_BYTES of raw text (about 18 MB stored: raw, fields
 * and message), so inserts stay compact; merged parts above it are wide. Why not higher: a compact part keeps
 * every column of a granule together, so a scan of one column reads the whole file. Measured over 1.3M Mordor
 * events as the search benchmark builds them (`* | stats count() by Channel`, one read of the table): in its
 * compact parts 162 CPU-ns a row and 151 MB read from files for 0.82M rows, in its wide parts 46 CPU-ns a
 * row and 0.16 MB for 0.45M rows. At 256 MB, parts of up to about 40,000 events were compact.
 */
export const WIDE_PART_BYTES = 64 * 1024 * 1024;

/**
 * A partition whose parts are all older than half an hour is merged into one part. `FINAL` then has nothing
 * to merge there: it read and merged the sort key of every row otherwise, 450 ms of a 680 ms
 * `stats count() by Channel` over 10M events in 213 parts (the engine's own merge choices had left 4 to 8
 * parts a day). Partitions still written to keep their parts until writes stop for half an hour.
 */
export const FORCE_MERGE_AGE_S = 1800;

/** The table settings of the force merge (see FORCE_MERGE_AGE_S). */
export const FORCE_MERGE_SETTINGS = `min_age_to_force_merge_seconds = ${FORCE_MERGE_AGE_S}, min_age_to_force_merge_on_partition_only = 1`;

/**
 * The identity of an event's content among rows of the same (tenant, @timestamp, event.id): SHA-256 of the
 * text the client sent (`event.original`), truncated to 128 bits, as 32 lowercase hex digits. Only what the
 * client sent counts, never what Vigil adds on receipt (`event.ingested`, the receiving node), so a
 * collector's resend after a failover is the same row and collapses into one, while the same id and time
 * with other text is a second row. Why a second row and not a refusal: refusing would need a read of the
 * table before every insert (on every replica), and a refused event is evidence lost; a second row keeps
 * both versions, each found by its id and by its words alike. CONTENT_HASH_SQL computes the same in the
 * engine (for migrated rows).
 */
export function contentHash(raw: string): string {
  return sha256Hex(raw).slice(0, 32);
}

/** {@link contentHash} of the `raw` column, as an engine expression. */
export const CONTENT_HASH_SQL = 'lower(hex(substring(SHA256(raw), 1, 16)))';

function sqlString(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

const PRIMARY_KEY = '(tenant, ts, id)';
/** The index stays (tenant, ts, id); the hash only tells rows of the same id apart. */
const SORT_KEY = '(tenant, ts, id, content_hash)';

/** DDL for the event table (named `table`, the events table by default); `ttlDays` is the retention by age. */
export function eventsTableDdl(ttlDays: number, table: string = EVENTS_TABLE): string {
  // One lookup of the key for most rows: a map lookup scans the row's keys, and the engine runs the
  // `mapContains` branch only for the rows whose value is empty (present and empty, or absent). Same values as
  // `if(mapContains(fields, k), fields[k], NULL)`, which tables made before keep; 6.6 of 58 CPU-µs an event
  // less per insert (RowBinary, fsync on, 20,000 Mordor events, best of 3).
  const promoted = Object.entries(PROMOTED_FIELDS).map(([field, column]) => {
    const key = sqlString(field);
    return `  ${column} LowCardinality(Nullable(String)) MATERIALIZED if(fields[${key}] != '', fields[${key}], if(mapContains(fields, ${key}), '', NULL)),`;
  });
  return `CREATE TABLE IF NOT EXISTS ${table} (
  ts DateTime64(3, 'UTC'),
  ingested DateTime64(3, 'UTC'),
  id String,
  content_hash String,
  tenant LowCardinality(String),
  source LowCardinality(String),
  layout LowCardinality(String),
  host LowCardinality(String),
  message String,
  raw String,
  parse_error String,
  fields Map(LowCardinality(String), String),
${promoted.join('\n')}
  INDEX ${FULL_TEXT_INDEX} lower(raw) TYPE text(tokenizer = 'splitByNonAlpha') GRANULARITY 1,
  INDEX idx_host host TYPE set(1000) GRANULARITY 4
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
PRIMARY KEY ${PRIMARY_KEY}
ORDER BY ${SORT_KEY}
TTL toDateTime(ingested) + INTERVAL ${Math.trunc(ttlDays)} DAY
SETTINGS non_replicated_deduplication_window = 10000, min_bytes_for_wide_part = ${WIDE_PART_BYTES}, ${FORCE_MERGE_SETTINGS}
COMMENT ${sqlString(SCHEMA_COMMENT)}`;
}

/**
 * Copies every row of a version-1 table (JSON `fields`) into `target` (a version-2 table): each JSON path
 * becomes a map key, each value its text (version 1 stored only strings, so the text is the value).
 */
export function migrateFromV1Sql(source: string, target: string): string {
  const plain = STORED_COLUMNS.filter((c) => c !== 'fields').join(', ');
  return `INSERT INTO ${target} (${STORED_COLUMNS.join(', ')}, content_hash)
SELECT ${plain}, mapFromArrays(JSONAllPaths(fields), arrayMap(v -> toString(v), JSONAllValues(fields))) AS fields,
  ${CONTENT_HASH_SQL} AS content_hash
FROM ${source}`;
}

/**
 * Turns a version-2 table into version 3 in place, in one metadata-only ALTER (no row is copied): the
 * engine lets a sort key grow by a column added in the same ALTER, without a default. Rows stored before
 * have an empty `content_hash`; they were already one row per (tenant, ts, id), and a later resend of
 * one of them is stored beside it once (the one duplicate the migration can leave).
 */
export function migrateFromV2Sql(table: string = EVENTS_TABLE): string {
  return `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS content_hash String AFTER id, MODIFY ORDER BY ${SORT_KEY}, MODIFY COMMENT ${sqlString(SCHEMA_COMMENT)}`;
}

/** Version 3 to 4: only the rows written from now on differ (see SCHEMA_VERSION). */
export function migrateFromV3Sql(table: string = EVENTS_TABLE): string {
  return `ALTER TABLE ${table} MODIFY COMMENT ${sqlString(SCHEMA_COMMENT)}`;
}
