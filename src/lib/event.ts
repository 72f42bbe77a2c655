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
}
