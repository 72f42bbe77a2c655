import type { NormalizedEvent } from '../lib/event.ts';
import type { SearchScope } from './index.ts';
import { type EventRow, rowToNormalized } from './rows.ts';
import { EVENTS_TABLE } from './schema.ts';

/** Events a scan reads in one page. */
export const SCAN_PAGE = 5000;

/** A stored row as a scan reads it: with its time in epoch ms, the cursor of the next page. */
export type ScanRow = EventRow & { ts_ms: string | number };

/** Where a scan is and what it reads: a time range of some tenants, after the cursor (ts ms, id). */
export interface ScanPage {
  tenants: string[];
  from: number;
  to: number;
  afterTs: number;
  afterId: string;
  page: number;
  /** Only the events of shard `index` of `count` (murmurHash3_32(id) % count, as src/cluster/shards). */
  shard?: { index: number; count: number };
}

/** Reads one page of stored events in (ts, id) order after the cursor. */
export async function scanPage(store: SearchScope, p: ScanPage): Promise<ScanRow[]> {
  const sharded = p.shard !== undefined && p.shard.count > 1;
  return store.query<ScanRow>(
    `SELECT *, toUnixTimestamp64Milli(ts) AS ts_ms FROM ${EVENTS_TABLE} FINAL
       WHERE tenant IN {tenants:Array(String)}
         AND ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})
         AND (ts, id) > (fromUnixTimestamp64Milli({afterTs:Int64}), {afterId:String})${
           sharded ? '\n         AND murmurHash3_32(id) % {shards:UInt32} = {shard:UInt32}' : ''
         }
       ORDER BY ts, id LIMIT {page:UInt32}`,
    {
      tenants: p.tenants,
      from: p.from,
      to: p.to,
      afterTs: p.afterTs,
      afterId: p.afterId,
      page: p.page,
      ...(sharded ? { shards: p.shard!.count, shard: p.shard!.index } : {}),
    },
  );
}

/**
 * Reads stored events of a time range in (ts, id) order, a page at a time, as normalized events:
 * for retro-hunts and replays. Stops after `max` events.
 */
export async function* scanEvents(
  store: SearchScope,
  opts: { tenants: string[]; from: number; to: number; max: number },
): AsyncGenerator<NormalizedEvent> {
  let afterTs = opts.from - 1;
  let afterId = '';
  let read = 0;
  while (read < opts.max) {
    const page = Math.min(SCAN_PAGE, opts.max - read);
    const rows = await scanPage(store, { ...opts, afterTs, afterId, page });
    for (const row of rows) yield rowToNormalized(row);
    read += rows.length;
    if (rows.length < SCAN_PAGE) return;
    const last = rows[rows.length - 1];
    afterTs = Number(last.ts_ms);
    afterId = last.id;
  }
}
