/**
 * The normalized event: what every intake produces, the bus carries, the store keeps and detection reads.
 *
 * `fields` is flat: keys are dotted ECS names (`host.name`, `source.ip`, `event.category`) and, beside them,
 * the original field names of the input exactly as they were flattened (`EventID`, `Image` for flat Windows
 * events; `Event.System.EventID`, `Event.EventData.Image` for evtx_dump JSON). Values keep their JSON type.
 */
export type FieldValue = string | number | boolean | null | FieldValue[];

/** The input layout an event was recognized as; detection uses it to choose a field mapping. */
export type EventLayout = 'ecs' | 'windows' | 'evtx' | 'syslog' | 'json';

/** A Sigma logsource that a source declared for what it sends (Splunk's sourcetype, in Sigma terms). */
export interface Logsource {
  product?: string;
  service?: string;
  category?: string;
}

export interface NormalizedEvent {
  /** `event.id`: stable from first receipt, so a replay of the same event is stored once. */
  id: string;
  /** `@timestamp` in epoch milliseconds (the time the event happened, or receipt time when unknown). */
  timestamp: number;
  /** `event.ingested` in epoch milliseconds: when Vigil first received it. */
  ingested: number;
  tenant: string;
  /** The intake that received it: `syslog-udp`, `syslog-tcp`, `http`. */
  source: string;
  layout: EventLayout;
  logsource?: Logsource;
  /** The exact text received (`event.original`). */
  raw: string;
  /** Why parsing failed; the event is still stored raw. Empty when it parsed. */
  parseError?: string;
  fields: Record<string, FieldValue>;
  /**
   * JSON events: the first `count` keys of `fields` (in their own order) are original fields found at
   * their paths in `raw` (the key split on dots) with these same values as the store's engine reads them, the
   * last of them named `last`, so that the store keeps their strings in `raw` only (src/store/original-fields.ts,
   * ADR 12). Absent when there are none or the engine might read the text otherwise. Travels on the bus.
   */
  inRaw?: readonly [count: number, last: string];
}

/**
 * The latest event time Vigil keeps, 2149-06-06T23:59:59.999Z: the last day of the engine's `Date`. The events
 * table is partitioned by `toDate(ts)`, which in this engine wraps later times onto days of the 1970s to 2020s
 * (2200-01-01 lands in 2020-07-27's partition), and searches read whole days by partition (src/query). A time
 * read past it is no time: the receipt time is used, as for any unreadable time.
 */
export const MAX_EVENT_TIME_MS = Date.UTC(2149, 5, 6, 23, 59, 59, 999);

/**
 * The `ts` an event is stored under: its time, or its receipt time when its time is past MAX_EVENT_TIME_MS
 * (an event from a node that read times up to 9999, or from a collector).
 */
export function storedTime(e: Pick<NormalizedEvent, 'timestamp' | 'ingested'>): number {
  return e.timestamp <= MAX_EVENT_TIME_MS ? e.timestamp : e.ingested;
}
