/**
 * What `vigil dr compare` reads from each site: per hour of event time, how many distinct events and alerts
 * the site holds and a hash of their ids (XOR of a 64-bit hash of each id: independent of order, equal
 * exactly when the sets are, but for a 2^-64 chance), and, for an hour that differs, the ids themselves.
 */
import { VigilError } from '../lib/errors.ts';
import type { EventStore } from '../store/index.ts';

/** The kinds of records compared. */
export const COMPARED = ['events', 'alerts'] as const;
export type Compared = (typeof COMPARED)[number];

/** One hour of one kind at one site. */
export interface HourDigest {
  count: number;
  /** Hex XOR of sipHash64 of every distinct id; '0' for none. */
  hash: string;
}

/** A site's answer to GET /admin/dr/summary. */
export interface SiteSummary {
  site: string;
  from: string;
  to: string;
  /** Hours with anything in them, by start (ISO); an hour missing here holds nothing. */
  hours: Record<string, Record<Compared, HourDigest>>;
}

/** Longest range one summary covers (a month of hours). */
export const MAX_SUMMARY_HOURS = 31 * 24;
/** Most ids one hour answers: past it the answer says truncated. */
export const MAX_IDS = 100_000;

const HOUR_MS = 3_600_000;

/** A bad range: 400 with what is wrong. */
export class CompareRangeError extends VigilError {
  constructor(message: string) {
    super('bad_range', message, { status: 400 });
    this.name = 'CompareRangeError';
  }
}

/** Reads `from`/`to` (ISO times or epoch ms) into hour bounds; refuses an empty, reversed or too long range. */
export function hourRange(from: unknown, to: unknown): { from: number; to: number } {
  const parse = (v: unknown, name: string) => {
    if (typeof v !== 'string' || v === '') throw new CompareRangeError(`${name} is required (an ISO time)`);
    const t = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
    if (!Number.isFinite(t)) throw new CompareRangeError(`${name} is not a time: ${v.slice(0, 40)}`);
    return t;
  };
  const f = Math.floor(parse(from, 'from') / HOUR_MS) * HOUR_MS;
  const t = Math.ceil(parse(to, 'to') / HOUR_MS) * HOUR_MS;
  if (t <= f) throw new CompareRangeError('to must be after from');
  if ((t - f) / HOUR_MS > MAX_SUMMARY_HOURS) {
    throw new CompareRangeError(`the range covers more than ${MAX_SUMMARY_HOURS} hours: compare it in parts`);
  }
  return { from: f, to: t };
}

const source = (kind: Compared) => (kind === 'events' ? 'vigil.events' : 'vigil.alerts FINAL');

/** The per-hour digests of both kinds at this site between hour bounds. */
export async function summarize(
  store: EventStore,
  site: string,
  range: { from: number; to: number },
): Promise<SiteSummary> {
  const hours: SiteSummary['hours'] = {};
  for (const kind of COMPARED) {
    // An event may be stored as more than one row (ADR 0002: one per id and content): ids are made distinct.
    const rows = await store.query<{ h: string; n: string; x: string }>(
      `SELECT toUnixTimestamp(toStartOfHour(t)) * 1000 AS h, count() AS n, lower(hex(groupBitXor(sipHash64(id)))) AS x
       FROM (SELECT id, min(ts) AS t FROM ${source(kind)}
             WHERE ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})
             GROUP BY id)
       GROUP BY h ORDER BY h`,
      { from: range.from, to: range.to },
    );
    for (const r of rows) {
      const hour = new Date(Number(r.h)).toISOString();
      hours[hour] ??= { events: { count: 0, hash: '0' }, alerts: { count: 0, hash: '0' } };
      hours[hour][kind] = { count: Number(r.n), hash: r.x.replace(/^0+(?=.)/, '') };
    }
  }
  return { site, from: new Date(range.from).toISOString(), to: new Date(range.to).toISOString(), hours };
}

/** The ids of one kind in one hour at this site (sorted; at most MAX_IDS). */
export async function idsOfHour(
  store: EventStore,
  kind: Compared,
  hour: number,
): Promise<{ ids: string[]; truncated: boolean }> {
  const start = Math.floor(hour / HOUR_MS) * HOUR_MS;
  const rows = await store.query<{ id: string }>(
    `SELECT DISTINCT id FROM ${source(kind)}
     WHERE ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})
     ORDER BY id LIMIT {limit:UInt32}`,
    { from: start, to: start + HOUR_MS, limit: MAX_IDS + 1 },
  );
  return { ids: rows.slice(0, MAX_IDS).map((r) => r.id), truncated: rows.length > MAX_IDS };
}

/** One hour compared between the two sites. */
export interface HourComparison {
  hour: string;
  kind: Compared;
  counts: Record<string, number>;
  equal: boolean;
}

/** The hours whose digests differ between two summaries (a kind present at one site only differs too). */
export function differingHours(a: SiteSummary, b: SiteSummary): HourComparison[] {
  const out: HourComparison[] = [];
  const hours = [...new Set([...Object.keys(a.hours), ...Object.keys(b.hours)])].sort();
  const none: HourDigest = { count: 0, hash: '0' };
  for (const hour of hours) {
    for (const kind of COMPARED) {
      const x = a.hours[hour]?.[kind] ?? none;
      const y = b.hours[hour]?.[kind] ?? none;
      out.push({
        hour,
        kind,
        counts: { [a.site]: x.count, [b.site]: y.count },
        equal: x.count === y.count && x.hash === y.hash,
      });
    }
  }
  return out;
}
