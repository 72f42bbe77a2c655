import { type FieldValue, type NormalizedEvent, storedTime } from '../lib/event.ts';
import { createTurnTaker, TURN_BUDGET_MS } from '../lib/turns.ts';
import { OMITTED_MARK, omittable, omitted } from './original-fields.ts';
import { storedValue, stringOr } from './rows.ts';
import { contentHash } from './schema.ts';

/**
 * The events table's written columns in the engine's RowBinary format: the order and types of a row here,
 * as the `structure` of the engine's `file()` table function. The types are the table's own, so the
 * engine converts nothing (LowCardinality is written as its inner type); store.test.ts checks them against
 * the table the DDL makes.
 */
export const ROW_BINARY_STRUCTURE: readonly (readonly [name: string, type: string])[] = [
  ['ts', "DateTime64(3, 'UTC')"],
  ['ingested', "DateTime64(3, 'UTC')"],
  ['id', 'String'],
  ['content_hash', 'String'],
  ['tenant', 'LowCardinality(String)'],
  ['source', 'LowCardinality(String)'],
  ['layout', 'LowCardinality(String)'],
  ['host', 'LowCardinality(String)'],
  ['message', 'String'],
  ['raw', 'String'],
  ['parse_error', 'String'],
  ['fields', 'Map(LowCardinality(String), String)'],
];

const LOGSOURCE_KEYS = ['product', 'service', 'category'] as const;
const LOGSOURCE_FIELDS = LOGSOURCE_KEYS.map((k) => `vigil.logsource.${k}`);

/**
 * Buffer's own UTF-8 writer, without `write`'s argument checks: those took more CPU than the copy itself
 * (a cpu profile of HTTP ingest: `write` 4.5 s self against `utf8Write` 3.5 s; rows built in 35 µs an event
 * through `write`, 21 µs through this). Node has had it on every Buffer since its first versions; the space
 * is always there (RowBinaryWriter.ensure).
 */
type Utf8Writer = Buffer & { utf8Write(text: string, offset: number): number };

/** A growing output buffer with the few RowBinary encodings the events table needs. */
class RowBinaryWriter {
  buf: Utf8Writer;
  at = 0;

  /** Writes into `scratch` when given (grown like any other buffer), else into a new buffer of `size` bytes. */
  constructor(size: number, scratch?: Buffer) {
    this.buf = (scratch ?? Buffer.allocUnsafe(Math.max(1024, size))) as Utf8Writer;
  }

  ensure(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n)) as Utf8Writer;
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  varint(n: number): void {
    this.ensure(10);
    const b = this.buf;
    while (n >= 0x80) {
      b[this.at++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    b[this.at++] = n;
  }

  /** Milliseconds since the epoch as DateTime64(3): an Int64 of ticks, little-endian. */
  millis(ms: number): void {
    this.ensure(8);
    const t = Math.trunc(ms);
    const hi = Math.floor(t / 2 ** 32);
    this.buf.writeUInt32LE(t - hi * 2 ** 32, this.at);
    this.buf.writeInt32LE(hi, this.at + 4);
    this.at += 8;
  }

  /** A String: its UTF-8 length as a varint, then the bytes. */
  string(s: string): void {
    // UTF-8 takes 1 to 3 bytes per UTF-16 unit (a surrogate pair: 4 bytes for 2 units).
    const most = s.length * 3;
    this.ensure(most + 10);
    if (s.length <= SHORT_STRING && this.ascii(s)) return;
    const width = varintBytes(s.length);
    if (width === varintBytes(most)) {
      // The length's varint has this width whatever the text is (1 byte below 43 units, 2 from 128 to 5,461):
      // written after the text, without measuring it first. Measuring was a second pass over every raw text.
      const at = this.at;
      const n = this.buf.utf8Write(s, at + width);
      let v = n;
      for (let b = 0; b < width - 1; b++) {
        this.buf[at + b] = (v & 0x7f) | 0x80;
        v = Math.floor(v / 128);
      }
      this.buf[at + width - 1] = v;
      this.at = at + width + n;
      return;
    }
    // The engine reads only the shortest varint (a padded one misreads the row), so the length comes first.
    this.varint(Buffer.byteLength(s));
    this.at += this.buf.utf8Write(s, this.at);
  }

  /**
   * Writes a short string (room ensured) byte by byte when it is ASCII, as most field names and values are,
   * and answers whether it did: for a few bytes, the call into Node's UTF-8 writer costs more than the copy.
   */
  ascii(s: string): boolean {
    const b = this.buf;
    const start = this.at;
    let at = start + 1;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return false;
      b[at++] = c;
    }
    b[start] = s.length;
    this.at = at;
    return true;
  }

  /** Moves `[from, at)` forward by `by` bytes (room for a longer varint before it). */
  shift(from: number, by: number): void {
    this.ensure(by);
    this.buf.copyWithin(from + by, from, this.at);
    this.at += by;
  }
}

