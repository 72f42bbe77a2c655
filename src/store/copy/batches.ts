import type { EventStore } from '../index.ts';
import { DATABASE } from '../schema.ts';

/**
 * The stream batches this replica wrote: which stream sequences it holds, and the ingestion times of their
 * events. Events carry no stream sequence (a row is the same on every replica, however it got there), so a
 * range of sequences is served as the range of ingestion times of the batches that held them: a superset,
 * written idempotently (the events table collapses a row stored twice).
 */
export const BATCHES_TABLE = `${DATABASE}.stream_batches`;

/** DDL of {@link BATCHES_TABLE}; rows age out with the events (store.retention_days). */
export function batchesDdl(retentionDays: number): string {
  return `CREATE TABLE IF NOT EXISTS ${BATCHES_TABLE} (
  stream String,
  first_seq UInt64,
  last_seq UInt64,
  events UInt32,
  min_ingested DateTime64(3, 'UTC'),
  max_ingested DateTime64(3, 'UTC'),
  written DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(written)
ORDER BY (stream, first_seq, last_seq)
TTL toDateTime(written) + INTERVAL ${Math.trunc(retentionDays)} DAY`;
}

/**
 * Written stream sequences first..last (first <= last, every sequence between them written), and the
 * ingestion times of their events (epoch ms).
 */
export interface WrittenBatch {
  stream: string;
  firstSeq: number;
  lastSeq: number;
  events: number;
  minIngested: number;
  maxIngested: number;
}

/** Records a written batch (after its events are committed: the row claims they are here). */
export async function recordBatch(store: EventStore, b: WrittenBatch): Promise<void> {
  await recordBatches(store, [b]);
}

/** Records written batches in one insert; a range with first > last is refused (it would claim nothing true). */
export async function recordBatches(store: EventStore, list: readonly WrittenBatch[]): Promise<void> {
  if (list.length === 0) return;
  const written = Date.now();
  const rows = list.map((b) => {
    if (!(b.firstSeq <= b.lastSeq)) {
      throw new RangeError(`a written batch of ${b.stream} cannot run from ${b.firstSeq} down to ${b.lastSeq}`);
    }
    return JSON.stringify({
      stream: b.stream,
      first_seq: b.firstSeq,
      last_seq: b.lastSeq,
      events: b.events,
      min_ingested: b.minIngested,
      max_ingested: b.maxIngested,
      written,
    });
  });
  await store.insertRows('stream_batches', Buffer.from(rows.join('\n')));
}

/**
 * The runs of consecutive sequences among `seqs` (any order, repeats allowed), lowest first: what a batch
 * delivered really holds. A batch's first and last delivered messages are not its ends: a redelivery (after
 * ack_wait, or a failed batch) comes after newer messages, so `[12, 7]` is a batch whose first delivered is
 * 12 and last 7, and `[7, 12]` holds neither 8 nor 11.
 */
export function sequenceRuns(seqs: readonly number[]): [number, number][] {
  const sorted = [...new Set(seqs)].sort((a, b) => a - b);
  const runs: [number, number][] = [];
  for (const seq of sorted) {
    const last = runs[runs.length - 1];
    if (last && seq === last[1] + 1) last[1] = seq;
    else runs.push([seq, seq]);
  }
  return runs;
}

/** What this replica holds of stream sequences from..to: all of them or not, and their events' ingestion times. */
export interface Coverage {
  covered: boolean;
  /** Ingestion times (epoch ms) of the events of those sequences; null when they hold no event. */
  fromIngested: number | null;
  toIngested: number | null;
}

/**
 * Whether the batches this replica wrote cover every sequence of `from..to` of `stream` without a hole, and
 * the ingestion times of their events. One statement: a hole is a batch starting past every earlier batch's
 * end + 1 (a window over the batches in sequence order), so a week of batches is never read into Node.
 */
export async function coverage(store: EventStore, stream: string, from: number, to: number): Promise<Coverage> {
  const [row] = await store.query<{
    lo: string;
    hi: string;
    holes: string;
    n: string;
    min_i: string;
    max_i: string;
    with_events: string;
  }>(
    `SELECT toString(min(first_seq)) AS lo, toString(max(last_seq)) AS hi, toString(count()) AS n,
            toString(countIf(rn > 1 AND first_seq > prev_end + 1)) AS holes,
            toString(countIf(events > 0)) AS with_events,
            toString(minIf(toUnixTimestamp64Milli(min_ingested), events > 0)) AS min_i,
            toString(maxIf(toUnixTimestamp64Milli(max_ingested), events > 0)) AS max_i
       FROM (
         SELECT first_seq, last_seq, events, min_ingested, max_ingested,
                row_number() OVER w AS rn,
                max(last_seq) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
           FROM ${BATCHES_TABLE} FINAL
          WHERE stream = {stream:String} AND last_seq >= {from:UInt64} AND first_seq <= {to:UInt64}
         WINDOW w AS (ORDER BY first_seq, last_seq)
       )`,
    { stream, from, to },
  );
  const n = Number(row?.n ?? 0);
  const covered = n > 0 && Number(row.lo) <= from && Number(row.hi) >= to && Number(row.holes) === 0;
  const any = Number(row?.with_events ?? 0) > 0;
  return {
    covered,
    fromIngested: any ? Number(row.min_i) : null,
    toIngested: any ? Number(row.max_i) : null,
  };
}
