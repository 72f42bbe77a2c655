/** Time ranges as the API reads them (`now`, `now-15m`, epoch ms, ISO 8601) and their display. */

const UNIT_MS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

/** The relative ranges offered by the time picker. */
export const RELATIVE_RANGES = [
  { from: 'now-15m', label: 'Last 15 minutes', short: '15m' },
  { from: 'now-1h', label: 'Last hour', short: '1h' },
  { from: 'now-24h', label: 'Last 24 hours', short: '24h' },
  { from: 'now-7d', label: 'Last 7 days', short: '7d' },
  { from: 'now-30d', label: 'Last 30 days', short: '30d' },
] as const;

/** A range as written in the URL and sent to the API. */
export interface TimeRange {
  from: string;
  to: string;
}

export const DEFAULT_RANGE: TimeRange = { from: 'now-24h', to: 'now' };

/** Reads a time the way the server does; NaN when it cannot. */
export function parseTime(value: string, now = Date.now()): number {
  const v = value.trim();
  const rel = /^now(?:([+-])(\d+)([smhdw]))?$/.exec(v);
  if (rel) return rel[1] ? now + (rel[1] === '-' ? -1 : 1) * Number(rel[2]) * UNIT_MS[rel[3]] : now;
  if (/^\d{10,16}$/.test(v)) return Number(v);
  return Date.parse(v);
}

/** Resolves a range to epoch ms once, so every request of one search covers the same window. */
export function resolveRange(range: TimeRange, now = Date.now()): { fromMs: number; toMs: number } {
  // `to=now` includes events of this very millisecond, as the server's default does.
  const toMs = range.to.trim() === 'now' ? now + 1 : parseTime(range.to, now);
  return { fromMs: parseTime(range.from, now), toMs };
}

/** Describes a range for people: "Last hour", or the two ends. */
export function describeRange(range: TimeRange, utc: boolean): string {
  if (range.to === 'now') {
    const known = RELATIVE_RANGES.find((r) => r.from === range.from);
    if (known) return known.label;
    const m = /^now-(\d+)([smhdw])$/.exec(range.from);
    if (m) return `Last ${m[1]}${m[2]}`;
  }
  const f = parseTime(range.from);
  const t = parseTime(range.to);
  if (Number.isNaN(f) || Number.isNaN(t)) return `${range.from} to ${range.to}`;
  return `${formatTime(f, utc)} to ${formatTime(t, utc)}`;
}

/** The spans a histogram may use, smallest first, as the query language writes them. */
export const SPANS: { text: string; ms: number }[] = [
  '1s',
  '2s',
  '5s',
  '10s',
  '15s',
  '30s',
  '1m',
  '2m',
  '5m',
  '10m',
  '15m',
  '30m',
  '1h',
  '2h',
  '3h',
  '6h',
  '12h',
  '1d',
  '2d',
  '7d',
].map((text) => ({ text, ms: Number(text.slice(0, -1)) * UNIT_MS[text.slice(-1)] }));

/** The smallest span giving at most `maxBuckets` buckets over the range. */
export function chooseSpan(rangeMs: number, maxBuckets = 100): { text: string; ms: number } {
  return SPANS.find((s) => rangeMs / s.ms <= maxBuckets) ?? SPANS[SPANS.length - 1];
}

/** The engine prints times as `YYYY-MM-DD hh:mm:ss.sss` in UTC; ISO strings pass through. */
export function parseEngineTime(value: unknown): number {
  if (typeof value === 'number') return value;
  const s = String(value);
  return Date.parse(s.includes('T') ? s : `${s.replace(' ', 'T')}Z`);
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** `2026-11-22 10:04:05.123` in local time or UTC. */
export function formatTime(ms: number, utc: boolean, withMs = false): string {
  if (!Number.isFinite(ms)) return '';
  const d = new Date(ms);
  const [y, mo, da, h, mi, s, milli] = utc
    ? [
        d.getUTCFullYear(),
        d.getUTCMonth() + 1,
        d.getUTCDate(),
        d.getUTCHours(),
        d.getUTCMinutes(),
        d.getUTCSeconds(),
        d.getUTCMilliseconds(),
      ]
    : [
        d.getFullYear(),
        d.getMonth() + 1,
        d.getDate(),
        d.getHours(),
        d.getMinutes(),
        d.getSeconds(),
        d.getMilliseconds(),
      ];
  return `${y}-${pad(mo)}-${pad(da)} ${pad(h)}:${pad(mi)}:${pad(s)}${withMs ? `.${pad(milli, 3)}` : ''}`;
}

/** The value of a `datetime-local` input for a time (local, or UTC when `utc`). */
export function toInputValue(ms: number, utc: boolean): string {
  return Number.isFinite(ms) ? formatTime(ms, utc).replace(' ', 'T') : '';
}

/** Reads a `datetime-local` input value as local time or UTC. */
export function fromInputValue(value: string, utc: boolean): number {
  if (!value) return Number.NaN;
  return utc ? Date.parse(`${value}Z`) : new Date(value).getTime();
}

/** Short relative age: "12 s ago", "5 min ago". */
export function age(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
