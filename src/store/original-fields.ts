import type { NormalizedEvent } from '../lib/event.ts';
import { setOwn } from '../lib/lookup.ts';
import { plainSegment } from '../parse/raw-paths.ts';
import { COLUMN_FIELDS, PROMOTED_FIELDS } from './schema.ts';

/**
 * Original fields stored once (schema 4, ADR 12). A JSON event's text is kept whole in `raw`; its string
 * fields were also written a second time into the `fields` map, half of the engine's insert work for a
 * Windows event. Now the original string fields that the engine reads back from `raw` by their path (the key
 * split on dots) are left out of the map, and the row's map gets OMITTED_MARK, so that readers (the query
 * compiler, rowToEvent) look in `raw` for a key the map lacks. The normalizer, which walks the parsed text
 * anyway, says which fields those are (NormalizedEvent.inRaw, src/parse/raw-paths.ts): the writer parses
 * nothing. Everything else stays in the map as before: numbers, booleans, arrays, fields Vigil adds (ECS),
 * promoted fields, and every field of an event whose text the engine might read otherwise than V8 did.
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
 * (computed by the engine from the map at insert), what the normalizer never keeps as a field (src/parse/
 * json.ts: `@timestamp` and `event.id` are read into columns, `event.original` and `event.ingested` are
 * Vigil's own), and what it may set over an original field's value (src/parse/index.ts).
 */
const NEVER_OMITTED: ReadonlySet<string> = new Set([
  ...Object.keys(COLUMN_FIELDS),
  ...Object.keys(PROMOTED_FIELDS),
  'message',
  'event.original',
  'event.ingested',
  'event.original_id',
  'vigil.timestamp_source',
]);

function neverOmitted(key: string): boolean {
  return NEVER_OMITTED.has(key);
}

/** The path of a field in its event's text, or undefined when no field of this name is ever left out of the map. */
export function rawPath(key: string): string[] | undefined {
  if (neverOmitted(key)) return undefined;
  const segments = key.split('.');
  return segments.every((s) => s.length > 0) ? segments : undefined;
}

/**
 * How many leading fields of the event the writer may leave out (those of them that are strings and not
 * {@link neverOmitted}): NormalizedEvent.inRaw's count, when the event's fields still begin as the normalizer
 * made them (the field at that position has the name it gave); 0 otherwise.
 */
export function omittable(event: NormalizedEvent): number {
  const inRaw = event.inRaw;
  if (inRaw === undefined || Object.hasOwn(event.fields, OMITTED_MARK)) return 0;
  const [count, last] = inRaw;
  if (!(count > 0)) return 0;
  let i = 0;
  for (const key in event.fields) {
    if (++i === count) return key === last ? count : 0;
  }
  return 0;
}

/** Whether the writer leaves out one of the {@link omittable} first fields. */
export function omitted(key: string, value: unknown): boolean {
  return typeof value === 'string' && !neverOmitted(key);
}

/**
 * Puts back into a row's fields (the map as read, dotted keys) the string fields its writer left out, and
 * removes the mark: every string at a plain path of the text that the map lacks and that the writer could
 * have left out, which is what the writer left out, so the fields come back as they were normalized.
 */
export function restoreOmitted(fields: Record<string, unknown>, raw: string): void {
  if (!Object.hasOwn(fields, OMITTED_MARK)) return;
  delete fields[OMITTED_MARK];
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return;
  }
  if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
    restore(fields, parsed as Record<string, unknown>, '');
  }
}

function restore(fields: Record<string, unknown>, obj: Record<string, unknown>, prefix: string): void {
  for (const k in obj) {
    if (!plainSegment(k)) continue;
    const v = obj[k];
    const key = prefix === '' ? k : `${prefix}.${k}`;
    if (typeof v === 'string') {
      if (!Object.hasOwn(fields, key) && !neverOmitted(key)) setOwn(fields, key, v);
    } else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      restore(fields, v as Record<string, unknown>, key);
    }
  }
}
