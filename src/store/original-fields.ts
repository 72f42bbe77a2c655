import { type FieldValue, type NormalizedEvent, parsedTextOf } from '../lib/event.ts';
import { setOwn } from '../lib/lookup.ts';
import { COLUMN_FIELDS, PROMOTED_FIELDS } from './schema.ts';

/**
 * Original fields stored once (schema 4, ADR 12). A JSON event's text is kept whole in `raw`; its string
 * fields were also written a second time into the `fields` map, half of the engine's insert work for a
 * Windows event. Now a string field whose value the engine reads back from `raw` by its path (the key split
 * on dots) is left out of the map, and the row's map gets OMITTED_MARK, so that readers (the query compiler,
 * rowToEvent) know to look in `raw` for a key the map lacks. Everything else stays in the map as before:
 * numbers, booleans, arrays, fields Vigil adds (ECS), promoted fields, and every field of an event whose text
 * the engine might read otherwise than V8 did.
 */

/**
 * The map key saying that string fields were left out. A field can never have this name in such a row: an
 * event with a field of this name leaves nothing out.
 */
export const OMITTED_MARK = '\u0000';
/** OMITTED_MARK as an engine expression. */
export const OMITTED_MARK_SQL = 'char(0)';

/**
 * Keys never left out: the columns' fields (carried by columns or read through them), the promoted fields
 * (computed by the engine from the map at insert), and what the normalizer never keeps as a field
 * (src/parse/json.ts: `@timestamp` and `event.id` are read into columns, `event.original` and
 * `event.ingested` are Vigil's own).
 */
function neverOmitted(key: string): boolean {
  return NEVER_OMITTED.has(key);
}

const NEVER_OMITTED: ReadonlySet<string> = new Set([
  ...Object.keys(COLUMN_FIELDS),
  ...Object.keys(PROMOTED_FIELDS),
  'message',
  'event.original',
  'event.ingested',
]);

/**
 * Deepest nesting of an event text whose fields are left out. The engine's JSON reader refuses documents
 * nested deeper than about a thousand levels, and then finds no field of the text at all, as it does for a
 * lone surrogate (`\ud800`) anywhere in it. Keys written with escapes it reads unescaped, as V8 does.
 */
const MAX_DEPTH = 64;

/**
 * Numbers of this magnitude or more are checked in the text: the engine's JSON reader refuses an integer
 * written outside [-2^63, 2^64 - 1] (and then finds no field of the text), while one written with a
 * fraction or an exponent is any double to it. Windows events carry -2^63 (`Keywords`) often.
 */
const LARGE = 2 ** 63;
const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;
/** Integer literals of 19 digits or more, in the text or in its strings alike (a string's digits only cost a check). */
const LONG_INTEGER = /-?\d{19,}(?![\d.eE])/g;

/** Whether every long integer literal of the text is one the engine reads. */
function integersRead(raw: string): boolean {
  for (const m of raw.matchAll(LONG_INTEGER)) {
    const n = BigInt(m[0]);
    if (n < INT64_MIN || n > UINT64_MAX) return false;
  }
  return true;
}

/** A key segment the engine's path finds: not empty, and no dot (the path separator). */
function plainSegment(key: string): boolean {
  return key.length > 0 && !key.includes('.');
}

/** The path of a field in its event's text, or undefined when no field of this name is ever left out of the map. */
export function rawPath(key: string): string[] | undefined {
  if (neverOmitted(key)) return undefined;
  const segments = key.split('.');
  return segments.every((s) => s.length > 0) ? segments : undefined;
}

/** An event's text parsed as V8 reads it, when the engine reads it alike (see {@link parseRaw}). */
export type RawObject = Readonly<Record<string, unknown>>;

/**
 * An event's JSON text, parsed, when the engine's JSON reader reads it as V8 does; undefined when it is not
 * a JSON object or the engine might read it otherwise or not at all: an integer beyond 64 bits or a number
 * beyond a double, nesting deeper than MAX_DEPTH, a lone surrogate. One known difference is left: of two
 * equal keys in one object V8 keeps the last value and the engine the first (ADR 12).
 */
