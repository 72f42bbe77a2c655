import { type FieldValue, type NormalizedEvent, storedTime } from '../lib/event.ts';
import { setOwn } from '../lib/lookup.ts';
import { OMITTED_MARK, restoreOmitted } from './original-fields.ts';
import { COLUMN_FIELDS, contentHash } from './schema.ts';

/** Serializes events as JSONEachRow lines for the events table. */
export function eventsToRows(events: readonly NormalizedEvent[]): Buffer {
  return Buffer.from(rowsText(events));
}

/** The JSONEachRow text of the events' rows, one line each. */
function rowsText(events: readonly NormalizedEvent[]): string {
  const lines: string[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    // Without a prototype, a map key `__proto__` is an own key like any other (JSON.stringify writes it).
    const fields: Record<string, string> = Object.create(null);
    for (const key in e.fields) {
      // Carried by typed columns; not repeated in the map. Nor a field named as the mark (row-binary.ts).
      if (key === 'host.name' || key === 'message' || key === OMITTED_MARK) continue;
      const value = storedValue(e.fields[key]);
      if (value !== undefined) fields[key] = value;
    }
    if (e.logsource) {
      for (const k of ['product', 'service', 'category'] as const) {
        const v = e.logsource[k];
        if (v) fields[`vigil.logsource.${k}`] = v;
      }
    }
    // One JSON.stringify of the row: measured faster than building the line from pieces, and than
    // writing `raw` as a JSON object (which the engine would store as its text) to spare its escaping.
    lines[i] = JSON.stringify({
      ts: storedTime(e),
      ingested: e.ingested,
      id: e.id,
      content_hash: contentHash(e.raw),
      tenant: e.tenant,
      source: e.source,
      layout: e.layout,
      host: stringOr(e.fields['host.name']),
      message: stringOr(e.fields.message),
      raw: e.raw,
      parse_error: e.parseError ?? '',
      fields,
    });
  }
  return lines.join('\n');
}

/** A field as the text of a String column: empty when missing or null, JSON for a non-string. */
export function stringOr(v: FieldValue | undefined): string {
  if (v === undefined || v === null) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** Stored values are strings: scalars as their text, arrays as a JSON array of strings; null is not stored. */
export function storedValue(v: FieldValue): string | undefined {
  if (v === null) return undefined;
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return JSON.stringify(v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))));
  return String(v);
}

/** A stored row as read back by a search. */
export interface EventRow {
  ts: string;
  ingested: string;
  id: string;
  tenant: string;
  source: string;
  layout: string;
  host: string;
  message: string;
  raw: string;
  parse_error: string;
  fields?: Record<string, unknown>;
}

/**
 * Turns a stored row into the flat event a search answers with: ECS names, dotted keys, in an object without
 * a prototype (field names are the client's: `constructor` is a field like any other). The names of Vigil's
 * own columns (COLUMN_FIELDS: `tenant.id`, `input.type`, `event.ingested`, ...) always show the column, as a
 * search on them filters the column: an event that carries its own `tenant.id` or `input.type` cannot
 * change where it appears to come from. The client's value of such a field stays in `event.original`.
 */
export function rowToEvent(row: EventRow): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null);
  out['@timestamp'] = engineTimeToIso(row.ts);
  out['event.id'] = row.id;
  out['event.ingested'] = engineTimeToIso(row.ingested);
  out['tenant.id'] = row.tenant;
  out['input.type'] = row.source;
  out['vigil.layout'] = row.layout;
  if (row.host) out['host.name'] = row.host;
  if (row.message) out.message = row.message;
  if (row.parse_error) out['error.message'] = row.parse_error;
  if (row.fields) flattenInto(out, storedFields(row), '', COLUMN_FIELDS);
  out['event.original'] = row.raw;
  return out;
}

/** A row's map with the string fields its writer left in `raw` put back (original-fields.ts). */
function storedFields(row: EventRow): Record<string, unknown> {
  const fields = row.fields as Record<string, unknown>;
  restoreOmitted(fields, row.raw);
  return fields;
}

function flattenInto(
  out: Record<string, unknown>,
  value: Record<string, unknown>,
  prefix: string,
  skip?: Readonly<Record<string, unknown>>,
): void {
  for (const key in value) {
    const v = value[key];
    const path = prefix ? `${prefix}.${key}` : key;
    if (skip?.[path] !== undefined) continue;
    if (v !== null && typeof v === 'object' && !Array.isArray(v))
      flattenInto(out, v as Record<string, unknown>, path, skip);
    else if (typeof v === 'string' && v.startsWith('[') && v.endsWith(']')) setOwn(out, path, storedArray(v));
    else if (v !== null) setOwn(out, path, v);
  }
}

/** Arrays are stored as JSON text; give them back as arrays (a string that only looks like one stays). */
function storedArray(v: string): unknown {
  try {
    const parsed: unknown = JSON.parse(v);
    return Array.isArray(parsed) ? parsed : v;
  } catch {
    return v;
  }
}

/** The engine prints DateTime64 as `YYYY-MM-DD HH:MM:SS.sss` in UTC. */
export function engineTimeToIso(text: string): string {
  return text.includes('T') ? text : `${text.replace(' ', 'T')}Z`;
}

/** Rebuilds the normalized event a stored row came from (for retro-hunts): values come back as strings. */
export function rowToNormalized(row: EventRow): NormalizedEvent {
  const fields: Record<string, FieldValue> = {};
  if (row.fields) flattenInto(fields as Record<string, unknown>, storedFields(row), '');
  if (row.host) fields['host.name'] = row.host;
  if (row.message) fields.message = row.message;
  const logsource: NonNullable<NormalizedEvent['logsource']> = {};
  for (const k of ['product', 'service', 'category'] as const) {
    const v = fields[`vigil.logsource.${k}`];
    if (typeof v === 'string') logsource[k] = v;
  }
  return {
    id: row.id,
    timestamp: Date.parse(engineTimeToIso(row.ts)),
    ingested: Date.parse(engineTimeToIso(row.ingested)),
    tenant: row.tenant,
    source: row.source,
    layout: row.layout as NormalizedEvent['layout'],
    logsource: Object.keys(logsource).length > 0 ? logsource : undefined,
    raw: row.raw,
    parseError: row.parse_error || undefined,
    fields,
  };
}
