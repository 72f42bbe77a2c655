import { createHash, randomFillSync } from 'node:crypto';
import type { FieldValue } from '../lib/event.ts';

const PRINTABLE_ID = /^[\x20-\x7e]{1,128}$/;

/**
 * The `event.id` an input carried, when it is usable as ours: printable ASCII, 1 to 128 characters (numbers
 * are taken as their text). Undefined otherwise; the caller then assigns one and keeps the original aside.
 */
export function acceptedEventId(value: FieldValue | undefined): string | undefined {
  const id = typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined;
  return id !== undefined && PRINTABLE_ID.test(id) && id.trim() !== '' ? id : undefined;
}

/**
 * A deterministic id for an element of an idempotent request: the same tenant, seed (Idempotency-Key and
 * element index) and text give the same id, so a retried request stores nothing twice.
 */
export function seededEventId(tenant: string, seed: string, raw: string): string {
  return digest('seed', [tenant, seed], raw);
}

/**
 * A deterministic id for a Windows event record: re-ingesting the same log (the same computer, channel and
 * record number) gives the same ids. Computer and channel are compared without case, as Windows does.
 */
export function windowsEventId(tenant: string, computer: string, channel: string, recordId: string): string {
  return digest('winlog', [tenant, computer.toLowerCase(), channel.toLowerCase()], recordId);
}

/** SHA-256 truncated to 128 bits, as 32 lowercase hex digits, over length-prefixed parts and a final tail. */
function digest(kind: string, parts: string[], tail: string): string {
  const h = createHash('sha256');
  h.update(kind);
  // Length prefixes keep ("ab", "c") and ("a", "bc") apart; the tail needs none, it is last.
  for (const p of parts) h.update(`\n${p.length}:${p}`);
  h.update('\n');
  h.update(tail);
  return h.digest('hex').slice(0, 32);
}

const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolOffset = POOL_SIZE;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * A new time-ordered unique id: a UUIDv7 (RFC 9562) from `now` (epoch milliseconds) and 74 random bits.
 * Random bytes come from a pooled crypto buffer: one system call per 409 ids instead of one per id.
 */
export function newEventId(now: number = Date.now()): string {
  if (poolOffset + 10 > POOL_SIZE) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const r = poolOffset;
  poolOffset += 10;
  const ms = Math.max(0, Math.floor(now));
  const hi = Math.floor(ms / 0x10000);
  const lo = ms % 0x10000;
  const h = (n: number) => HEX[n & 0xff];
  return (
    h(hi >>> 24) +
    h(hi >>> 16) +
    h(hi >>> 8) +
    h(hi) +
    '-' +
    h(lo >>> 8) +
    h(lo) +
    '-' +
    h(0x70 | (pool[r] & 0x0f)) +
    h(pool[r + 1]) +
    '-' +
    h(0x80 | (pool[r + 2] & 0x3f)) +
    h(pool[r + 3]) +
    '-' +
    h(pool[r + 4]) +
    h(pool[r + 5]) +
    h(pool[r + 6]) +
    h(pool[r + 7]) +
    h(pool[r + 8]) +
    h(pool[r + 9])
  );
}
