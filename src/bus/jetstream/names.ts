import type { JetStreamBusConfig } from './config.ts';

/** A JetStream stream's name and the one subject it holds. */
export interface StreamName {
  name: string;
  subject: string;
}

/**
 * Names of the record streams beside the event stream (`bus.jetstream.stream`), derived from its settings
 * so that test clusters with their own stream names keep their own logs: `VIGIL_EVENTS` -> `VIGIL_ALERTS`,
 * and subjects outside the events stream's `<prefix>.>` either way (`vigil.events` -> `vigil.alerts`,
 * `x` -> `x_alerts`).
 */
export function streamNames(
  config: Pick<JetStreamBusConfig, 'stream' | 'subject_prefix'>,
  /**
   * The site of a two-site deployment: its record subjects get `.<site>` (`vigil.alerts.a`), since the sites'
   * NATS servers share subject interest over the leafnode and a stream of the peer on the same subject would
   * store this site's records too (and route its matches to the peer's correlation).
   */
  site?: string,
): {
  alerts: StreamName;
  matches: StreamName;
  /** Two sites: the incident changes of the active site, replicated to the other (`vigil.outputs.<site>`). */
  outputs: StreamName;
} {
  const base = config.stream.replace(/_EVENTS$/, '');
  const prefix = config.subject_prefix;
  const named = (kind: string): StreamName => ({
    name: `${base}_${kind.toUpperCase()}`,
    subject: `${prefix.endsWith('.events') ? `${prefix.slice(0, -7)}.${kind}` : `${prefix}_${kind}`}${site ? `.${site}` : ''}`,
  });
  return { alerts: named('alerts'), matches: named('matches'), outputs: named('outputs') };
}
