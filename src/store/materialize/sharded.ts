import type { Registry } from 'prom-client';
import type { EventStream } from '../../bus/jetstream/index.ts';
import { type ShardMap, type ShardMapService, shardPredicate } from '../../cluster/shards/index.ts';
import type { Component, ComponentHealth } from '../../lib/component.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge } from '../../lib/metrics.ts';
import { backoffDelay, sleep } from '../../lib/retry.ts';
import type { EventStore } from '../index.ts';
import { EVENTS_TABLE } from '../schema.ts';
import type { MaterializeConfig } from './config.ts';
import {
  createMaterializer,
  type Materializer,
  POSITIONS_DDL,
  POSITIONS_TABLE,
  type ReplicaLag,
  shardConsumerName,
} from './index.ts';

/** A store node's replicas of the shards the map gives it. */
export interface ShardReplicas extends Materializer {
  /** Shards this node consumes now, with their lag. */
  shardLags(): Map<number, number>;
  /**
   * Whether this node may answer a search's part for `shard` now: it consumes the shard, is not dropping it,
   * and its own map gives it the shard as `serving` or `draining` (complete). Undefined when it may not;
   * otherwise a check to make once the answer is read: false when the shard's drop began meanwhile (its
   * rows may be gone from what was read), so the answer must not be used.
   */
  serves(shard: number): (() => boolean) | undefined;
}

/**
 * Follows the shard map on a store node: one materializer (a durable consumer filtered on the shard's
 * subject) per shard the map gives this node, in any state; a shard taken away is stopped, its consumer
 * deleted, its rows and position removed (the coordinator takes a replica away only once the shard's new
 * replicas serve). Reports each shard's lag to the map every lag poll, which is how a `catching_up` replica
 * becomes `serving`.
 *
 * History: a new replica reads its shard from the stream's first message. Events the stream no longer holds
 * (older than `bus.jetstream.max_age_seconds`) are not copied from a serving replica yet: the replica serves
 * once it has read what the stream holds (see docs/deployment.md, "Shards").
 */
