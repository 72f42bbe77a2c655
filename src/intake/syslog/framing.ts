import { ByteQueue } from './byte-queue.ts';

/**
 * What a syslog TCP stream yields: a message, an oversize frame that was dropped, or, at the end of the
 * stream, an octet-counted frame cut short by the peer.
 */
export type Frame =
  | { kind: 'line'; line: Buffer }
  | { kind: 'oversize'; bytes: number; framing: 'octet-counting' | 'non-transparent' }
  | { kind: 'truncated'; bytes: number };

const LF = 0x0a;
const CR = 0x0d;
const NUL = 0x00;
const SP = 0x20;
const LT = 0x3c;
const ZERO = 0x30;
const ONE = 0x31;
const NINE = 0x39;
/** A longer length prefix is not a length (it would be a gigabyte or more): the frame is read as a line. */
const MAX_LENGTH_DIGITS = 9;

/** How a stream is framed (RFC 6587 names); `auto` decides from the first frame. */
export type Framing = 'auto' | 'octet-counting' | 'non-transparent';

/**
 * Splits a syslog TCP byte stream into frames (RFC 6587). With `auto` the first frame of the stream decides
 * for the whole connection: octet counting when it starts `<digits> <` (a count, then a PRI), otherwise
 * non-transparent framing, where each frame ends with LF (CRLF and NUL accepted too) and a line that starts
 * with digits and a space (`200 OK`) is just a line. Deciding per frame instead once read such lines as
 * counts and garbled the rest of the stream. Under octet counting a frame without a count is read up to
 * its LF, as a line. Frames
 * longer than `maxLineBytes` are reported once and skipped: by their declared length when octet-counted,
 * up to the next delimiter otherwise. Pull-based, so that a paused reader leaves frames in the decoder.
 */
export class FrameDecoder {
  readonly maxLineBytes: number;
  readonly #queue = new ByteQueue();
  /** Where the delimiter search of the pending non-transparent frame resumes, so no byte is scanned twice. */
  #scanFrom = 0;
  /** Bytes of an oversize octet-counted frame still to be skipped. */
  #skip = 0;
  /** Inside an oversize non-transparent frame: drop bytes up to the next delimiter. */
  #discarding = false;
  #framing: Framing;

  constructor(maxLineBytes: number, framing: Framing = 'auto') {
    this.maxLineBytes = maxLineBytes;
    this.#framing = framing;
  }

  /** Bytes held for frames not returned yet. */
  get buffered(): number {
    return this.#queue.length;
  }

