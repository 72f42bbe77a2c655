import type { Registry } from 'prom-client';
import { VigilError } from '../lib/errors.ts';
import { counter, histogram } from '../lib/metrics.ts';
import type { NormalizedEvent } from '../lib/event.ts';
import { rowToNormalized, SCAN_PAGE, type ScanRow, type SearchScope } from '../store/index.ts';
import type { SearchAnswer } from './answer.ts';
import type { SearchConfig } from './config.ts';
import { NoShardAnsweredError } from './errors.ts';
import { mergeShards, planSearch, type ShardResult } from './merge.ts';

/**
 * The shard map as the fan-out reads it: the shape of `ShardMap` in src/cluster/shards/types.ts (which
 * builds and keeps it), of which only this much is needed here.
 */
export interface ShardMapView {
  revision: number;
  shards: number;
  assignment: ReadonlyArray<{
    shard: number;
    replicas: ReadonlyArray<{ node: string; state: 'serving' | 'catching_up' | 'draining'; lag_messages: number }>;
  }>;
}

/** What the coordinator asks of one replica: the query as the client wrote it, never SQL, and its bounds. */
export interface ShardRequest {
  q: string;
  from: number;
  to: number;
  limit: number;
  /** The cap on limit and heads, as on the coordinator (a shard caps it by its own). */
  maxLimit: number;
  /** The tenants the client may read: the coordinator authenticated the client, the shard trusts the peer. */
  tenants: string[];
  /** The instant `now` means, fixed by the coordinator so every shard reads `now-15m` alike. */
  now: number;
  /** The user whose search this is: the shard admits it among that user's searches. */
  user: string;
  shard: number;
  shards: number;
  /**
   * A page of a scan (retro-hunts) instead of the query: the shard's next `page` events in (ts, id) order
   * after the cursor; `q` is then `*`.
   */
  scan?: { afterTs: number; afterId: string; page: number };
}

/** A replica's answer: its rows and count, which node it is and how far behind the stream. */
export interface ShardResponse extends ShardResult {
  node: string;
  lag_messages: number;
  /** Size of the answer as received, counted against search.max_gathered_bytes. */
  bytes: number;
}

/**
 * The bytes a search may still gather, shared by all its shard calls as they read: a call takes bytes as
 * they arrive and fails when the budget is spent; a call that fails or is cancelled gives its bytes back.
 */
export interface ByteBudget {
  /** The whole budget (search.max_gathered_bytes), for the error that names it. */
  readonly limit: number;
  /** Takes `n` bytes; false (and nothing taken) when fewer are left. */
  take(n: number): boolean;
  give(n: number): void;
}

/** Node-to-node calls to a shard replica (HTTP with the cluster credential in production; see transport.ts). */
export interface ShardTransport {
  /**
   * Asks `node` for its part of a search; rejects on any failure (a VigilError with status < 500 is the
   * query's own fault, the same on every replica). Reads within `budget` (rejecting with
   * SearchTooLargeError past it), and stops when `signal` aborts.
   */
  call(node: string, request: ShardRequest, opts: { signal: AbortSignal; budget: ByteBudget }): Promise<ShardResponse>;
}

/** Which replica answered for a shard, and its lag. */
export interface ShardAnswered {
  shard: number;
  node: string;
  lag_messages: number;
}

/** A fanned-out answer: the merged answer, who answered each shard, and the shards none answered. */
export type FanoutAnswer = SearchAnswer & {
  shards: ShardAnswered[];
  partial?: true;
  missing_shards?: number[];
};

