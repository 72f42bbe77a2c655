import type { Value } from './ast.ts';

const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const RELATIVE = /^now(?:([+-])(\d{1,9})([smhdw]))?$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$/i;
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const DAY_MS = 86_400_000;

/**
 * The largest magnitude of a number a query compares: parameters carry numbers to the engine exactly only
 * within ±2^53 (the driver refuses to send larger integers rather than round them).
 */
export const MAX_QUERY_NUMBER = Number.MAX_SAFE_INTEGER;

/** Whether a value is spelled as a number (`42`, `-1.5`, `1e3`, `1e400`), whatever its magnitude. */
export function isNumberText(text: string): boolean {
  return NUMBER.test(text);
}

/** The number a value spells (`42`, `-1.5`, `1e3`), or undefined. */
export function parseNumber(text: string): number | undefined {
  if (!NUMBER.test(text)) return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * A time as epoch milliseconds, with how long the written value lasts (a date alone is a whole day):
 * `now`, `now-15m` (units s m h d w), an ISO 8601 date or date-time (UTC when it names no offset), or
 * epoch milliseconds. Undefined when the text is none of these.
 */
export function parseTime(text: string, now: number): { ms: number; durationMs: number } | undefined {
  const rel = RELATIVE.exec(text);
  if (rel !== null) {
    const delta = rel[1] === undefined ? 0 : Number(rel[2]) * UNIT_MS[rel[3] as keyof typeof UNIT_MS];
    return { ms: rel[1] === '-' ? now - delta : now + delta, durationMs: 1 };
  }
  if (/^\d{1,16}$/.test(text)) return { ms: Number(text), durationMs: 1 };
  const date = DATE.exec(text);
  if (date !== null) {
    const ms = Date.UTC(Number(date[1]), Number(date[2]) - 1, Number(date[3]));
    return validDate(ms, text.slice(0, 10)) ? { ms, durationMs: DAY_MS } : undefined;
  }
  const dt = DATE_TIME.exec(text);
  if (dt === null) return undefined;
  const seconds = dt[2].length === 5 ? `${dt[2]}:00` : dt[2];
  const millis = (dt[3] ?? '').padEnd(3, '0').slice(0, 3);
  const zone = dt[4] === undefined || dt[4].toUpperCase() === 'Z' ? 'Z' : dt[4];
  const ms = Date.parse(
    `${dt[1]}T${seconds}.${millis}${zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone}`,
  );
  return validDate(ms, dt[1]) ? { ms, durationMs: 1 } : undefined;
}

/** Date.parse rolls 2024-02-31 over to March; a real date formats back to the same day. */
function validDate(ms: number, day: string): boolean {
  if (!Number.isFinite(ms)) return false;
  const [y, m, d] = day.split('-').map(Number);
  const probe = new Date(Date.UTC(y, m - 1, d));
  return probe.getUTCFullYear() === y && probe.getUTCMonth() === m - 1 && probe.getUTCDate() === d;
}

/** A ClickHouse LIKE pattern for a wildcard value: `*` -> `%`, `?` -> `_`, literal `%`, `_` and `\` escaped. */
export function likePattern(value: Value, anywhere = false): string {
  const parts = value.parts ?? [{ text: value.text }];
  const body = parts
    .map((p) => ('wildcard' in p ? (p.wildcard === '*' ? '%' : '_') : p.text.replace(/[\\%_]/g, (c) => `\\${c}`)))
    .join('');
  return anywhere ? `%${body}%` : body;
}

/** The most `hasToken` clauses one full-text word adds. */
export const MAX_INDEX_TOKENS = 8;

// ClickHouse's token functions split on ASCII non-alphanumerics; bytes >= 0x80 belong to tokens.
const TOKEN = /[A-Za-z0-9\u0080-\uffff]+/g;

/**
 * The tokens of a full-text word that `hasToken(lower(raw), t)` can require: pure ASCII ones (ClickHouse's
 * `lower` leaves other letters alone, so a non-ASCII token could miss a differently cased match), lowered.
 * With `bounded`, only tokens with a separator on both sides inside the text count (for wildcard words,
 * where a token at an edge may continue in the event).
 */
export function fullTextTokens(text: string, bounded = false): string[] {
  const out = new Set<string>();
  for (const m of text.matchAll(TOKEN)) {
    const token = m[0];
    const start = m.index ?? 0;
    if (bounded && (start === 0 || start + token.length === text.length)) continue;
    if (/^[\x00-\x7f]+$/.test(token)) out.add(token.toLowerCase());
  }
  // The exact clause decides the match; a few of the longest (rarest) tokens are enough for the index.
  return [...out].sort((a, b) => b.length - a.length).slice(0, MAX_INDEX_TOKENS);
}