  /** Adds bytes read from the stream. Bytes of a frame being skipped are dropped here, never buffered. */
  push(chunk: Buffer): void {
    // While skipping or discarding, the buffer is empty: both states are entered only after consuming it all.
    if (this.#skip > 0) {
      const n = Math.min(this.#skip, chunk.length);
      this.#skip -= n;
      chunk = chunk.subarray(n);
    }
    if (this.#discarding && chunk.length > 0) {
      const end = findDelimiter(chunk, 0);
      if (end < 0) return;
      this.#discarding = false;
      chunk = chunk.subarray(end + 1);
    }
    this.#scanFrom = Math.max(0, this.#scanFrom - this.#queue.push(chunk));
  }

  /**
   * Returns the next complete frame, or undefined until more bytes arrive. Empty frames are skipped. A
   * line may share memory with the decoder: use it before the next `push()`.
   */
  next(): Frame | undefined {
    for (;;) {
      const buf = this.#queue.bytes;
      const end = buf.length;
      const off = this.#queue.offset;
      if (off >= end) {
        this.#clear();
        return undefined;
      }
      const first = buf[off];
      if (first === LF || first === NUL) {
        this.#queue.consumeTo(off + 1);
        continue;
      }
      if (this.#framing === 'auto') {
        const decided = decideFraming(buf, off, end);
        if (decided === undefined) return undefined;
        this.#framing = decided;
      }
      if (this.#framing === 'octet-counting' && first >= ONE && first <= NINE) {
        const limit = Math.min(end, off + MAX_LENGTH_DIGITS + 1);
        let i = off + 1;
        while (i < limit && buf[i] >= ZERO && buf[i] <= NINE) i++;
        const digits = i - off;
        if (digits <= MAX_LENGTH_DIGITS && i === end) return undefined;
        if (digits <= MAX_LENGTH_DIGITS && buf[i] === SP) {
          const length = Number(buf.toString('latin1', off, i));
          const start = i + 1;
          if (length > this.maxLineBytes) {
            const available = Math.min(length, end - start);
            this.#queue.consumeTo(start + available);
            this.#skip = length - available;
            this.#scanFrom = start + available;
            return { kind: 'oversize', bytes: length, framing: 'octet-counting' };
          }
          if (end - start < length) return undefined;
          this.#queue.consumeTo(start + length);
          this.#scanFrom = start + length;
          const line = trimEol(buf.subarray(start, start + length));
          if (line.length === 0) continue;
          return { kind: 'line', line };
        }
        // Digits not followed by a space: an ordinary line that happens to start with a number.
      }
      const delimiter = findDelimiter(buf, Math.max(off, this.#scanFrom));
      if (delimiter < 0) {
        // One more byte than the limit is allowed for the CR of a CRLF still to come.
        if (end - off > this.maxLineBytes + 1) {
          this.#discarding = true;
          this.#clear();
          return { kind: 'oversize', bytes: end - off, framing: 'non-transparent' };
        }
        this.#scanFrom = end;
        return undefined;
      }
      this.#queue.consumeTo(delimiter + 1);
      this.#scanFrom = delimiter + 1;
      const line = trimEol(buf.subarray(off, delimiter));
      if (line.length > this.maxLineBytes) {
        return { kind: 'oversize', bytes: line.length, framing: 'non-transparent' };
      }
      if (line.length === 0) continue;
      return { kind: 'line', line };
    }
  }

  /**
   * Ends the stream: returns what is left after the last complete frame (call `next()` until undefined
   * first). An unterminated line is still a line; a partial octet-counted frame is reported truncated.
   */
  finish(): Frame | undefined {
    const buf = this.#queue.bytes.subarray(this.#queue.offset);
    const wasDiscarding = this.#discarding;
    this.#clear();
    this.#skip = 0;
    this.#discarding = false;
    if (buf.length === 0 || wasDiscarding) return undefined;
    const header =
      this.#framing === 'octet-counting' &&
      /^[1-9][0-9]{0,8} /.test(buf.toString('latin1', 0, Math.min(buf.length, MAX_LENGTH_DIGITS + 1)));
    if (header) return { kind: 'truncated', bytes: buf.length };
    const line = trimEol(buf);
    if (line.length > this.maxLineBytes) return { kind: 'oversize', bytes: line.length, framing: 'non-transparent' };
    return line.length === 0 ? undefined : { kind: 'line', line };
  }

  #clear(): void {
    this.#queue.clear();
    this.#scanFrom = 0;
  }
}

/** The framing the frame at `off` asks for, or undefined until enough of it has arrived to tell. */
function decideFraming(buf: Buffer, off: number, end: number): Framing | undefined {
  if (buf[off] < ONE || buf[off] > NINE) return 'non-transparent';
  const limit = Math.min(end, off + MAX_LENGTH_DIGITS + 1);
  let i = off + 1;
  while (i < limit && buf[i] >= ZERO && buf[i] <= NINE) i++;
  if (i - off > MAX_LENGTH_DIGITS) return 'non-transparent';
  if (i === end || (buf[i] === SP && i + 1 === end)) return undefined;
  return buf[i] === SP && buf[i + 1] === LT ? 'octet-counting' : 'non-transparent';
}

/** Index of the first LF or NUL at or after `from`, or -1. */
function findDelimiter(buf: Buffer, from: number): number {
  const lf = buf.indexOf(LF, from);
  // NUL is rare: look for it only before the LF, so that each byte is scanned once per frame.
  const nul = buf.subarray(from, lf < 0 ? buf.length : lf).indexOf(NUL);
  return nul >= 0 ? from + nul : lf;
}

/** Drops trailing CR, LF and NUL bytes (CRLF framing, a newline ending a datagram or an octet-counted frame). */
export function trimEol(line: Buffer): Buffer {
  let end = line.length;
  while (end > 0 && (line[end - 1] === LF || line[end - 1] === CR || line[end - 1] === NUL)) end--;
  return end === line.length ? line : line.subarray(0, end);
}
