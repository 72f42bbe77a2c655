import * as zlib from 'node:zlib';

/**
 * The on-disk record of the spool: `u32 length | u32 crc32(payload) | payload`, little-endian, where the
 * payload is `u8 version | f64 createdAt | u16 len + subject | u16 len + id | u16 len + encoding | u32 events |
 * body`. A record whose length runs past the end of its file or whose checksum does not match is a torn
 * write: it was never acknowledged, and the file ends before it.
 */
export const HEADER_BYTES = 8;
const VERSION = 1;

/** One spooled batch: a JetStream message ready to be forwarded as it was first meant to be published. */
export interface SpoolEntry {
  /** The message's `Nats-Msg-Id`: forwarding it again after a crash is de-duplicated by the stream. */
  id: string;
  subject: string;
  /** How the body is encoded (the codec's header value). */
  encoding: string;
  /** Events in the body, for accounting. */
  events: number;
  body: Uint8Array;
}

/** A spooled entry as read back, with the time it was appended (epoch ms). */
export interface SpooledEntry extends SpoolEntry {
  createdAt: number;
}

// zlib.crc32 exists from Node 20.15; the table is the fallback for older 20.x.
const crcTable = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE) of `data`. */
export function crc32(data: Uint8Array): number {
  const native = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;
  if (native) return native(data);
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Encodes an entry as one framed record. */
export function encodeRecord(entry: SpoolEntry, createdAt: number): Buffer {
  const subject = Buffer.from(entry.subject);
  const id = Buffer.from(entry.id);
  const encoding = Buffer.from(entry.encoding);
  const payloadLength = 1 + 8 + 2 + subject.length + 2 + id.length + 2 + encoding.length + 4 + entry.body.length;
  const buf = Buffer.allocUnsafe(HEADER_BYTES + payloadLength);
  let o = HEADER_BYTES;
  o = buf.writeUInt8(VERSION, o);
  o = buf.writeDoubleLE(createdAt, o);
  for (const part of [subject, id, encoding]) {
    o = buf.writeUInt16LE(part.length, o);
    o += part.copy(buf, o);
  }
  o = buf.writeUInt32LE(entry.events, o);
  buf.set(entry.body, o);
  buf.writeUInt32LE(payloadLength, 0);
  buf.writeUInt32LE(crc32(buf.subarray(HEADER_BYTES)), 4);
  return buf;
}

/** Reads the payload length and checksum of a record header. */
export function readHeader(header: Uint8Array): { length: number; crc: number } {
  const view = Buffer.from(header.buffer, header.byteOffset, HEADER_BYTES);
  return { length: view.readUInt32LE(0), crc: view.readUInt32LE(4) };
}

/** Decodes a payload whose checksum was verified; throws on a layout it does not know. */
export function decodePayload(payload: Buffer): SpooledEntry {
  let o = 0;
  const version = payload.readUInt8(o++);
  if (version !== VERSION) throw new Error(`unknown spool record version ${version}`);
  const createdAt = payload.readDoubleLE(o);
  o += 8;
  const strings: string[] = [];
  for (let i = 0; i < 3; i++) {
    const len = payload.readUInt16LE(o);
    o += 2;
    strings.push(payload.toString('utf8', o, o + len));
    o += len;
  }
  const events = payload.readUInt32LE(o);
  o += 4;
  return {
    subject: strings[0],
    id: strings[1],
    encoding: strings[2],
    events,
    createdAt,
    body: payload.subarray(o),
  };
}