export function parseRaw(raw: string): RawObject | undefined {
  if (raw.charCodeAt(0) !== 0x7b /* { */) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  return readAlike(raw, value);
}

/**
 * {@link parseRaw} of an event's text: its intake's own parse when this process normalized it (no second
 * `JSON.parse`), else the text parsed here (an event decoded from the bus).
 */
export function parsedRaw(event: NormalizedEvent): RawObject | undefined {
  const kept = parsedTextOf(event);
  if (kept === undefined) return parseRaw(event.raw);
  return event.raw.charCodeAt(0) === 0x7b ? readAlike(event.raw, kept) : undefined;
}

/** The parsed text when the engine reads it as V8 did (see parseRaw). */
function readAlike(raw: string, value: unknown): RawObject | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || !wellFormed(raw)) return undefined;
  const walk = { large: false };
  if (!readable(value as Record<string, unknown>, 1, walk)) return undefined;
  return !walk.large || integersRead(raw) ? (value as RawObject) : undefined;
}

/** String.prototype.isWellFormed (Node 20 has it; the compiler's library target does not name it yet). */
function wellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/** Whether the engine reads every value under `value` as V8 did; `walk.large` notes a number to check in the text. */
function readable(value: object, depth: number, walk: { large: boolean }): boolean {
  if (depth > MAX_DEPTH) return false;
  const list = Array.isArray(value);
  for (const k in value) {
    if (!list && !wellFormed(k)) return false;
    const v = (value as Record<string, unknown>)[k];
    if (typeof v === 'string') {
      if (!wellFormed(v)) return false;
    } else if (typeof v === 'number') {
      if (!(Math.abs(v) < LARGE)) {
        if (!Number.isFinite(v)) return false;
        walk.large = true;
      }
    } else if (v !== null && typeof v === 'object' && !readable(v, depth + 1, walk)) {
      return false;
    }
  }
  return true;
}

/**
 * The string at a field's path in the parsed text, through objects only; undefined when there is none. A
 * key the object lacks reads its prototype's property, never a string (and an own `__proto__` shadows it).
 */
function stringAt(parsed: RawObject, key: string): string | undefined {
  let v: unknown;
  if (!key.includes('.')) {
    if (key.length === 0) return undefined;
    v = parsed[key];
  } else {
    v = parsed;
    for (const segment of key.split('.')) {
      if (segment.length === 0 || v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
      v = (v as Record<string, unknown>)[segment];
    }
  }
  return typeof v === 'string' ? v : undefined;
}

/**
 * Whether the writer leaves `key` out of the map: its value is the string found at its path in the text.
 * `parsed` is {@link parseRaw} of the event's text.
 */
export function omitted(parsed: RawObject, key: string, value: FieldValue): boolean {
  return typeof value === 'string' && stringAt(parsed, key) === value && !neverOmitted(key);
}

/**
 * Puts back into a row's fields (the map as read, dotted keys) the string fields its writer left out, and
 * removes the mark. Only keys that the map lacks and that the writer could have left out are added, so what
 * comes back is the event's fields as they were normalized.
 */
export function restoreOmitted(fields: Record<string, unknown>, raw: string): void {
  if (!Object.hasOwn(fields, OMITTED_MARK)) return;
  delete fields[OMITTED_MARK];
  const parsed = parseRaw(raw);
  if (parsed !== undefined) restore(fields, parsed, '');
}

function restore(fields: Record<string, unknown>, obj: RawObject, prefix: string): void {
  for (const k in obj) {
    if (!plainSegment(k)) continue;
    const v = obj[k];
    const key = prefix === '' ? k : `${prefix}.${k}`;
    if (typeof v === 'string') {
      if (!Object.hasOwn(fields, key) && !neverOmitted(key)) setOwn(fields, key, v);
    } else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      restore(fields, v as RawObject, key);
    }
  }
}
