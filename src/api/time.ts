import { InputError } from '../lib/errors.ts';

const UNIT_MS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

/** The farthest time from the epoch a Date holds, in ms (±100,000,000 days). */
const MAX_TIME_MS = 8.64e15;

function readTime(value: string, now: number): number {
  const v = value.trim();
  const rel = /^now(?:([+-])(\d+)([smhdw]))?$/.exec(v);
  if (rel) return rel[1] ? now + (rel[1] === '-' ? -1 : 1) * Number(rel[2]) * UNIT_MS[rel[3]] : now;
  if (/^\d{10,16}$/.test(v)) return Number(v);
  return Date.parse(v);
}

/**
 * Parses a time parameter: `now`, `now-15m` (s, m, h, d, w), epoch milliseconds, or an ISO 8601 date.
 * `name` is the parameter, for the error message.
 */
export function parseTimeParam(value: string, name: string, now = Date.now()): number {
  const t = readTime(value, now);
  // Past what a Date holds (year 275760), a time is no time, and past 2^53 the store's driver refuses it
  // (GET /api/v1/alerts?to=9007199254740993 answered 500). Written so NaN and ±Infinity (`now+<400 digits>d`)
  // fail it too.
  if (!(Math.abs(t) <= MAX_TIME_MS)) {
    if (Number.isNaN(t)) {
      throw new InputError('bad_time', `${name}: cannot read "${value}" as a time`, {
        parameter: name,
        hint: 'use now, now-15m, epoch milliseconds or an ISO 8601 date such as 2026-11-22T10:00:00Z',
      });
    }
    const shown = value.length > 32 ? `${value.slice(0, 32)}...` : value;
    throw new InputError('bad_time', `${name}: ${shown} is out of range (at most ${MAX_TIME_MS} ms from 1970)`, {
      parameter: name,
    });
  }
  return t;
}