/** Strings up to this many UTF-16 units are tried as ASCII first (see RowBinaryWriter.ascii); below 128. */
const SHORT_STRING = 32;

function varintBytes(n: number): number {
  let bytes = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    bytes++;
  }
  return bytes;
}

/**
 * Serializes events as RowBinary rows of ROW_BINARY_STRUCTURE: the same values as the JSONEachRow rows of
 * rows.ts (host and message as columns and not in the map, values as stored strings, the logsource as
 * `vigil.logsource.*` keys), without any text format to escape or parse. Measured on 20,000 Mordor events
 * (CPU per event, best of 5): 17 µs to build against 45 µs for JSONEachRow, and the engine read them into
 * the events table in 39 µs against 120 µs (13 against 67 µs into a table that keeps nothing).
 */
export function eventsToRowBinary(events: readonly NormalizedEvent[]): Buffer {
  const w = new RowBinaryWriter(estimate(events, 0, events.length));
  writeRows(w, events, 0, events.length);
  return w.buf.subarray(0, w.at);
}

/**
 * Events' rows with where each ends: `rows.subarray(ends[i - 1] ?? 0, ends[i])` is the row of `events[i]`, the
 * bytes `eventsToRowBinary([events[i]])` gives. What a thread other than the store's builds (see
 * {@link attachRows}).
 */
export function eventsToRowBinaryWithEnds(events: readonly NormalizedEvent[]): { rows: Buffer; ends: Uint32Array } {
  const w = new RowBinaryWriter(estimate(events, 0, events.length));
  const ends = new Uint32Array(events.length);
  for (let i = 0; i < events.length; i++) {
    writeRows(w, events, i, i + 1);
    ends[i] = w.at;
  }
  return { rows: w.buf.subarray(0, w.at), ends };
}

/**
 * Rows built for events before they reached the store (the HTTP intake's threads build them beside the
 * normalization): the store writes these bytes instead of serializing the event again. Weak, so a row lives
 * exactly as long as its event.
 */
const builtRows = new WeakMap<NormalizedEvent, Buffer>();

/**
 * Remembers the rows of `events` (as {@link eventsToRowBinaryWithEnds} gave them) for the store's write. The
 * caller vouches that the events are the ones the rows were built from, unchanged.
 */
export function attachRows(events: readonly NormalizedEvent[], rows: Buffer, ends: Uint32Array): void {
  if (ends.length !== events.length || (ends.length > 0 && ends[ends.length - 1] !== rows.length)) {
    throw new Error(`rows of ${ends.length} events (${rows.length} bytes) given for ${events.length} events`);
  }
  let start = 0;
  for (let i = 0; i < events.length; i++) {
    builtRows.set(events[i], rows.subarray(start, ends[i]));
    start = ends[i];
  }
}

