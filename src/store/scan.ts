import type { NormalizedEvent } from '../lib/event.ts';
import type { SearchScope } from './index.ts';
import { type EventRow, rowToNormalized } from './rows.ts';
import { EVENTS_TABLE } from './schema.ts';

const PAGE = 5000;

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
    const rows = await store.query<EventRow & { ts_ms: string }>(
      `SELECT *, toUnixTimestamp64Milli(ts) AS ts_ms FROM ${EVENTS_TABLE} FINAL
       WHERE tenant IN {tenants:Array(String)}
         AND ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})
         AND (ts, id) > (fromUnixTimestamp64Milli({afterTs:Int64}), {afterId:String})
       ORDER BY ts, id LIMIT {page:UInt32}`,
      {
        tenants: opts.tenants,
        from: opts.from,
        to: opts.to,
        afterTs,
        afterId,
        page: Math.min(PAGE, opts.max - read),
      },
    );
    for (const row of rows) yield rowToNormalized(row);
    read += rows.length;
    if (rows.length < PAGE) return;
    const last = rows[rows.length - 1];
    afterTs = Number(last.ts_ms);
    afterId = last.id;
  }
}
