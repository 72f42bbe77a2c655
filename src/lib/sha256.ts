import * as crypto from 'node:crypto';

/**
 * SHA-256 of a text's UTF-8 bytes, in lowercase hex. Every event is hashed at least once (its content hash on
 * every store replica, a Windows event's id at intake): Node's one-shot `hash` (20.12 and later) takes a third
 * of the CPU of a `createHash` object (0.57 against 1.7 µs for 300 bytes); older Node 20 releases use the object.
 */
export const sha256Hex: (text: string) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('sha256', text, 'hex')
    : (text) => crypto.createHash('sha256').update(text).digest('hex');
