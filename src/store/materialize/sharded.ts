import type { Registry } from 'prom-client';
import type { EventStream } from '../../bus/jetstream/index.ts';
import { type ShardMap, type ShardMapService, shardPredicate } from '../../cluster/shards/index.ts';
import type { ComponentHealth } from '../../lib/component.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge } from '../../lib/metrics.ts';
import { backoffDelay, sleep } from '../../lib/retry.ts';
import type { RangeCopy } from '../copy/index.ts';
import type { EventStore } from '../index.ts';
import { EVENTS_TABLE } from '../schema.ts';
import type { MaterializeConfig } from './config.ts';
import { ensureGapsTable, GAPS_TABLE, gapKey } from './gaps.ts';
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
  /**
   * Shards this node consumes now, with their lag; a shard whose history is still being copied (or cannot
   * be: no peer holds it) is left out, so its replica stays `catching_up`.
   */
  shardLags(): Map<number, number>;
  /**
   * Whether this node may answer a search's part for `shard` now: it consumes the shard, is not dropping it,
   * and its own map gives it the shard as `serving` or `draining` (complete). Undefined when it may not;
   * otherwise a check to make once the answer is read: false when the shard's drop began meanwhile (its
   * rows may be gone from what was read), so the answer must not be used.
   */
  serves(shard: number): (() => boolean) | undefined;
  /**
   * Whether every row of this node's events table is of `shard`, so that a search part for it needs no
   * shard filter (which reads every row's id and hashes it: over 2.5M events of one shard,
   * `* | stats count() by Channel` took 192 CPU-ms with it and 81 without). Undefined when other shards' rows
   * may be there (held, being added or dropped, or found by the scan at start, see `heldShards`); otherwise a
   * check to make once the part is read: false when a shard was added or dropped meanwhile, so the part must
   * be read again with the filter.
   */
  holdsOnly(shard: number, shards: number): (() => boolean) | undefined;
  /**
   * The shards whose rows the events table may hold: those found by one scan of the table at start (after
   * leftovers are deleted) and those held, added or being dropped since. Undefined until the scan ended
   * (or when it failed: the filter is then always applied).
   */
  heldShards(): ReadonlySet<number> | undefined;
}

/** Whether a replica of a shard holds all its history: no range of it is missing or being copied. */
function complete(m: Materializer): boolean {
  return m.lag().missing.every((g) => g.state === 'copied');
}

