import type { Registry } from 'prom-client';
import { counter, gauge } from '../lib/metrics.ts';

/** Where each registry's lease gauge reads the time left (the session of that registry's node). */
const leaseRemainingSources = new WeakMap<Registry, () => number>();

/**
 * Makes the lease gauge of `registry` read `secondsLeft` at each scrape. Read when asked rather than set by a
 * timer: a 250 ms timer woke an idle node's event loop four times a second for a figure nobody was reading.
 */
export function reportLeaseRemaining(registry: Registry, secondsLeft: () => number): void {
  leaseRemainingSources.set(registry, secondsLeft);
}

/** The cluster's metrics; every piece of the cluster shares one set per registry. */
export function clusterMetrics(registry: Registry) {
  return {
    members: gauge(registry, 'vigil_cluster_members', 'Cluster nodes as this node sees them, by state.', ['state']),
    leaseRemaining: gauge(
      registry,
      'vigil_cluster_lease_remaining_seconds',
      'Time left before this node stops acting on its etcd lease (0 while it has none).',
      [],
      function collect() {
        const secondsLeft = leaseRemainingSources.get(registry);
        if (secondsLeft) this.set(secondsLeft());
      },
    ),
    partitionsOwned: gauge(registry, 'vigil_cluster_partitions_owned', 'Correlation partitions this node owns.'),
    failovers: counter(
      registry,
      'vigil_cluster_failovers_total',
      'Partitions this node took over from an owner whose lease had expired.',
    ),
    leaseLosses: counter(
      registry,
      'vigil_cluster_lease_losses_total',
      'Times this node lost its etcd session (lease expired or revoked) and stopped acting on its leases.',
    ),
    etcdErrors: counter(registry, 'vigil_cluster_etcd_errors_total', 'etcd calls that failed, by operation.', ['op']),
  };
}

/** The metrics of `clusterMetrics`. */
export type ClusterMetrics = ReturnType<typeof clusterMetrics>;
