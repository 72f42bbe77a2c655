import { randomFillSync } from 'node:crypto';
import type { FieldValue } from '../lib/event.ts';
import { sha256Hex } from '../lib/sha256.ts';

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

/**
 * SHA-256 truncated to 128 bits, as 32 lowercase hex digits, over length-prefixed parts and a final tail: one
 * text hashed at once (a hash object and five updates took about three times the CPU; the bytes are the same).
 */
function digest(kind: string, parts: string[], tail: string): string {
  let text = kind;
  // Length prefixes keep ("ab", "c") and ("a", "bc") apart; the tail needs none, it is last.
  for (const p of parts) text += `\n${p.length}:${p}`;
  return sha256Hex(`${text}\n${tail}`).slice(0, 32);
}

const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolOffset = POOL_SIZE;
/** Hex digits as bytes, and the id's characters, written in place: one string made, not twenty joined. */
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
const idText = Buffer.allocUnsafe(36);

function putHex(at: number, byte: number): void {
  idText[at] = HEX_DIGITS[(byte >>> 4) & 0x0f];
  idText[at + 1] = HEX_DIGITS[byte & 0x0f];
}

/**
 * A new time-ordered unique id: a UUIDv7 (RFC 9562) from `now` (epoch milliseconds) and 74 random bits.
 * Random bytes come from a pooled crypto buffer: one system call per 409 ids instead of one per id. The text
 * is written into a reused buffer and read once (0.16 against 0.7 µs for twenty joined pieces, which V8 kept
 * as a chain of 20 strings until the id was first read).
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
  putHex(0, hi >>> 24);
  putHex(2, hi >>> 16);
  putHex(4, hi >>> 8);
  putHex(6, hi);
  idText[8] = 0x2d;
  putHex(9, lo >>> 8);
  putHex(11, lo);
  idText[13] = 0x2d;
  putHex(14, 0x70 | (pool[r] & 0x0f));
  putHex(16, pool[r + 1]);
  idText[18] = 0x2d;
  putHex(19, 0x80 | (pool[r + 2] & 0x3f));
  putHex(21, pool[r + 3]);
  idText[23] = 0x2d;
  for (let i = 0; i < 6; i++) putHex(24 + 2 * i, pool[r + 4 + i]);
  return idText.toString('latin1', 0, 36);
}
