import type { CopyProgress } from '../copy/index.ts';
import type { EventStore } from '../index.ts';
import { DATABASE } from '../schema.ts';

/**
 * Ranges of stream sequences this replica never wrote and the stream no longer holds (a replica restored
 * from a backup older than the stream's retention, or new after it): kept in the store's database so that a
 * restart still knows them, until a copy from a peer fills them.
 */
export const GAPS_TABLE = `${DATABASE}.stream_gaps`;

export const GAPS_DDL = `CREATE TABLE IF NOT EXISTS ${GAPS_TABLE} (
  stream String,
  first_seq UInt64,
  last_seq UInt64,
  state LowCardinality(String),
  detail String,
  progress String DEFAULT '',
  updated DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated)
ORDER BY (stream, first_seq)`;

/** Makes the gaps table, and adds `progress` to one made before a copy could resume. */
export async function ensureGapsTable(store: EventStore): Promise<void> {
  await store.exec(GAPS_DDL);
  await store.exec(`ALTER TABLE ${GAPS_TABLE} ADD COLUMN IF NOT EXISTS progress String DEFAULT '' AFTER detail`);
}

/** A missing range: `missing` (no peer could serve it yet), `copying`, or `copied` (filled). */
export interface Gap {
  stream: string;
  /**
   * The shard consumer whose range it is (`<consumer>-s<k>`): a node keeping several shards has a gap of the
   * same sequences for each. Unset for the consumer of every event.
   */
  consumer?: string;
  fromSeq: number;
  toSeq: number;
  state: 'missing' | 'copying' | 'copied';
  /** Why it is still missing, or who filled it. */
  detail: string;
  /**
   * How far the copy of this very range (same first and last sequence) got: a copy interrupted goes on
   * after its last committed page. Cleared when the range changes or is filled.
   */
  progress?: CopyProgress;
}

/**
 * The `stream` column of a gap: the stream, and for a shard consumer `#<consumer>` (the table's sort key is
 * (stream, first_seq): two shards' gaps of the same sequences must not replace each other).
 */
export function gapKey(stream: string, consumer?: string): string {
  return consumer ? `${stream}#${consumer}` : stream;
}

/** Records a gap's state (the newest row of a range wins). */
export async function saveGap(store: EventStore, gap: Gap): Promise<void> {
  const row = {
    stream: gapKey(gap.stream, gap.consumer),
    first_seq: gap.fromSeq,
    last_seq: gap.toSeq,
    state: gap.state,
    detail: gap.detail,
    progress: gap.progress ? JSON.stringify(gap.progress) : '',
    updated: Date.now(),
  };
  await store.insertRows('stream_gaps', Buffer.from(JSON.stringify(row)));
}

/** The gaps of `stream` (of one shard consumer's, with `consumer`) not filled yet, oldest first. */
export async function openGaps(store: EventStore, stream: string, consumer?: string): Promise<Gap[]> {
  const rows = await store.query<{
    first_seq: string;
    last_seq: string;
    state: Gap['state'];
    detail: string;
    progress: string;
  }>(
    `SELECT toString(first_seq) AS first_seq, toString(last_seq) AS last_seq, state, detail, progress
       FROM ${GAPS_TABLE} FINAL WHERE stream = {stream:String} AND state != 'copied' ORDER BY first_seq`,
    { stream: gapKey(stream, consumer) },
  );
  return rows.map((r) => {
    const progress = parseProgress(r.progress);
    return {
      stream,
      ...(consumer ? { consumer } : {}),
      fromSeq: Number(r.first_seq),
      toSeq: Number(r.last_seq),
      state: 'missing',
      detail: r.detail,
      ...(progress ? { progress } : {}),
    };
  });
}

/** A recorded progress, or undefined when there is none or it is not one (the copy then starts over). */
function parseProgress(text: string): CopyProgress | undefined {
  if (!text) return undefined;
  try {
    const p = JSON.parse(text) as CopyProgress;
    const a = p.after;
    const ok =
      typeof p.id === 'string' &&
      Number.isFinite(p.pages) &&
      Number.isFinite(p.events) &&
      typeof a === 'object' &&
      a !== null &&
      Number.isFinite(a.ingested) &&
      Number.isFinite(a.ts) &&
      typeof a.tenant === 'string' &&
      typeof a.id === 'string' &&
      typeof a.content_hash === 'string';
    return ok ? p : undefined;
  } catch {
    return undefined;
  }
}
