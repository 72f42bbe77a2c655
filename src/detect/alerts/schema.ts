/**
 * The alerts table. An alert id is deterministic (rule and triggering events), so a replay re-derives
 * the same id; the writer never inserts an id that exists, and `updated` versions status changes
 * (ReplacingMergeTree keeps the newest row of an id, read with FINAL).
 */
export const ALERTS_TABLE = 'alerts';

export const ALERTS_DDL = `CREATE TABLE IF NOT EXISTS vigil.${ALERTS_TABLE} (
  id String,
  ts DateTime64(3, 'UTC'),
  created DateTime64(3, 'UTC'),
  updated DateTime64(3, 'UTC'),
  tenant LowCardinality(String),
  kind LowCardinality(String),
  rule_id String,
  rule_title String,
  level LowCardinality(String),
  tags Array(String),
  host LowCardinality(String),
  status LowCardinality(String),
  matched String,
  event_ids Array(String),
  partition String,
  fencing_token UInt64
) ENGINE = ReplacingMergeTree(updated)
PARTITION BY toYYYYMM(created)
ORDER BY (tenant, id)`;

/** The site epoch of an alert (two sites); 0 on one site and for alerts stored before the column. */
export const ALERTS_EPOCH_DDL = `ALTER TABLE vigil.${ALERTS_TABLE} ADD COLUMN IF NOT EXISTS epoch UInt64 DEFAULT 0`;

/** The highest fencing token announced per partition (a new owner's fence comes before its first alert). */
export const FENCES_TABLE = 'alert_fences';

export const FENCES_DDL = `CREATE TABLE IF NOT EXISTS vigil.${FENCES_TABLE} (
  partition String,
  token UInt64
) ENGINE = ReplacingMergeTree(token)
ORDER BY partition`;
