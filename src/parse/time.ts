import { MAX_EVENT_TIME_MS } from '../lib/event.ts';

/** Latest instant accepted as an event time (2149-06-06, see MAX_EVENT_TIME_MS). */
const MAX_TIME_MS = MAX_EVENT_TIME_MS;

const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(?:([Zz])|([+-])(\d{2}):?(\d{2})?|\s*UTC)?$/;
const NUMERIC = /^-?\d+(?:\.\d+)?$/;
const EXPLICIT_ZONE = /(?:\bGMT|\bUTC|\bZ|[+-]\d{2}:?\d{2})$/;

/**
 * Reads an event time as epoch milliseconds, or undefined when it cannot be read.
 *
 * ISO 8601 / RFC 3339 text (`T` or space between date and time); a time without a zone is taken as UTC (the
 * server's own zone must not leak into stored times). Numbers, and numeric text, are epoch seconds,
 * milliseconds, microseconds or nanoseconds, told apart by magnitude. Other text is accepted only when it
 * names its zone (RFC 2822 and similar).
 */
export function parseTime(value: unknown): number | undefined {
  if (typeof value === 'number') return fromEpoch(value);
  if (typeof value !== 'string') return undefined;
  const s = value.trim();
  if (s === '') return undefined;
  const m = ISO_TIME.exec(s);
  if (m) return fromIsoParts(m);
  if (NUMERIC.test(s)) return fromEpoch(Number(s));
  if (!EXPLICIT_ZONE.test(s)) return undefined;
  const t = Date.parse(s);
  return Number.isFinite(t) && t >= 0 && t <= MAX_TIME_MS ? t : undefined;
}

function fromIsoParts(m: RegExpExecArray): number | undefined {
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = m[4] === undefined ? 0 : Number(m[4]);
  const minute = m[5] === undefined ? 0 : Number(m[5]);
  // A leap second (60) is folded onto the next second, as every stored clock does.
  const second = m[6] === undefined ? 0 : Number(m[6]);
  const ms = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return undefined;
  const local = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  if (new Date(local).getUTCDate() !== day && second !== 60) return undefined;
  let offset = 0;
  if (m[9] !== undefined) {
    const oh = Number(m[10]);
    const om = m[11] === undefined ? 0 : Number(m[11]);
    if (oh > 23 || om > 59) return undefined;
    offset = (m[9] === '-' ? -1 : 1) * (oh * 60 + om) * 60000;
  }
  const t = local - offset;
  return t >= 0 && t <= MAX_TIME_MS ? t : undefined;
}

/** Epoch seconds below this (March 1973) are more likely a duration or a counter than a time. */
const MIN_EPOCH_SECONDS = 1e8;

function fromEpoch(n: number): number | undefined {
  if (!Number.isFinite(n) || n < MIN_EPOCH_SECONDS) return undefined;
  let ms: number;
  if (n < 1e11) ms = n * 1000;
  else if (n < 1e14) ms = n;
  else if (n < 1e17) ms = n / 1000;
  else ms = n / 1e6;
  ms = Math.floor(ms);
  return ms <= MAX_TIME_MS ? ms : undefined;
}

const MONTHS: Readonly<Record<string, number>> = {
  jan: 0,
  feb: 1,
  mar: 2,
  apr: 3,
  may: 4,
  jun: 5,
  jul: 6,
  aug: 7,
  sep: 8,
  oct: 9,
  nov: 10,
  dec: 11,
};

/** One day, the furthest an RFC 3164 time may lie ahead of its receipt before it is read as last year's. */
const FUTURE_TOLERANCE_MS = 86400000;

/**
 * Reads an RFC 3164 time (`Mmm dd hh:mm:ss`, no year, no zone) as wall-clock time in `zone` (an IANA name;
 * UTC when undefined) in the year of receipt, or of the year before when that would put it more than a day
 * after receipt (a December message read in January). `year` is given when the sender included one
 * (`Mmm dd yyyy hh:mm:ss`).
 */
export function bsdTime(
  month: string,
  day: number,
  hour: number,
  minute: number,
  second: number,
  fraction: string | undefined,
  year: number | undefined,
  receivedAt: number,
  zone?: string,
): number | undefined {
  const mon = MONTHS[month.toLowerCase()];
  if (mon === undefined || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return undefined;
  const ms = fraction === undefined ? 0 : Number(fraction.slice(0, 3).padEnd(3, '0'));
  const at = (y: number) => zonedTime(Date.UTC(y, mon, day, hour, minute, second, ms), zone);
  if (year !== undefined) return at(year);
  const receiptYear = new Date(receivedAt).getUTCFullYear();
  const t = at(receiptYear);
  return t > receivedAt + FUTURE_TOLERANCE_MS ? at(receiptYear - 1) : t;
}

/** Whether `zone` is a time zone name this runtime knows (an IANA name such as `America/New_York`, or `UTC`). */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/**
 * The instant at which the clocks of `zone` showed `wall` (a wall-clock time written as if it were UTC
 * epoch milliseconds). In the hour skipped by a change to summer time the offset from before the change
 * applies (02:30 on a spring-forward night is 03:30 summer time); in the hour repeated in autumn, the
 * first (summer time) reading is taken, as `date -d` and java.time do.
 */
export function zonedTime(wall: number, zone: string | undefined): number {
  if (zone === undefined || zone === 'UTC') return wall;
  const before = offsetAt(wall - 86400000, zone);
  const after = offsetAt(wall + 86400000, zone);
  // The offsets a day apart bracket any single transition; the one from before it is tried first.
  for (const offset of [before, after]) {
    const t = wall - offset;
    if (offsetAt(t, zone) === offset) return t;
  }
  return wall - before;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
/** Offsets by zone and quarter hour: every transition of today's rules falls on a quarter hour. */
const offsets = new Map<string, number>();
const MAX_CACHED_OFFSETS = 100000;
const QUARTER_HOUR_MS = 900000;

/** The offset of `zone` from UTC at instant `t`, in milliseconds (New York in winter: -18000000). */
function offsetAt(t: number, zone: string): number {
  const key = `${zone} ${Math.floor(t / QUARTER_HOUR_MS)}`;
  const cached = offsets.get(key);
  if (cached !== undefined) return cached;
  let f = formatters.get(zone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(zone, f);
  }
  const parts: Record<string, number> = {};
  for (const p of f.formatToParts(t)) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  const base = t - (((t % 1000) + 1000) % 1000);
  const wall = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second);
  const offset = wall - base;
  if (offsets.size >= MAX_CACHED_OFFSETS) offsets.clear();
  offsets.set(key, offset);
  return offset;
}
