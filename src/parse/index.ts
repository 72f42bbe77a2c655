import type { FieldValue, Logsource, NormalizedEvent } from '../lib/event.ts';
import { type ParseConfigInput, parseConfigSchema } from './config.ts';
import { acceptedEventId, newEventId, seededEventId, windowsEventId } from './event-id.ts';
import { learnShape } from './field-shapes.ts';
import { normalizeJson } from './json.ts';
import { ParseError } from './parse-error.ts';
import { integersRead, keysWritten } from './raw-paths.ts';
import { parseSyslog, type SyslogTimeOptions } from './syslog.ts';

export { NORMALIZER_DEFAULTS, type ParseConfig, type ParseConfigInput, parseConfigSchema } from './config.ts';
export {
  type JsonElement,
  type JsonErrorElement,
  type JsonValueElement,
  splitJson,
  splitJsonYielding,
} from './json-stream.ts';
export { splitJsonBytes } from './json-bytes.ts';
export { newEventId } from './event-id.ts';
export { ParseError } from './parse-error.ts';
export type { SyslogTimeOptions } from './syslog.ts';

/** Where and when an input was received, and under which tenant it is stored. */
export interface NormalizeContext {
  /** The intake: `syslog-udp`, `syslog-tcp`, `http`. */
  source: string;
  /** Receipt time, epoch milliseconds: becomes `event.ingested`, and `@timestamp` when the input has none. */
  receivedAt: number;
  tenant: string;
  logsource?: Logsource;
  /**
   * Makes the id deterministic: an HTTP Idempotency-Key plus the element's index. The id is then a hash of
   * (tenant, seed, raw text), so a retried request stores nothing twice.
   */
  idSeed?: string;
  /** Syslog only: the zone of times that name none, and the bound on future times. */
  syslogTime?: SyslogTimeOptions;
}

/** Turns received input into normalized events. Stateless and synchronous; one instance serves every intake. */
export interface Normalizer {
  /**
   * Normalizes one parsed JSON element (see `splitJson`); `raw` is its text as received, which the store
   * reads string fields back from (`inRaw`): never another text. Throws
   * {@link ParseError} when the value is not a JSON object. Hitting a size limit still gives an event,
   * with `parseError` saying what was left out.
   */
  fromJson(value: unknown, raw: string, ctx: NormalizeContext): NormalizedEvent;
  /** Normalizes one syslog message (RFC 5424 or 3164). Never throws: a line that is not syslog is kept raw. */
  fromSyslog(line: string, ctx: NormalizeContext): NormalizedEvent;
}

/**
 * Why a parsed JSON element cannot be an event (it is not an object), or undefined when it can. Cheap: an
 * intake checks it before {@link Normalizer.fromJson}, whose thrown error costs ~22 µs per element.
 */
export function notAnEvent(value: unknown): string | undefined {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return undefined;
  return `an event must be a JSON object, not ${kindOf(value)}`;
}

function kindOf(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/** Field that records where `@timestamp` came from when it is not the event's own time. */
const TIMESTAMP_SOURCE = 'vigil.timestamp_source';

/** Creates a normalizer; `config` is checked against {@link parseConfigSchema} (unknown keys are refused). */
export function createNormalizer(config: ParseConfigInput = {}): Normalizer {
  const cfg = Object.freeze(parseConfigSchema.parse(config));
  const limits = { maxDepth: cfg.max_depth, maxFields: cfg.max_fields };
  return {
    fromJson(value, raw, ctx) {
      const problem = notAnEvent(value);
      if (problem !== undefined) throw new ParseError(problem, { kind: kindOf(value) });
      const n = normalizeJson(value as Record<string, unknown>, limits);
      const fields = n.fields;
      let id = acceptedEventId(n.eventId);
      if (id === undefined) {
        if (n.eventId !== undefined) fields['event.original_id'] = originalText(n.eventId);
        if (ctx.idSeed !== undefined) id = seededEventId(ctx.tenant, ctx.idSeed, raw);
        else if (n.record !== undefined) {
          id = windowsEventId(ctx.tenant, n.record.computer, n.record.channel, n.record.recordId);
        } else id = newEventId(ctx.receivedAt);
      }
      const event = finish(id, n.timestamp, n.layout, raw, n.error, fields, ctx);
      // The store keeps these fields' strings in `raw` only (ADR 12); `raw` must be the object's own text.
      const inRaw = n.inRaw;
      if (
        inRaw &&
        n.error === undefined &&
        raw.charCodeAt(0) === 0x7b &&
        (!inRaw.large || integersRead(raw)) &&
        keysWritten(raw) === inRaw.keys
      ) {
        event.inRaw = [inRaw.count, inRaw.last];
      }
      // The next events of this shape are built fast: smaller, so V8's scavenges copy less (field-shapes.ts).
      learnShape(event.fields);
      return event;
    },
    fromSyslog(line, ctx) {
      const p = parseSyslog(line, ctx.receivedAt, ctx.syslogTime);
      const id = ctx.idSeed !== undefined ? seededEventId(ctx.tenant, ctx.idSeed, line) : newEventId(ctx.receivedAt);
      return finish(id, p.timestamp, 'syslog', line, p.error, p.fields, ctx);
    },
  };
}

function finish(
  id: string,
  timestamp: number | undefined,
  layout: NormalizedEvent['layout'],
  raw: string,
  parseError: string | undefined,
  fields: Record<string, FieldValue>,
  ctx: NormalizeContext,
): NormalizedEvent {
  if (timestamp === undefined) fields[TIMESTAMP_SOURCE] = 'received';
  const event: NormalizedEvent = {
    id,
    timestamp: timestamp ?? ctx.receivedAt,
    ingested: ctx.receivedAt,
    tenant: ctx.tenant,
    source: ctx.source,
    layout,
    raw,
    fields,
  };
  if (ctx.logsource !== undefined) event.logsource = ctx.logsource;
  if (parseError !== undefined) event.parseError = parseError;
  return event;
}

function originalText(v: FieldValue): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}
