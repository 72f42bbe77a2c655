import type { EventLayout, FieldValue } from '../lib/event.ts';
import { setOwn } from '../lib/lookup.ts';
import { LARGE_NUMBER, MAX_RAW_DEPTH, plainSegment, wellFormed } from './raw-paths.ts';
import { parseTime } from './time.ts';
import { addWindowsFields, type EventData, type WindowsSystem } from './windows.ts';

/** Bounds on what one JSON event may expand to. */
export interface JsonLimits {
  /** Deepest key path kept as separate fields; a deeper object is kept as its JSON text. */
  maxDepth: number;
  /** Most original fields kept; ECS fields added by the normalizer do not count. */
  maxFields: number;
}

/** A JSON object as flat fields plus what the event record needs from it. */
export interface JsonNormalized {
  layout: EventLayout;
  /** Flat fields: the originals under their flattened names, then the ECS fields added beside them. */
  fields: Record<string, FieldValue>;
  /** The event time, epoch milliseconds; undefined when no time field could be read. */
  timestamp: number | undefined;
  /** `event.id` as sent (ECS input), not yet validated; undefined when absent. */
  eventId: FieldValue | undefined;
  /** The identity of a Windows event record, when it has one, for a replay-stable id. */
  record: { computer: string; channel: string; recordId: string } | undefined;
  /** Why the event is incomplete (a limit was hit); the fields kept are still valid. */
  error?: string;
  /**
   * The first `count` fields (in the fields' own order) are originals at plain paths of the text (every
   * step a non-empty key without a dot), the last of them named `last`; undefined when there are none, or
   * when the engine might read the text otherwise than V8 did (raw-paths.ts). See NormalizedEvent.inRaw.
   */
  inRaw?: { count: number; last: string; large: boolean; keys: number };
}

/**
 * Keys that become typed properties of the event rather than fields. `event.original` and `event.ingested`
 * as sent are superseded by the received text and the receipt time; the received text still holds them.
 */
const TIMESTAMP = '@timestamp';
const EVENT_ID = 'event.id';
const DROPPED = new Set(['event.original', 'event.ingested']);

/** Time fields tried after `@timestamp`, in order. */
const TIME_KEYS = [
  'Event.System.TimeCreated.#attributes.SystemTime',
  'TimeCreated',
  'EventTime',
  'timestamp',
  'time',
  'ts',
  'datetime',
  'date',
  'event.created',
];

/**
 * Flattens a parsed JSON object and recognizes its layout: `evtx` (evtx_dump: `Event.System`), `windows`
 * (flat Windows fields as NXLog/Winlogbeat-to-Logstash write them: `EventID` with `Channel`/`SourceName`/
 * `Hostname`), `ecs` (`@timestamp` with ECS fields, nested or dotted alike) or generic `json`; then adds
 * the ECS fields of the layout without overwriting any original field.
 */
