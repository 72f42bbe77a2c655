import { DATABASE, EVENTS_TABLE } from './schema.ts';

/** Most partitions one sweep merges; the next sweep takes the rest. */
const SWEEP_MAX_PARTITIONS = 32;

/**
 * Partitions of the events table whose only active part is of level 0 and older than `age` seconds: a part of
 * an INSERT that left its work to the merges (ADR 13) whose partition lost its other parts without a merge
 * (rows deleted, a shard dropped, every earlier row expired by TTL). Nothing else writes a level-0 part: an
 * INSERT that collapses its rows writes level 1, a merge a higher level. Such a part is not merged again by the
 * engine (one part), so it would stay without the word index and be merged by every FINAL that reads it.
 */
const LONE_PARTS_SQL = `SELECT partition_id FROM system.parts
  WHERE database = {db:String} AND table = {table:String} AND active
  GROUP BY partition_id
  HAVING count() = 1 AND max(level) = 0 AND max(modification_time) <= now() - {age:UInt32}
  ORDER BY partition_id
  LIMIT {max:UInt32}`;

/** The events table's partition ids are days (`toDate(ts)`, YYYYMMDD): nothing else goes into the SQL. */
const PARTITION_ID = /^\d{8}$/;

/** The statement that merges one partition into one part (indexed, equal keys collapsed, level 1 or more). */
export function mergePartitionSql(partitionId: string): string {
  if (!PARTITION_ID.test(partitionId)) throw new Error(`${JSON.stringify(partitionId)} is not a day's partition id`);
  return `OPTIMIZE TABLE ${EVENTS_TABLE} PARTITION ID '${partitionId}' FINAL`;
}

/**
 * Merges every partition left with one level-0 part older than `minAgeS` (see LONE_PARTS_SQL), at most
 * SWEEP_MAX_PARTITIONS of them, one at a time; returns their ids.
 */
export async function mergeLoneParts(
  store: {
    query<T>(sql: string, params: Record<string, unknown>): Promise<T[]>;
    exec(sql: string): Promise<void>;
  },
  minAgeS: number,
): Promise<string[]> {
  const rows = await store.query<{ partition_id: string }>(LONE_PARTS_SQL, {
    db: DATABASE,
    table: EVENTS_TABLE.slice(DATABASE.length + 1),
    age: Math.max(0, Math.trunc(minAgeS)),
    max: SWEEP_MAX_PARTITIONS,
  });
  const merged: string[] = [];
  for (const { partition_id: id } of rows) {
    await store.exec(mergePartitionSql(id));
    merged.push(id);
  }
  return merged;
}
