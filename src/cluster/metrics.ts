import type { Registry } from 'prom-client';
import { counter, gauge } from '../lib/metrics.ts';

/** The cluster's metrics; every piece of the cluster shares one set per registry. */
export function clusterMetrics(registry: Registry) {
  return {
    members: gauge(registry, 'vigil_cluster_members', 'Cluster nodes as this node sees them, by state.', ['state']),
    leaseRemaining: gauge(
      registry,
      'vigil_cluster_lease_remaining_seconds',
      'Time left before this node stops acting on its etcd lease (0 while it has none).',
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