export function normalizeJson(obj: Record<string, unknown>, limits: JsonLimits): JsonNormalized {
  const st = flatten(obj, limits);
  const { fields } = st;
  const add = (key: string, value: FieldValue | undefined) => {
    if (value !== undefined && !Object.hasOwn(fields, key)) fields[key] = value;
  };

  let layout: EventLayout = 'json';
  let record: JsonNormalized['record'];
  const event = obj.Event;
  if (isObject(event) && isObject(event.System)) {
    layout = 'evtx';
    const sys: WindowsSystem = {
      eventId: text(fields['Event.System.EventID'] ?? fields['Event.System.EventID.#text']),
      channel: text(fields['Event.System.Channel']),
      provider: text(fields['Event.System.Provider.#attributes.Name']),
      computer: text(fields['Event.System.Computer']),
      recordId: text(fields['Event.System.EventRecordID']),
    };
    const data: EventData = (name) => fields[`Event.EventData.${name}`];
    addWindowsFields(sys, data, add);
    record = recordOf(sys);
  } else if (
    obj.EventID !== undefined &&
    (obj.Channel ?? obj.SourceName ?? obj.Hostname ?? obj.Computer) !== undefined
  ) {
    layout = 'windows';
    const sys: WindowsSystem = {
      eventId: text(fields.EventID ?? fields['EventID.#text']),
      channel: text(fields.Channel),
      provider: text(fields.SourceName ?? fields.ProviderName),
      computer: text(fields.Hostname ?? fields.Computer),
      recordId: text(fields.RecordNumber ?? fields.EventRecordID),
    };
    addWindowsFields(sys, (name) => fields[name], add);
    if (typeof fields.Message === 'string') add('message', fields.Message);
    record = recordOf(sys);
  } else if (st.timestamp !== undefined && st.ecsHint) {
    layout = 'ecs';
    // Winlogbeat's ECS output names the record too: replaying it must not store it twice.
    record = recordOf({
      eventId: undefined,
      channel: text(fields['winlog.channel']),
      provider: undefined,
      computer: text(fields['winlog.computer_name'] ?? fields['host.name']),
      recordId: text(fields['winlog.record_id']),
    });
  } else {
    const host = fields.hostname ?? fields.host;
    if (typeof host === 'string' && host !== '') add('host.name', host);
  }

  let timestamp: number | undefined;
  if (st.timestamp !== undefined) {
    timestamp = parseTime(st.timestamp);
    if (timestamp === undefined) add('vigil.original_timestamp', st.timestamp);
  }
  for (let i = 0; timestamp === undefined && i < TIME_KEYS.length; i++) {
    const v = fields[TIME_KEYS[i]];
    if (v !== undefined && Object.hasOwn(fields, TIME_KEYS[i])) timestamp = parseTime(v);
  }
  const inRaw =
    st.plainCount > 0 && st.readable
      ? { count: st.plainCount, last: st.plainLast, large: st.large, keys: st.keys }
      : undefined;
  return { layout, fields, timestamp, eventId: st.eventId, record, error: st.error, inRaw };
}

interface FlattenState {
  fields: Record<string, FieldValue>;
  count: number;
  maxDepth: number;
  maxFields: number;
  timestamp: FieldValue | undefined;
  eventId: FieldValue | undefined;
  ecsHint: boolean;
  error: string | undefined;
  /** Fields inserted so far at plain paths, before the first that is not; see JsonNormalized.inRaw. */
  plainCount: number;
  plainLast: string;
  /** Still counting: no field at a path that is not plain inserted yet. */
  plainOpen: boolean;
  /** The engine reads the text as V8 did, as far as seen (raw-paths.ts). */
  readable: boolean;
  /** A number of LARGE_NUMBER magnitude was seen: the text's integers must be checked. */
  large: boolean;
  /** Keys walked: fewer than the text holds when it repeats a key (see raw-paths.ts keysWritten). */
  keys: number;
}

function flatten(obj: Record<string, unknown>, limits: JsonLimits): FlattenState {
  const st: FlattenState = {
    fields: {},
    count: 0,
    maxDepth: limits.maxDepth,
    maxFields: limits.maxFields,
    timestamp: undefined,
    eventId: undefined,
    ecsHint: false,
    error: undefined,
    plainCount: 0,
    plainLast: '',
    plainOpen: true,
    readable: true,
    large: false,
    keys: 0,
  };
  walk(st, obj, '', 1, true);
  return st;
}

