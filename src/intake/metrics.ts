import type { Counter, Gauge, Registry } from 'prom-client';
import { counter, gauge } from '../lib/metrics.ts';

/** Why an intake refused an event; a parse failure is not one (the event is stored raw, flagged). */
export type RejectReason =
  | 'oversize'
  /** An octet-counted syslog frame cut short: the client closed its connection before the frame's end. */
  | 'truncated'
  | 'overloaded'
  | 'draining'
  | 'publish_error'
  | 'malformed_json'
  | 'invalid_event'
  | 'too_many_events'
  | 'empty'
  | 'request_too_large'
  | 'unsupported_media_type'
  /** The event declares Vigil's own logsource product (`vigil`), which only Vigil emits (src/intake/reserved.ts). */
  | 'reserved_logsource';

/**
 * The metrics every intake shares, labelled by `source` (`syslog-udp`, `syslog-tcp`, `syslog-tls`, `http`).
 * For one source, received = accepted + rejected + pending.
 */
export interface IntakeMetrics {
  /** `vigil_intake_events_received_total{source}`: frames or elements read, oversize ones included. */
  received: Counter<'source'>;
  /** `vigil_intake_events_accepted_total{source}`: events whose publish was committed. */
  accepted: Counter<'source'>;
  /** `vigil_intake_events_rejected_total{source,reason}`: events refused or lost, by reason. */
  rejected: Counter<'source' | 'reason'>;
  /** `vigil_intake_connections{source}`: open stream connections. */
  connections: Gauge<'source'>;
  /** `vigil_intake_pending_events{source}`: events read but not yet committed. */
  pending: Gauge<'source'>;
  /**
   * `vigil_intake_connections_refused_total{source,reason}`: stream connections closed at once, by reason
   * (`max_connections`, `maintenance`, `stopping`).
   */
  refusedConnections: Counter<'source' | 'reason'>;
}

/** Returns the intake metrics of `registry`, shared by every intake of the process. */
export function intakeMetrics(registry: Registry): IntakeMetrics {
  return {
    received: counter(registry, 'vigil_intake_events_received_total', 'Events read by an intake.', ['source']),
    accepted: counter(registry, 'vigil_intake_events_accepted_total', 'Events an intake published and saw committed.', [
      'source',
    ]),
    rejected: counter(registry, 'vigil_intake_events_rejected_total', 'Events an intake refused or lost, by reason.', [
      'source',
      'reason',
    ]),
    connections: gauge(registry, 'vigil_intake_connections', 'Open intake connections.', ['source']),
    pending: gauge(registry, 'vigil_intake_pending_events', 'Events an intake read and has not seen committed yet.', [
      'source',
    ]),
    refusedConnections: counter(
      registry,
      'vigil_intake_connections_refused_total',
      'Stream connections an intake closed at once, by reason (max_connections, maintenance, stopping).',
      ['source', 'reason'],
    ),
  };
}
