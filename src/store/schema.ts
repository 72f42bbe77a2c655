/**
 * The event table of the ClickHouse-engine store, and the names of its columns as search fields.
 *
 * Core ECS fields are typed columns (fast filters, group-bys and time scans); every other field, ECS or
 * original, lives as a path of the `fields` JSON column. Values in `fields` are strings: numbers and
 * booleans are stored as their JSON text, arrays as a JSON array of strings (text beginning with `[`).
 * ReplacingMergeTree keyed on (tenant, ts, id) plus `FINAL` in every read makes a re-stored event.id
 * invisible; the same event always has the same ts, so both copies share a partition and a sort key.
 * Retention counts from ingestion (as Elastic ILM does), so historical logs loaded today are kept.
 */
export const DATABASE = 'vigil';
export const EVENTS_TABLE = `${DATABASE}.events`;

/** Search field name -> typed column. Anything else is a path in `fields`. */
export const COLUMN_FIELDS: Readonly<Record<string, { column: string; type: 'time' | 'string' }>> = {
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
};

/** The column searched by bare words; its token bloom filter index is on `lower(raw)`. */
export const FULL_TEXT_COLUMN = 'raw';

/**
 * Inserted parts stay "compact" (one data file) below this size. A wide part writes (and fsyncs) one file
 * per column and per JSON path, hundreds for Windows events: measured 2.6x slower inserts, and fsync
 * became nearly free with compact parts. Merges still produce wide parts for large, long-lived data.
 */
export const WIDE_PART_BYTES = 256 * 1024 * 1024;

/** DDL for the event table; `ttlDays` is the retention by age. */
export function eventsTableDdl(ttlDays: number): string {
  return `CREATE TABLE IF NOT EXISTS ${EVENTS_TABLE} (
  ts DateTime64(3, 'UTC'),
  ingested DateTime64(3, 'UTC'),
  id String,
  tenant LowCardinality(String),
  source LowCardinality(String),
  layout LowCardinality(String),
  host LowCardinality(String),
  message String,
  raw String CODEC(ZSTD(1)),
  parse_error String,
  fields JSON(max_dynamic_paths = 1024),
  INDEX idx_raw_tokens lower(raw) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1,
  INDEX idx_host host TYPE set(1000) GRANULARITY 4
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (tenant, ts, id)
TTL toDateTime(ingested) + INTERVAL ${Math.trunc(ttlDays)} DAY
SETTINGS non_replicated_deduplication_window = 10000, min_bytes_for_wide_part = ${WIDE_PART_BYTES}`;
}
