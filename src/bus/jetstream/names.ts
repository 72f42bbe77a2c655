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

/**
 * The subject of tenant `tenantToken`'s events of shard `shard` when the events are sharded (S > 1):
 * `<prefix>.s<shard>.<tenant>` (`prefix` already carries the site on a two-site deployment). With one
 * shard the subject stays `<prefix>.<tenant>`, as before shards existed.
 */
export function shardSubject(prefix: string, shards: number, shard: number, tenantToken: string): string {
  return shards > 1 ? `${prefix}.s${shard}.${tenantToken}` : `${prefix}.${tenantToken}`;
}

/**
 * The filter subject of one shard's consumer (NATS 2.9 takes one filter subject per consumer, hence one
 * consumer per shard and node): `<subject_prefix>.s<shard>.>`, or `<subject_prefix>.*.s<shard>.>` on a
 * two-site deployment, which also matches the shard's events sourced from the peer site.
 */
export function shardFilter(subjectPrefix: string, shard: number, twoSites: boolean): string {
  return twoSites ? `${subjectPrefix}.*.s${shard}.>` : `${subjectPrefix}.s${shard}.>`;
}