/**
 * Follows the shard map on a store node: one materializer (a durable consumer filtered on the shard's
 * subject) per shard the map gives this node, in any state; a shard taken away is stopped, its consumer
 * deleted, its rows and position removed (the coordinator takes a replica away only once the shard's new
 * replicas serve). Reports each shard's lag to the map every lag poll, which is how a `catching_up` replica
 * becomes `serving`.
 *
 * History: a new replica reads its shard from the stream's first message; the shard's messages the stream no
 * longer holds (older than `bus.jetstream.max_age_seconds`, or past its size) are copied from a serving
 * replica of the shard (`copy`, filtered by shard), and the replica reports a lag, and so may serve, only once
 * both are done (ADR 0008). This node serves its complete shards to new replicas the same way.
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
    /** Copies a new replica's history from a peer, and serves this node's shards to peers. */
    copy?: RangeCopy;
    /** store.copy.retry_interval_ms: the longest wait before a failed copy is tried again. */
    copyRetryMs?: number;
    /** store.retention_days. */
    retentionDays?: number;
    /** The store's folder was rebuilt from a backup (see createMaterializer). */
    restored?: boolean;
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
  /** Shards whose materializer is starting: their rows may be written before `running` has them. */
  const adding = new Set<number>();
  /**
   * Shards given a materializer since start whose rows are not known to be gone: one leaves only when its drop
   * ended whole (its materializer stopped within the deadline, consumer and rows deleted) and no row of it is
   * found after. A failed drop, or a materializer still writing past its stop, keeps the shard filter on.
   */
  const mayHold = new Set<number>();
  /** Shards found in the table by the scan at start, less those dropped since; undefined until it ended. */
  let scanned: Set<number> | undefined;
  let scanning = false;
  /** Adds and drops begun: a part read without the shard filter is used only if none began meanwhile. */
  let changes = 0;
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
  const missingFirst = gauge(
    deps.metrics,
    'vigil_store_shard_missing_first_sequence',
    "First stream sequence of a shard's history this replica lacks, until a copy from a serving replica fills it (0: none).",
    ['shard'],
  );
  const missingLast = gauge(
    deps.metrics,
    'vigil_store_shard_missing_last_sequence',
    "Last stream sequence of a shard's history this replica lacks, until a copy from a serving replica fills it (0: none).",
    ['shard'],
  );
  const dropped = counter(
    deps.metrics,
    'vigil_store_shards_dropped_total',
    'Shards this node stopped keeping (its rows deleted) after the map moved them.',
  );
  const scanFailures = counter(
    deps.metrics,
    'vigil_store_shard_scan_failures_total',
    'Failed scans at start of the shards the stored rows belong to (search parts then keep the shard filter).',
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
    changes++;
    dropping.add(shard);
    try {
      const settled = await dropRows(shard);
      // Its rows are gone (a synchronous mutation) unless its materializer wrote past the delete: counted after.
      if (settled && !(await holdsRowsOf(shard))) {
        mayHold.delete(shard);
        scanned?.delete(shard);
      }
    } finally {
      dropping.delete(shard);
    }
  };

  /** Whether the table holds any row of `shard` (a check after its drop). */
  const holdsRowsOf = async (shard: number): Promise<boolean> => {
    const rows = await deps.store.query(`SELECT 1 FROM ${EVENTS_TABLE} WHERE ${shardPredicate(shard, S)} LIMIT 1`, {});
    return rows.length > 0;
  };

  /**
   * Once per start, after leftovers are deleted: which shards' rows the table holds. Rows come into it only
   * through the materializers (and their copies) of the shards held since, so that finding plus what is held,
   * added or dropped since is every shard the table may hold rows of. A row without a position row (a node
   * that crashed between its first write of a shard and the position) is found here and keeps the filter on.
   * Bounded by store.query_timeout_ms: a table too large to scan in it keeps the filter on.
   */
  const scan = () => {
    if (scanning || scanned !== undefined) return;
    scanning = true;
    deps.store
      // S inlined (a checked integer): chdb runs parameterized statements one at a time in the process.
      .query<{ s: number }>(`SELECT DISTINCT murmurHash3_32(id) % ${S} AS s FROM ${EVENTS_TABLE}`, {})
      .then(
        (rows) => {
          scanned = new Set(rows.map((r) => Number(r.s)));
          log.info({ shards: [...scanned].sort((a, b) => a - b) }, 'The shards of the stored rows are known.');
        },
        (err: unknown) => {
          scanFailures.inc();
          log.warn(
            { err: errorMessage(err) },
            'Scanning the stored rows for their shards failed: search parts keep the shard filter.',
          );
        },
      )
      .finally(() => {
        scanning = false;
      });
  };

  /** Deletes a shard's consumer and rows; false when its materializer did not stop by the deadline. */
  const dropRows = async (shard: number): Promise<boolean> => {
    const m = running.get(shard);
    const deadline = Date.now() + 10000;
    if (m) await m.stop(deadline);
    // stop() returns at the deadline while a write may still be under way: that write may land after the delete.
    const settled = Date.now() < deadline;
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
    // Its missing ranges too: a replica made again later finds its own.
    await deps.store.exec(
      `ALTER TABLE ${GAPS_TABLE} DELETE WHERE endsWith(stream, {key:String}) SETTINGS mutations_sync = 2`,
      { key: gapKey('', consumer) },
    );
    shardLag.remove({ shard: String(shard) });
    missingFirst.remove({ shard: String(shard) });
    missingLast.remove({ shard: String(shard) });
    dropped.inc();
    log.info({ shard, consumer }, 'This node no longer keeps a shard: its consumer and rows are deleted.');
    return settled;
  };

  const add = async (shard: number, revision: number) => {
    changes++;
    adding.add(shard);
    mayHold.add(shard);
    try {
      await addShard(shard, revision);
    } finally {
      adding.delete(shard);
    }
  };

  const addShard = async (shard: number, revision: number) => {
    const m = createMaterializer(config, {
      stream: deps.stream,
      store: deps.store,
      nodeId: deps.nodeId,
      metrics: deps.metrics,
      logger: log.child({ shard }),
      shard,
      shards: S,
      ...(deps.copy ? { copy: deps.copy } : {}),
      ...(deps.copyRetryMs !== undefined ? { copyRetryMs: deps.copyRetryMs } : {}),
      ...(deps.retentionDays !== undefined ? { retentionDays: deps.retentionDays } : {}),
      ...(deps.restored ? { restored: true } : {}),
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
          // Also a shard whose drop failed before (no longer running, its rows maybe still there): again.
          for (const s of new Set([...running.keys(), ...mayHold])) if (!want.has(s)) await drop(s);
          // Once the map is known (revision > 0), and once per start.
          if (!purged && map.revision > 0) {
            await deps.store.exec(POSITIONS_DDL);
            await ensureGapsTable(deps.store);
            for (const s of await leftovers(want)) await drop(s);
            purged = true;
            scan();
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
    // A replica that has not measured its lag yet, or lacks history, reports nothing: it stays catching_up.
    for (const [s, m] of running) if (m.lag().updatedAt > 0 && complete(m)) out.set(s, m.lag().lagMessages);
    return out;
  };

  const serves = (shard: number): (() => boolean) | undefined => {
    if (!running.has(shard) || dropping.has(shard)) return undefined;
    const me = deps.map.current().assignment[shard]?.replicas.find((r) => r.node === deps.nodeId);
    if (me?.state !== 'serving' && me?.state !== 'draining') return undefined;
    const seen = drops.get(shard) ?? 0;
    return () => (drops.get(shard) ?? 0) === seen && !dropping.has(shard) && running.has(shard);
  };

  const heldShards = (): Set<number> | undefined => {
    if (scanned === undefined) return undefined;
    return new Set([...scanned, ...mayHold, ...running.keys(), ...adding, ...dropping]);
  };

  const holdsOnly = (shard: number, shards: number): (() => boolean) | undefined => {
    // A part cut for another shard count is not this node's to answer unfiltered.
    if (shards !== S) return undefined;
    const held = heldShards();
    if (held === undefined || held.size !== 1 || !held.has(shard)) return undefined;
    const seen = changes;
    return () => changes === seen;
  };

  /**
   * Whether this node's replica of `shard` holds every event of the shard's messages of `stream` up to
   * `toSeq`, so that it may serve them to a new replica: the map has it serving (or draining, still
   * complete), nothing of it is missing, and its consumer acknowledged every message of the shard up to
   * toSeq (the ack floor of a filtered consumer: every message of its subject at or below it is acknowledged,
   * hence written), or it is fully caught up (no message of the shard pending: a shard without messages
   * lately has an ack floor at its last message, which may be below toSeq).
   */
  const holds = (shard: { index: number; count: number }, stream: string, toSeq: number): boolean => {
    if (shard.count !== S) return false;
    const m = running.get(shard.index);
    if (!m || !complete(m)) return false;
    const state = deps.map.current().assignment[shard.index]?.replicas.find((r) => r.node === deps.nodeId)?.state;
    if (state !== 'serving' && state !== 'draining') return false;
    const l = m.lag();
    if (l.stream !== stream || l.updatedAt === 0) return false;
    return l.ackFloor >= toSeq || (l.lagMessages === 0 && l.streamLastSeq >= toSeq);
  };

  return {
    name: 'materialize',
    shardLags,
    serves,
    holdsOnly,
    heldShards,
    async start() {
      started = true;
      deps.copy?.serveShards(holds);
      off = deps.map.onChange(() => void apply());
      void apply();
      poller = setInterval(() => {
        const lags = shardLags();
        for (const [s, n] of lags) shardLag.set({ shard: String(s) }, n);
        for (const [s, m] of running) {
          const open = m.lag().missing.filter((g) => g.state !== 'copied');
          missingFirst.set({ shard: String(s) }, open[0]?.from_seq ?? 0);
          missingLast.set({ shard: String(s) }, open[open.length - 1]?.to_seq ?? 0);
        }
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
      // What a shard's replica lacks (a history no peer could copy yet), in its own words.
      const missing = [...running.values()]
        .map((m) => m.health().detail ?? '')
        .flatMap((d) => d.split('; ').filter((part) => part.startsWith('missing ')));
      const detail = [lastError, `shards ${lags || 'none'} (shard:lag)`, ...missing].filter(Boolean).join('; ');
      return { ok: true, detail };
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