/**
 * The rows of `events` in one buffer: the rows attached to them where every event has one (copied together),
 * otherwise built here, letting the event loop turn every `budgetMs` (see {@link eventsToRowBinarySliced}).
 * With `buffers`, in a buffer taken from them, to be handed back once the rows are written.
 */
export async function rowsOf(
  events: readonly NormalizedEvent[],
  budgetMs: number = TURN_BUDGET_MS,
  buffers?: RowBuffers,
): Promise<Buffer> {
  const parts: Buffer[] = new Array(events.length);
  let bytes = 0;
  for (let i = 0; i < events.length; i++) {
    const row = builtRows.get(events[i]);
    if (row === undefined) return eventsToRowBinarySliced(events, budgetMs, buffers?.take());
    parts[i] = row;
    bytes += row.length;
  }
  const scratch = buffers?.take();
  if (scratch === undefined || scratch.length < bytes) return Buffer.concat(parts, bytes);
  let at = 0;
  for (const part of parts) at += part.copy(scratch, at);
  return scratch.subarray(0, at);
}

/** Most buffers a {@link RowBuffers} keeps for reuse: two INSERT chunks in flight, one built while the other is written. */
const ROW_BUFFERS_KEPT = 2;
/** A buffer past this size is left to the garbage collector rather than kept: a rare huge chunk is not held for good. */
const ROW_BUFFER_MAX_BYTES = 64 * 1024 * 1024;
/** Buffers below this size may be slices of Node's shared allocation pool: never kept, so never written over. */
const ROW_BUFFER_MIN_BYTES = 64 * 1024;
/**
 * A buffer more than this many times larger than the rows just written in it (or than ROW_BUFFER_MIN_BYTES) is
 * not kept: after a burst of large events, small chunks would otherwise hold tens of MB for good (the builder
 * sizes a buffer at about 1.5 times the rows of Mordor events, 3 times those of short syslog lines).
 */
const ROW_BUFFER_SLACK = 8;

/**
 * The buffers that INSERT chunks' rows are built in, kept for the next chunks. Why: V8 counts every Buffer it
 * allocates as external memory and starts a full marking of the JavaScript heap each time 64 MB more of it has
 * been allocated since the last one. The rows of a chunk of Mordor events took about 12 KB an event (the
 * builder's estimate, about 4x the raw text; untouched, it costs no resident memory but counts all the same),
 * so HTTP ingest marked its 250 MB heap every 5,000 events or so, every one of them started by "external
 * memory pressure": V8's helper threads spent 26 to 32 CPU-µs an event marking, more than the engine's merges.
 * Reused, a buffer is counted once.
 */
export class RowBuffers {
  readonly #free: Buffer[] = [];

  /** A buffer to build rows in (its whole length is free), or undefined when none is kept. */
  take(): Buffer | undefined {
    return this.#free.pop();
  }

