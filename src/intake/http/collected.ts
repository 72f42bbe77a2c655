import type { EventLayout, FieldValue, Logsource, NormalizedEvent } from '../../lib/event.ts';

/**
 * The wire form of events a collector (`vigil collect`) forwards: one JSON object a line, each a normalized
 * event as the collector made it, without its tenant (the site takes the tenant of the collector's key).
 * The collector parsed, timed and named the event once; a site stores exactly that, so a batch resent to the
 * other site after a failover is the same rows there (same id, @timestamp and `event.original`), and the
 * store keeps one of each.
 */
export type CollectedEvent = Omit<NormalizedEvent, 'tenant'>;

/** The route of a site where collectors forward (served by src/api/routes/ingest.ts). */
export const COLLECTED_PATH = '/api/v1/ingest/collected';

const LAYOUTS: ReadonlySet<EventLayout> = new Set(['ecs', 'windows', 'evtx', 'syslog', 'json']);
const KEYS: ReadonlySet<string> = new Set([
  'id',
  'timestamp',
  'ingested',
  'source',
  'layout',
  'logsource',
  'raw',
  'parseError',
  'fields',
]);
const PRINTABLE_ID = /^[\x20-\x7e]{1,128}$/;
const SOURCE = /^[a-z0-9][a-z0-9-]{0,31}$/;
const SIGMA_NAME = /^[a-z0-9_-]{1,64}$/i;
/** Epoch ms of 9999-12-31: a time past it is no time the store can hold. */
const MAX_TIME_MS = 253402300799999;
/** Deepest nesting of arrays in one field value; the normalizer flattens objects, so real values are shallow. */
const MAX_VALUE_DEPTH = 8;
const MAX_FIELD_NAME_CHARS = 1024;
const MAX_PARSE_ERROR_CHARS = 4096;

/** Bounds a site puts on each collected event. */
export interface CollectedLimits {
  /** Largest `raw` (`event.original`), in bytes. */
  maxRawBytes: number;
  /** Most fields of one event. */
  maxFields: number;
}

/** One line of the wire form. */
export function encodeCollected(event: NormalizedEvent): string {
  // `inRaw` lets the store leave fields out of its map: the site does not take a collector's word for it.
  const { tenant: _tenant, inRaw: _inRaw, ...wire } = event;
  return JSON.stringify(wire);
}

/**
 * Checks one parsed line of the wire form and returns the event under `tenant`, or why it is refused. Hand
 * written rather than a schema: it runs for every forwarded event, and a deep array must be refused by a
 * bound, not by the stack.
 */
export function decodeCollected(
  value: unknown,
  tenant: string,
  limits: CollectedLimits,
): { event: NormalizedEvent } | { error: string } {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { error: 'a collected event must be a JSON object' };
  }
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v)) if (!KEYS.has(k)) return { error: `unknown key ${k.slice(0, 64)}` };
  if (typeof v.id !== 'string' || !PRINTABLE_ID.test(v.id) || v.id.trim() === '') {
    return { error: 'id: 1 to 128 printable ASCII characters' };
  }
  for (const k of ['timestamp', 'ingested'] as const) {
    const t = v[k];
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0 || t > MAX_TIME_MS) {
      return { error: `${k}: epoch milliseconds` };
    }
  }
  if (typeof v.source !== 'string' || !SOURCE.test(v.source)) return { error: 'source: a short lowercase name' };
  if (typeof v.layout !== 'string' || !LAYOUTS.has(v.layout as EventLayout)) {
    return { error: `layout: one of ${[...LAYOUTS].join(', ')}` };
  }
  if (typeof v.raw !== 'string' || Buffer.byteLength(v.raw) > limits.maxRawBytes) {
    return { error: `raw: text of at most ${limits.maxRawBytes} bytes` };
  }
  if (v.parseError !== undefined && (typeof v.parseError !== 'string' || v.parseError.length > MAX_PARSE_ERROR_CHARS)) {
    return { error: `parseError: text of at most ${MAX_PARSE_ERROR_CHARS} characters` };
  }
  let logsource: Logsource | undefined;
  if (v.logsource !== undefined) {
    const l = v.logsource as Record<string, unknown>;
    if (l === null || typeof l !== 'object' || Array.isArray(l)) return { error: 'logsource: an object' };
    logsource = {};
    for (const [k, s] of Object.entries(l)) {
      if ((k !== 'product' && k !== 'service' && k !== 'category') || typeof s !== 'string' || !SIGMA_NAME.test(s)) {
        return { error: 'logsource: product, service and category, each a Sigma name' };
      }
      logsource[k] = s;
    }
  }
  const fields = v.fields as Record<string, unknown>;
  if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) return { error: 'fields: an object' };
  let count = 0;
  for (const [k, f] of Object.entries(fields)) {
    if (++count > limits.maxFields) return { error: `fields: at most ${limits.maxFields}` };
    if (k.length === 0 || k.length > MAX_FIELD_NAME_CHARS) return { error: 'fields: names of 1 to 1024 characters' };
    if (!isFieldValue(f, 0)) return { error: `fields.${k.slice(0, 64)}: a string, number, boolean, null or array` };
  }
  const event: NormalizedEvent = {
    id: v.id,
    timestamp: v.timestamp as number,
    ingested: v.ingested as number,
    tenant,
    source: v.source,
    layout: v.layout as EventLayout,
    raw: v.raw,
    fields: fields as Record<string, FieldValue>,
  };
  if (logsource !== undefined) event.logsource = logsource;
  if (v.parseError !== undefined) event.parseError = v.parseError as string;
  return { event };
}

function isFieldValue(v: unknown, depth: number): boolean {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (!Array.isArray(v) || depth >= MAX_VALUE_DEPTH) return false;
  return v.every((x) => isFieldValue(x, depth + 1));
}