/** Spreads searches over the shards of the shard map and merges the shards' parts. */
export interface SearchCoordinator {
  /** True when the store is split (S > 1): only then does a search take the fan-out path. */
  active(): boolean;
  /**
   * Answers a search from one serving replica of each shard; `merge` runs the merge in this node's engine
   * (within the user's admitted search). Throws QuerySyntaxError before any call for a bad query.
   */
  search(
    user: string,
    q: string,
    opts: { from: number; to: number; limit: number; tenants: string[]; maxLimit: number },
    merge: <T>(fn: (scope: SearchScope) => Promise<T>) => Promise<T>,
  ): Promise<FanoutAnswer>;
  /**
   * Reads the stored events of a time range from every shard in (ts, id) order, merged: retro-hunts. Each
   * shard is read a page at a time from one replica (the next one when a call fails, hedged as searches
   * are); a shard with none left is left out and named by `missing()`.
   */
  scan(user: string, opts: { tenants: string[]; from: number; to: number; max: number }): FanoutScan;
}

/** A merged scan of every shard: the events, then who answered each shard and which had no replica. */
export interface FanoutScan {
  events: AsyncGenerator<NormalizedEvent>;
  /** Shards none of whose replicas answered (after the scan ended). */
  missing(): number[];
  /** Per shard, the replica that answered its last page. */
  shards(): ShardAnswered[];
}

