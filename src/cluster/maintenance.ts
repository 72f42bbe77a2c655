import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { ClusterConfig } from './config.ts';
import type { MaintenanceState, Membership } from './membership.ts';
import type { PartitionManager } from './partitions.ts';
import { sleep } from '../lib/retry.ts';

/** Answer of GET /admin/maintenance/status. */
export interface MaintenanceStatus {
  status: MaintenanceState;
  partitions_remaining: number;
  /** With sharded events: shards the map still places on this node (the drain waits for 0). */
  shards_remaining?: number;
}

/**
 * Maintenance mode of this node, for rolling upgrades. `enable()` marks the node draining in its
 * registration, stops intake (`accepting()` turns false, health turns not-ok so /health/ready answers 503),
 * hands its partitions over one at a time, waits for in-flight batches, then reports drained. `disable()`
 * rejoins: intake resumes and partitions are taken again by the balancing rule.
 */
export interface Maintenance extends Component {
  /** Starts draining (if active) and answers the status at once; the drain goes on in the background. */
  enable(): Promise<MaintenanceStatus>;
  /** Rejoins the cluster (cancels a drain in progress). */
  disable(): Promise<MaintenanceStatus>;
  status(): MaintenanceStatus;
  /** Whether intake should take new work. */
  accepting(): boolean;
  /** Resolves once the node is drained (rejects if the drain is cancelled by disable()). */
  drained(): Promise<void>;
  /** Adds a count of batches in flight (accepted, not yet committed) that the drain waits for. */
  trackInflight(count: () => number): void;
}

/** Whether the node was in maintenance when it stopped (the state file says so). */
export function wasInMaintenance(stateFile: string): boolean {
  try {
    return (JSON.parse(readFileSync(stateFile, 'utf8')) as { state?: string }).state === 'maintenance';
  } catch {
    return false;
  }
}

/** Creates maintenance mode for this node. */
export function createMaintenance(
  config: ClusterConfig,
  deps: {
    membership: Membership;
    /** Absent on nodes that own no partitions. */
    partitions?: PartitionManager;
    /** Batches in flight (accepted, not yet committed); the drain waits for 0. */
    inflight?: () => number;
    /**
     * With sharded events: how many shards the map still places on this node. A draining node is no longer
     * eligible, so the coordinator moves its shards; the drain waits, without a time limit, until none is
     * left (its replicas are dropped only once their successors serve), so that stopping a drained node
     * never takes a shard below R copies. `disable()` ends the wait.
     */
    shardsHeld?: () => number;
    /** Told when intake should stop (false) or resume (true). */
    onIntakeChange?: (accepting: boolean) => void;
    /**
     * Where the maintenance state is kept across restarts (`<data dir>/maintenance.json`): a node drained for
     * an upgrade comes back drained, and rejoins only when an operator disables maintenance.
     */
    stateFile?: string;
    logger: Logger;
  },
): Maintenance {
  const log = deps.logger.child({ component: 'cluster-maintenance' });
  let state: MaintenanceState = 'active';
  let run = 0;
  let waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const counts = deps.inflight ? [deps.inflight] : [];
  const inflight = () => counts.reduce((sum, count) => sum + count(), 0);

  const remaining = () => deps.partitions?.owned().size ?? 0;
  const status = (): MaintenanceStatus => ({
    status: state,
    partitions_remaining: remaining(),
    ...(deps.shardsHeld ? { shards_remaining: deps.shardsHeld() } : {}),
  });

  const persist = (s: MaintenanceState) => {
    if (!deps.stateFile) return;
    try {
      const tmp = `${deps.stateFile}.tmp`;
      writeFileSync(tmp, `${JSON.stringify({ state: s === 'active' ? 'active' : 'maintenance' })}\n`, { mode: 0o600 });
      renameSync(tmp, deps.stateFile);
    } catch (err) {
      log.error({ err: errorMessage(err), file: deps.stateFile }, 'Could not save the maintenance state.');
    }
  };

  const setState = async (s: MaintenanceState) => {
    state = s;
    if (s !== 'drained') persist(s);
    await deps.membership
      .update({ state: s })
      .catch((err) => log.warn({ err: errorMessage(err) }, 'Could not publish the maintenance state.'));
  };

  const drain = async (id: number) => {
    await deps.partitions?.drain();
    if (id !== run) return;
    if (deps.shardsHeld && deps.shardsHeld() > 0) {
      log.info({ shards: deps.shardsHeld() }, 'Waiting for the shards of this node to move to other nodes.');
      while (deps.shardsHeld() > 0 && id === run) await sleep(200);
      if (id !== run) return;
    }
    const until = Date.now() + config.drain_timeout_ms;
    while (inflight() > 0 && Date.now() < until && id === run) await sleep(50);
    if (id !== run) return;
    if (inflight() > 0) {
      log.warn({ inflight: inflight() }, 'In-flight batches did not finish within drain_timeout_ms.');
    }
    await setState('drained');
    log.info('This node is drained: it owns no partition and no shard, and takes no intake.');
    for (const w of waiters.splice(0)) w.resolve();
  };

  const maintenance: Maintenance = {
    name: 'cluster-maintenance',
    async enable() {
      if (state !== 'active') return status();
      const id = ++run;
      log.info({ partitions: remaining() }, 'Maintenance enabled: draining this node.');
      deps.onIntakeChange?.(false);
      await setState('draining');
      void drain(id).catch((err) => log.error({ err: errorMessage(err) }, 'The drain failed.'));
      return status();
    },
    async disable() {
      if (state === 'active') return status();
      run++;
      for (const w of waiters.splice(0)) w.reject(new Error('maintenance was disabled before the drain finished'));
      await setState('active');
      deps.partitions?.resume();
      deps.onIntakeChange?.(true);
      log.info('Maintenance disabled: this node rejoins the cluster.');
      return status();
    },
    status,
    accepting: () => state === 'active',
    trackInflight(count) {
      counts.push(count);
    },
    drained() {
      if (state === 'drained') return Promise.resolve();
      if (state === 'active') return Promise.reject(new Error('maintenance is not enabled'));
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
    async start() {
      if (deps.stateFile && wasInMaintenance(deps.stateFile)) {
        log.info('This node was in maintenance when it stopped; it stays drained until maintenance is disabled.');
        await maintenance.enable();
      }
    },
    async stop() {
      run++;
      const pending = waiters;
      waiters = [];
      for (const w of pending) w.reject(new Error('the node is stopping'));
    },
    health(): ComponentHealth {
      return state === 'active' ? { ok: true } : { ok: false, detail: `maintenance: ${state}` };
    },
  };
  return maintenance;
}