  /**
   * Hands back the buffer under `rows` (rows that {@link rowsOf} returned) once nothing reads them any more:
   * the next chunk's rows are written over them.
   */
  give(rows: Buffer): void {
    const whole = rows.buffer;
    if (whole.byteLength < ROW_BUFFER_MIN_BYTES || whole.byteLength > ROW_BUFFER_MAX_BYTES) return;
    if (whole.byteLength > ROW_BUFFER_SLACK * Math.max(rows.length, ROW_BUFFER_MIN_BYTES)) return;
    if (this.#free.length >= ROW_BUFFERS_KEPT) return;
    if (this.#free.some((b) => b.buffer === whole)) return;
    this.#free.push(Buffer.from(whole, 0, whole.byteLength));
  }
}

/** Rows written between two looks at the clock by `eventsToRowBinarySliced`. */
const ROWS_PER_CHECK = 16;

/**
 * `eventsToRowBinary`, letting the event loop turn every `budgetMs` of work (TURN_BUDGET_MS): an INSERT
 * chunk holds up to 20,000 small events, whose rows took a node's event loop for 0.5 s and more on a loaded
 * host (HTTP answers, searches and lease renewals wait meanwhile). Written into `scratch` when given (see
 * {@link RowBuffers}).
 */
export async function eventsToRowBinarySliced(
  events: readonly NormalizedEvent[],
  budgetMs: number = TURN_BUDGET_MS,
  scratch?: Buffer,
): Promise<Buffer> {
  const w = new RowBinaryWriter(estimate(events, 0, events.length), scratch);
  const turns = createTurnTaker(budgetMs);
  for (let i = 0; i < events.length; i += ROWS_PER_CHECK) {
    if (i > 0 && turns.due()) await turns.take();
    writeRows(w, events, i, Math.min(events.length, i + ROWS_PER_CHECK));
  }
  return w.buf.subarray(0, w.at);
}

/**
 * At least the bytes of the rows, nearly always: the raw text about twice (raw, then its fields, whose names
 * add more), with room to spare: Mordor events' rows came to 2.8 times their raw length, so the buffer was
 * doubled and copied once per chunk. Untouched space costs no resident memory.
 */
function estimate(events: readonly NormalizedEvent[], from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n += events[i].raw.length * 4 + 1024;
  return n;
}

function writeRows(w: RowBinaryWriter, events: readonly NormalizedEvent[], from: number, to: number): void {
  for (let i = from; i < to; i++) {
    const e = events[i];
    w.millis(storedTime(e));
    w.millis(e.ingested);
    w.string(e.id);
    w.string(contentHash(e.raw));
    w.string(e.tenant);
    w.string(e.source);
    w.string(e.layout);
    w.string(stringOr(e.fields['host.name']));
    w.string(stringOr(e.fields.message));
    w.string(e.raw);
    w.string(e.parseError ?? '');
    writeFields(w, e);
  }
}

/** The `fields` map: its size, then key and value of each entry. */
function writeFields(w: RowBinaryWriter, e: NormalizedEvent): void {
  // The size goes first but is known last: one byte is kept for it (fewer than 128 entries, nearly always).
  w.ensure(1);
  const sizeAt = w.at++;
  let n = 0;
  const logsource = e.logsource;
  // Original string fields the engine reads back from `raw` are stored there only (original-fields.ts, ADR 12).
  const inRaw = omittable(e);
  let index = 0;
  let left = false;
  for (const key in e.fields) {
    const field = e.fields[key] as FieldValue;
    if (index++ < inRaw && omitted(key, field)) {
      left = true;
      continue;
    }
    // Carried by typed columns; not repeated in the map. A field named as the mark is not stored: it would
    // make the row read as one whose fields were left out (its text still holds it).
    if (key === 'host.name' || key === 'message' || key === OMITTED_MARK) continue;
    // The event's logsource wins over a field of the same name (one key, as in the JSONEachRow rows).
    if (logsource && isLogsourceKey(key) && logsource[key.slice(16) as (typeof LOGSOURCE_KEYS)[number]]) continue;
    const value = storedValue(field);
    if (value === undefined) continue;
    w.string(key);
    w.string(value);
    n++;
  }
  if (logsource) {
    for (let k = 0; k < LOGSOURCE_KEYS.length; k++) {
      const v = logsource[LOGSOURCE_KEYS[k]];
      if (!v) continue;
      w.string(LOGSOURCE_FIELDS[k]);
      w.string(v);
      n++;
    }
  }
  if (left) {
    w.string(OMITTED_MARK);
    w.string('');
    n++;
  }
  const bytes = varintBytes(n);
  if (bytes > 1) w.shift(sizeAt + 1, bytes - 1);
  let v = n;
  for (let b = 0; b < bytes; b++) {
    w.buf[sizeAt + b] = b < bytes - 1 ? (v & 0x7f) | 0x80 : v;
    v = Math.floor(v / 128);
  }
}

function isLogsourceKey(key: string): boolean {
  return key.startsWith('vigil.logsource.') && LOGSOURCE_FIELDS.includes(key);
}