function walk(st: FlattenState, obj: Record<string, unknown>, prefix: string, depth: number, plain: boolean): void {
  if (depth > MAX_RAW_DEPTH) st.readable = false;
  for (const k in obj) {
    st.keys++;
    const v = obj[k];
    const key = prefix === '' ? k : `${prefix}.${k}`;
    const plainKey = plain && plainSegment(k);
    if (!wellFormed(k)) st.readable = false;
    if (v === null || typeof v !== 'object') {
      if (typeof v === 'string') {
        if (!wellFormed(v)) st.readable = false;
      } else if (typeof v === 'number') {
        noteNumber(st, v);
      }
      const scalar = toScalar(v);
      if (scalar !== undefined) put(st, key, scalar, plainKey);
    } else if (Array.isArray(v)) {
      if (scalarArray(v)) {
        for (const x of v) {
          if (typeof x === 'string') {
            if (!wellFormed(x)) st.readable = false;
          } else if (typeof x === 'number') noteNumber(st, x);
        }
        put(st, key, v as FieldValue[], plainKey);
      } else {
        // Its elements are not walked: whether the engine reads them is not known.
        st.readable = false;
        putJson(st, key, v);
      }
    } else if (depth >= st.maxDepth) {
      st.error ??= `field ${JSON.stringify(key)} nests deeper than max_depth ${st.maxDepth}: kept as JSON text`;
      putJson(st, key, v);
    } else {
      walk(st, v as Record<string, unknown>, key, depth + 1, plainKey);
    }
  }
}

/** Notes a number the engine may refuse (raw-paths.ts). */
function noteNumber(st: FlattenState, v: number): void {
  if (Math.abs(v) < LARGE_NUMBER) return;
  st.large = true;
  // V8 reads 1e400 as Infinity; the engine refuses it.
  if (!Number.isFinite(v)) st.readable = false;
}

/** Stores a value as its JSON text; JSON.stringify recurses, so absurdly deep values are left out instead. */
function putJson(st: FlattenState, key: string, v: unknown): void {
  let json: string;
  try {
    json = JSON.stringify(v);
  } catch {
    st.error ??= `field ${JSON.stringify(key)} is nested too deeply to keep: it is only in event.original`;
    return;
  }
  put(st, key, json, false);
}

function put(st: FlattenState, key: string, value: FieldValue, plain: boolean): void {
  if (key === TIMESTAMP) {
    st.timestamp ??= value;
    return;
  }
  if (key.charCodeAt(0) === 0x65 /* e */) {
    if (key === EVENT_ID) {
      st.eventId ??= value;
      return;
    }
    if (DROPPED.has(key)) return;
    if (key.startsWith('event.') || key.startsWith('ecs.')) st.ecsHint = true;
  } else if (key === 'host.name' || key.startsWith('agent.')) {
    st.ecsHint = true;
  }
  // The nested and the dotted spelling of one ECS field flatten to the same key: the first one stays.
  if (Object.hasOwn(st.fields, key)) {
    // The field keeps a value the text's path may not give: nothing is left out of the map (ADR 12).
    st.readable = false;
    return;
  }
  if (st.count >= st.maxFields) {
    st.error ??= `more than max_fields ${st.maxFields} fields: the rest are kept only in event.original`;
    return;
  }
  st.count++;
  setOwn(st.fields, key, value);
  if (st.plainOpen) {
    if (plain) {
      st.plainCount = st.count;
      st.plainLast = key;
    } else st.plainOpen = false;
  }
}

/** JSON values are already scalars; values built in code (bigint, undefined, functions) are coerced or left out. */
function toScalar(v: unknown): FieldValue | undefined {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v;
    case 'number':
      return Number.isFinite(v) ? v : null;
    case 'bigint':
      return v.toString();
    case 'object':
      return null;
    default:
      return undefined;
  }
}

function scalarArray(a: unknown[]): boolean {
  for (const x of a) if (x !== null && typeof x === 'object') return false;
  return true;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A field as identifier text: numbers and strings; anything else (objects, arrays) is not an identifier. */
function text(v: FieldValue | undefined): string | undefined {
  if (typeof v === 'string') return v === '' ? undefined : v;
  if (typeof v === 'number') return String(v);
  return undefined;
}

function recordOf(sys: WindowsSystem): JsonNormalized['record'] {
  if (sys.computer === undefined || sys.recordId === undefined) return undefined;
  return { computer: sys.computer, channel: sys.channel ?? '', recordId: sys.recordId };
}