export function createShardReplicas(
  config: MaterializeConfig,
  deps: {
    map: ShardMapService;
    stream: EventStream;
    store: EventStore;
    nodeId: string;
    metrics: Registry;
    logger: Logger;
  },
): ShardReplicas {
  const log = deps.logger;
  const S = deps.map.shards;
  const base = config.consumer || `store-${deps.nodeId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const running = new Map<number, Materializer>();
  /** The map revision each running shard was started from (the coordinator's proof of a fresh report). */
  const since = new Map<number, number>();
  /**
   * Per shard, how many drops began: a search part read while it changed may lack rows. A search node whose
   * map is older than this node's may still ask it for a shard it is dropping; it must then ask another.
   */
  const drops = new Map<number, number>();
  const dropping = new Set<number>();
  let started = false;
  let purged = false;
  let applying: Promise<void> | undefined;
  let again = false;
  let off: (() => void) | undefined;
  let poller: NodeJS.Timeout | undefined;
  let lastError: string | undefined;
  const halt = new AbortController();

  const shardLag = gauge(
    deps.metrics,
    'vigil_store_shard_lag_messages',
    "Messages of a shard's subject not yet written to this node's replica of it.",
    ['shard'],
  );
  const held = gauge(deps.metrics, 'vigil_store_shards_held', 'Shards this store node consumes.');
  const dropped = counter(
    deps.metrics,
    'vigil_store_shards_dropped_total',
    'Shards this node stopped keeping (its rows deleted) after the map moved them.',
  );

  const mine = (map: ShardMap): Set<number> =>
    new Set(map.assignment.filter((a) => a.replicas.some((r) => r.node === deps.nodeId)).map((a) => a.shard));

  /**
   * Shards this replica holds rows of from an earlier run (a position row of `<consumer>-s<k>`) that the map
   * no longer gives it: a node that was gone past the grace period, whose shards went elsewhere. Without
   * this, its search would still answer from them and an event would be stored more than R times.
   */
  const leftovers = async (want: Set<number>): Promise<number[]> => {
    const rows = await deps.store.query<{ consumer: string }>(
      `SELECT DISTINCT consumer FROM ${POSITIONS_TABLE} WHERE startsWith(consumer, {prefix:String})`,
      { prefix: `${base}-s` },
    );
    const out: number[] = [];
    for (const { consumer } of rows) {
      const shard = Number(consumer.slice(base.length + 2));
      if (Number.isInteger(shard) && shard >= 0 && shard < S && !want.has(shard) && !running.has(shard))
        out.push(shard);
    }
    return out;
  };

  const drop = async (shard: number) => {
    // Before any await: from here no search part is answered from this shard.
    drops.set(shard, (drops.get(shard) ?? 0) + 1);
    dropping.add(shard);
    try {
      await dropRows(shard);
    } finally {
      dropping.delete(shard);
    }
  };

  const dropRows = async (shard: number) => {
    const m = running.get(shard);
    if (m) await m.stop(Date.now() + 10000);
    running.delete(shard);
    since.delete(shard);
    const consumer = shardConsumerName(base, shard);
    await deps.stream.deleteConsumer(consumer);
    // Synchronous mutation: the rows are gone when the shard is reported gone.
    await deps.store.exec(
      `ALTER TABLE ${EVENTS_TABLE} DELETE WHERE ${shardPredicate(shard, S)} SETTINGS mutations_sync = 2`,
    );
    await deps.store.exec(
      `ALTER TABLE ${POSITIONS_TABLE} DELETE WHERE consumer = {consumer:String} SETTINGS mutations_sync = 2`,
      { consumer },
    );
    shardLag.remove({ shard: String(shard) });
    dropped.inc();
    log.info({ shard, consumer }, 'This node no longer keeps a shard: its consumer and rows are deleted.');
  };

  const add = async (shard: number, revision: number) => {
    const m = createMaterializer(config, {
      stream: deps.stream,
      store: deps.store,
      nodeId: deps.nodeId,
      metrics: deps.metrics,
      logger: log.child({ shard }),
      shard,
    });
    await m.start();
    running.set(shard, m);
    since.set(shard, revision);
    log.info({ shard, consumer: shardConsumerName(base, shard) }, 'This node keeps a shard now.');
  };

  /** Brings the running materializers to the map's; retried with backoff until it holds. */
  const apply = (): Promise<void> => {
    again = true;
    if (applying) return applying;
    applying = (async () => {
      for (let attempt = 1; again && started; attempt++) {
        again = false;
        const map = deps.map.current();
        const want = mine(map);
        try {
          for (const s of [...running.keys()]) if (!want.has(s)) await drop(s);
          // Once the map is known (revision > 0), and once per start.
          if (!purged && map.revision > 0) {
            await deps.store.exec(POSITIONS_DDL);
            for (const s of await leftovers(want)) await drop(s);
            purged = true;
          }
          for (const s of want) if (!running.has(s)) await add(s, map.revision);
          held.set(running.size);
          lastError = undefined;
        } catch (err) {
          lastError = `applying the shard map failed: ${errorMessage(err)}`;
          log.warn({ err: errorMessage(err), attempt }, 'Applying the shard map failed; retrying.');
          again = true;
          await sleep(backoffDelay(attempt, { initialMs: 200, maxMs: 5000 }), halt.signal);
        }
      }
    })().finally(() => {
      applying = undefined;
    });
    return applying;
  };

  const shardLags = () => {
    const out = new Map<number, number>();
    // A replica that has not measured its lag yet reports nothing: it stays catching_up.
    for (const [s, m] of running) if (m.lag().updatedAt > 0) out.set(s, m.lag().lagMessages);
    return out;
  };

  const serves = (shard: number): (() => boolean) | undefined => {
    if (!running.has(shard) || dropping.has(shard)) return undefined;
    const me = deps.map.current().assignment[shard]?.replicas.find((r) => r.node === deps.nodeId);
    if (me?.state !== 'serving' && me?.state !== 'draining') return undefined;
    const seen = drops.get(shard) ?? 0;
    return () => (drops.get(shard) ?? 0) === seen && !dropping.has(shard) && running.has(shard);
  };

  return {
    name: 'materialize',
    shardLags,
    serves,
    async start() {
      started = true;
      off = deps.map.onChange(() => void apply());
      void apply();
      poller = setInterval(() => {
        const lags = shardLags();
        for (const [s, n] of lags) shardLag.set({ shard: String(s) }, n);
        deps.map.report(lags, since);
      }, config.lag_poll_interval_ms);
      poller.unref();
    },
    async stop(deadline) {
      started = false;
      halt.abort();
      off?.();
      clearInterval(poller);
      if (applying) await applying;
      await Promise.all([...running.values()].map((m) => m.stop(deadline)));
    },
    health(): ComponentHealth {
      if (!started) return { ok: false, detail: 'stopped' };
      const lags = [...running].map(([s, m]) => `${s}:${m.lag().lagMessages}`).join(' ');
      const detail = `shards ${lags || 'none'} (shard:lag)`;
      return { ok: true, detail: lastError ? `${lastError}; ${detail}` : detail };
    },
    /** The node's lag as one figure: the sum over its shards (0 with none). */
    lag(): ReplicaLag {
      const all = [...running.values()].map((m) => m.lag());
      return {
        stream: all[0]?.stream ?? '',
        consumer: `${base}-s*`,
        appliedSeq: Math.max(0, ...all.map((l) => l.appliedSeq)),
        ackFloor: all.length > 0 ? Math.min(...all.map((l) => l.ackFloor)) : 0,
        streamLastSeq: Math.max(0, ...all.map((l) => l.streamLastSeq)),
        lagMessages: all.reduce((n, l) => n + l.lagMessages, 0),
        updatedAt: Math.min(...all.map((l) => l.updatedAt), Date.now()),
        missing: all.flatMap((l) => l.missing),
      };
    },
  };
}
