import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { ClusterConfig } from './config.ts';
import { createMaintenance, type Maintenance, wasInMaintenance } from './maintenance.ts';
import { createMembership, type Membership } from './membership.ts';
import { createPartitionManager, type PartitionManager, runsDetect } from './partitions.ts';
import { createEtcdSession, type EtcdSession } from './session.ts';
import {
  createShardCountCheck,
  createShardMap,
  runsStore,
  type ShardMapConfig,
  type ShardMapService,
} from './shards/index.ts';

export { type ClusterConfig, clusterConfigSchema } from './config.ts';
export { ClusterError, type ClusterErrorCode } from './errors.ts';
export type { Maintenance, MaintenanceStatus } from './maintenance.ts';
export { createMaintenance } from './maintenance.ts';
export type { MaintenanceState, Membership, NodeRegistration, NodeState, NodeView } from './membership.ts';
export { createMembership } from './membership.ts';
export type { OwnershipListener, PartitionManager, PartitionOwner } from './partitions.ts';
export { createPartitionManager, partitionOf, partitionQuota, runsDetect } from './partitions.ts';
export type { EtcdSession } from './session.ts';
export type {
  ReplicaState,
  ShardAssignment,
  ShardMap,
  ShardMapConfig,
  ShardMapService,
  ShardReplica,
} from './shards/index.ts';
export { createShardMap, shardOf, shardPredicate } from './shards/index.ts';
export { createEtcdSession } from './session.ts';

/**
 * Cluster mode of one node: its etcd session, membership, partition ownership and maintenance mode, as one
 * component that starts them in that order and stops them in reverse. Each part is a component of its own
 * and is reachable here for routes and for the components that act on ownership.
 */
export interface Cluster extends Component {
  readonly nodeId: string;
  readonly session: EtcdSession;
  readonly membership: Membership;
  readonly partitions: PartitionManager;
  readonly maintenance: Maintenance;
  /** The shard map when the events are sharded (`store.shards` > 1); undefined otherwise. */
  readonly shards: ShardMapService | undefined;
}

/**
 * Base URLs (`http://host:port`) of the other live store nodes that are not in maintenance, in membership
 * order: where a search goes when this node holds no replica or its replica fails.
 */
export function storePeers(cluster: Pick<Cluster, 'nodeId' | 'membership'>): string[] {
  return cluster.membership
    .nodes()
    .filter(
      (n) =>
        n.id !== cluster.nodeId && n.state === 'Alive' && n.maintenance === 'active' && n.address && runsStore(n.roles),
    )
    .map((n) => `http://${n.address}`);
}

/** What the cluster needs from the app. */
export interface ClusterDeps {
  /** The node's roles (`roles` in the config); nodes that run detect take partitions. */
  roles: string[];
  /** Vigil's version, shown in the status API. */
  version: string;
  /** host:port of this node's HTTP API when `cluster.advertise_addr` is unset (`http.addr`). */
  httpAddr: string;
  metrics: Registry;
  logger: Logger;
  /** Batches in flight; maintenance waits for 0 before reporting drained. */
  inflight?: () => number;
  /** Told when intake should stop (maintenance) or resume. */
  onIntakeChange?: (accepting: boolean) => void;
  /** The node's data folder: the maintenance state is kept there across restarts. */
  dataDir?: string;
  /** Sharding of the events (`store.shards`, ...); a shard map runs when `shards` > 1. */
  sharding?: Omit<ShardMapConfig, 'key_prefix' | 'refresh_interval_ms'>;
}

/** Creates cluster mode for this node; opens nothing until start(). */
export function createCluster(config: ClusterConfig, deps: ClusterDeps): Cluster {
  const nodeId = config.node_id ?? hostname();
  const logger = deps.logger.child({ node: nodeId });
  const session = createEtcdSession(config, { nodeId, metrics: deps.metrics, logger });
  const stateFile = deps.dataDir ? join(deps.dataDir, 'maintenance.json') : undefined;
  // A node restarted in maintenance registers as draining and takes no partition, so that the others do
  // not hand it partitions only to take them back.
  const inMaintenance = stateFile !== undefined && wasInMaintenance(stateFile);
  const membership = createMembership(config, {
    session,
    roles: deps.roles,
    version: deps.version,
    httpAddr: config.advertise_addr ?? deps.httpAddr,
    initialState: inMaintenance ? 'draining' : 'active',
    metrics: deps.metrics,
    logger,
  });
  const partitions = createPartitionManager(config, {
    session,
    membership,
    participate: runsDetect(deps.roles),
    metrics: deps.metrics,
    logger,
  });
  const shards =
    deps.sharding && deps.sharding.shards > 1
      ? createShardMap(
          { ...deps.sharding, key_prefix: config.key_prefix, refresh_interval_ms: config.refresh_interval_ms },
          { session, membership, participate: runsStore(deps.roles), metrics: deps.metrics, logger },
        )
      : undefined;
  const maintenance = createMaintenance(config, {
    membership,
    partitions,
    inflight: deps.inflight,
    ...(shards
      ? {
          shardsHeld: () => shards.current().assignment.filter((a) => a.replicas.some((r) => r.node === nodeId)).length,
        }
      : {}),
    onIntakeChange: deps.onIntakeChange,
    stateFile,
    logger,
  });
  if (inMaintenance) void partitions.drain();
  const shardCheck = deps.sharding
    ? [createShardCountCheck(deps.sharding.shards, { session, keyPrefix: config.key_prefix })]
    : [];
  const parts: Component[] = [session, ...shardCheck, membership, partitions, ...(shards ? [shards] : []), maintenance];
  const started: Component[] = [];

  const stop = async (deadline: number) => {
    for (const part of started.reverse()) {
      try {
        await part.stop(deadline);
      } catch (err) {
        logger.error({ component: part.name, err: errorMessage(err) }, 'A cluster component failed to stop.');
      }
    }
    started.length = 0;
  };

  return {
    name: 'cluster',
    nodeId,
    session,
    membership,
    partitions,
    maintenance,
    shards,
    async start() {
      for (const part of parts) {
        try {
          await part.start();
        } catch (err) {
          await stop(Date.now() + config.etcd_timeout_ms);
          throw new Error(`${part.name} failed to start: ${errorMessage(err)}`, { cause: err });
        }
        started.push(part);
      }
    },
    stop,
    health(): ComponentHealth {
      const m = maintenance.health();
      if (!m.ok) return m;
      // An etcd outage must not take intake out of the load balancer: ready stays true, the detail says why
      // this node owns nothing.
      if (!session.isUp()) return { ok: true, detail: 'etcd unreachable: this node owns no partition' };
      return { ok: true };
    },
  };
}