/** Creates the coordinator; it holds no resources (calls and timers live within a search). */
export function createSearchCoordinator(
  config: SearchConfig,
  deps: { nodeId: string; shardMap: () => ShardMapView | undefined; transport: ShardTransport; metrics: Registry },
): SearchCoordinator {
  const calls = counter(
    deps.metrics,
    'vigil_search_shard_calls_total',
    'Node-to-node shard calls of fanned-out searches, by outcome (answered, failed, refused, cancelled).',
    ['outcome'],
  );
  const hedges = counter(
    deps.metrics,
    'vigil_search_shard_hedges_total',
    'Shard calls sent to a second replica because the first had not answered after search.hedge_after_ms.',
  );
  const partials = counter(
    deps.metrics,
    'vigil_search_partial_total',
    'Fanned-out searches answered partial: a shard had no replica that answered.',
  );
  const gatherSeconds = histogram(
    deps.metrics,
    'vigil_search_gather_seconds',
    'Time from the first shard call to the last shard answer of a fanned-out search.',
  );

  /** Serving (and draining: still complete) replicas, this node's first (no hop), then the least behind. */
  function candidates(replicas: ShardMapView['assignment'][number]['replicas']): string[] {
    return replicas
      .filter((r) => r.state === 'serving' || r.state === 'draining')
      .sort(
        (a, b) =>
          Number(b.node === deps.nodeId) - Number(a.node === deps.nodeId) ||
          Number(a.state === 'draining') - Number(b.state === 'draining') ||
          a.lag_messages - b.lag_messages ||
          a.node.localeCompare(b.node),
      )
      .map((r) => r.node);
  }

  /**
   * Asks one shard: the first replica, the next one as soon as a call fails, and a hedge to the next one
   * when none answered after hedge_after_ms; the first answer wins and the other calls are aborted.
   * Resolves undefined when every replica failed; rejects with a query error (4xx), the same on all.
   */
  function askShard(
    nodes: string[],
    request: ShardRequest,
    budget: ByteBudget,
    stop: AbortSignal,
  ): Promise<ShardResponse | { failed: unknown }> {
    return new Promise((resolve, reject) => {
      let lastError: unknown = new VigilError('no_replica', 'the shard has no serving replica', { status: 503 });
      let next = 0;
      let inflight = 0;
      let done = false;
      const running = new Set<AbortController>();
      let hedgeTimer: NodeJS.Timeout | undefined;
      const finish = () => {
        done = true;
        clearTimeout(hedgeTimer);
        for (const c of running) {
          calls.inc({ outcome: 'cancelled' });
          c.abort(new VigilError('shard_call_cancelled', 'another replica answered first'));
        }
        running.clear();
      };
      const launch = (): boolean => {
        if (done || next >= nodes.length) return false;
        const node = nodes[next++];
        const controller = new AbortController();
        running.add(controller);
        inflight++;
        const timer = setTimeout(
          () =>
            controller.abort(new VigilError('shard_call_timeout', `no answer in ${config.shard_call_timeout_ms} ms`)),
          config.shard_call_timeout_ms,
        );
        // Bytes of a call that loses (cancelled, failed) go back to the budget; the winner's stay taken.
        let taken = 0;
        const callBudget: ByteBudget = {
          limit: budget.limit,
          take: (n) => {
            if (!budget.take(n)) return false;
            taken += n;
            return true;
          },
          give: (n) => {
            budget.give(n);
            taken -= n;
          },
        };
        deps.transport.call(node, request, { signal: controller.signal, budget: callBudget }).then(
          (answer) => {
            clearTimeout(timer);
            running.delete(controller);
            inflight--;
            if (done) {
              budget.give(taken);
              return;
            }
            calls.inc({ outcome: 'answered' });
            finish();
            resolve(answer);
          },
          (err: unknown) => {
            clearTimeout(timer);
            running.delete(controller);
            inflight--;
            budget.give(taken);
            if (done) return;
            if (err instanceof VigilError && err.status < 500) {
              calls.inc({ outcome: 'refused' });
              finish();
              reject(err);
              return;
            }
            calls.inc({ outcome: 'failed' });
            lastError = err;
            if (!launch() && inflight === 0) {
              finish();
              resolve({ failed: lastError });
            }
          },
        );
        return true;
      };
      if (stop.aborted || !launch()) {
        done = true;
        resolve({ failed: lastError });
        return;
      }
      // The search failed elsewhere (a query error, too large): this shard's calls stop too.
      stop.addEventListener(
        'abort',
        () => {
          if (done) return;
          finish();
          resolve({ failed: stop.reason });
        },
        { once: true },
      );
      hedgeTimer = setTimeout(() => {
        if (launch()) hedges.inc();
      }, config.hedge_after_ms);
    });
  }

  /** A budget of its own for each call of a scan: the buffered pages of all shards stay within the limit. */
  function pageBudget(shards: number): ByteBudget {
    let left = Math.floor(config.max_gathered_bytes / Math.max(1, shards));
    return {
      limit: config.max_gathered_bytes,
      take: (n) => {
        if (n > left) return false;
        left -= n;
        return true;
      },
      give: (n) => {
        left += n;
      },
    };
  }

  return {
    scan(user, opts) {
      const missing: number[] = [];
      const answered = new Map<number, ShardAnswered>();
      const map = deps.shardMap();
      async function* events(): AsyncGenerator<NormalizedEvent> {
        if (map === undefined) {
          throw new VigilError('no_shard_map', 'the shard map is not known yet', { status: 503, retryable: true });
        }
        const now = Date.now();
        // One cursor and buffer per shard: each row is read once, and the smallest head is yielded next.
        const cursors = map.assignment.map(({ shard, replicas }) => ({
          shard,
          nodes: candidates(replicas),
          buffer: [] as ScanRow[],
          at: 0,
          afterTs: opts.from - 1,
          afterId: '',
          done: false,
        }));
        const stop = new AbortController();
        const refill = async (c: (typeof cursors)[number]) => {
          const request: ShardRequest = {
            q: '*',
            from: opts.from,
            to: opts.to,
            limit: 0,
            maxLimit: 1,
            tenants: opts.tenants,
            now,
            user,
            shard: c.shard,
            shards: map.shards,
            scan: { afterTs: c.afterTs, afterId: c.afterId, page: SCAN_PAGE },
          };
          const answer = await askShard(c.nodes, request, pageBudget(map.shards), stop.signal);
          if ('failed' in answer) {
            missing.push(c.shard);
            c.done = true;
            c.buffer = [];
            c.at = 0;
            return;
          }
          answered.set(c.shard, { shard: c.shard, node: answer.node, lag_messages: shardLag(map, c.shard, answer) });
          // Rows of a peer's scanPage (authenticated by the peer token), as the engine gave them.
          c.buffer = answer.rows as unknown as ScanRow[];
          c.at = 0;
          if (c.buffer.length < SCAN_PAGE) c.done = true;
          const last = c.buffer.at(-1);
          if (last !== undefined) {
            c.afterTs = Number(last.ts_ms);
            c.afterId = last.id;
          }
        };
        try {
          await Promise.all(cursors.map(refill));
          let yielded = 0;
          while (yielded < opts.max) {
            let best: (typeof cursors)[number] | undefined;
            for (const c of cursors) {
              if (c.at >= c.buffer.length) continue;
              if (best === undefined || compareScanRows(c.buffer[c.at], best.buffer[best.at]) < 0) best = c;
            }
            if (best === undefined) return;
            yield rowToNormalized(best.buffer[best.at++]);
            yielded++;
            // A shard's buffer ran out: its next page comes before any other row can be known to be next.
            if (best.at >= best.buffer.length && !best.done) await refill(best);
          }
        } finally {
          stop.abort();
        }
      }
      return {
        events: events(),
        missing: () => [...missing].sort((a, b) => a - b),
        shards: () => [...answered.values()].sort((a, b) => a.shard - b.shard),
      };
    },

    active() {
      const map = deps.shardMap();
      return map !== undefined && map.shards > 1;
    },

    async search(user, q, opts, merge) {
      const started = performance.now();
      const map = deps.shardMap();
      if (map === undefined)
        throw new VigilError('no_shard_map', 'the shard map is not known yet', { status: 503, retryable: true });
      const now = Date.now();
      // Planned here first: a bad query is refused before any call.
      const plan = planSearch(q, { ...opts, now });
      let left = config.max_gathered_bytes;
      const budget: ByteBudget = {
        limit: config.max_gathered_bytes,
        take: (n) => {
          if (n > left) return false;
          left -= n;
          return true;
        },
        give: (n) => {
          left += n;
        },
      };
      const stop = new AbortController();
      const endGather = gatherSeconds.startTimer();
      const asked = map.assignment.map(async ({ shard, replicas }) => {
        const request: ShardRequest = { q, ...opts, now, user, shard, shards: map.shards };
        return { shard, answer: await askShard(candidates(replicas), request, budget, stop.signal) };
      });
      let gathered: { shard: number; answer: ShardResponse | { failed: unknown } }[];
      try {
        gathered = await Promise.all(asked);
      } catch (err) {
        stop.abort();
        throw err;
      } finally {
        endGather();
      }
      const answered = gathered.filter((g) => !('failed' in g.answer)) as { shard: number; answer: ShardResponse }[];
      const failed = gathered.flatMap((g) => ('failed' in g.answer ? [{ shard: g.shard, why: g.answer.failed }] : []));
      const missing = failed.map((g) => g.shard);
      if (answered.length === 0) throw new NoShardAnsweredError(missing, failed[0]?.why);
      const merged = await merge((scope) =>
        mergeShards(
          scope,
          plan,
          answered.map((a) => a.answer),
          started,
        ),
      );
      const shards = answered.map(({ shard, answer }) => ({
        shard,
        node: answer.node,
        lag_messages: shardLag(map, shard, answer),
      }));
      if (missing.length === 0) return { ...merged, shards };
      partials.inc();
      return { ...merged, shards, partial: true, missing_shards: missing };
    },
  };
}

/** The order of a scan, as the engine sorts (ts, id): times, then ids byte by byte. */
function compareScanRows(a: ScanRow, b: ScanRow): number {
  return Number(a.ts_ms) - Number(b.ts_ms) || Buffer.compare(Buffer.from(a.id), Buffer.from(b.id));
}

/**
 * A replica's lag on one shard: what its node last reported for the shard in the map, else what it answered
 * (its whole replica's lag, which bounds the shard's).
 */
function shardLag(map: ShardMapView, shard: number, answer: ShardResponse): number {
  const entry = map.assignment.find((a) => a.shard === shard)?.replicas.find((r) => r.node === answer.node);
  return entry?.lag_messages ?? answer.lag_messages;
}
