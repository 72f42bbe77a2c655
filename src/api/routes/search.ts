import type { Registry } from 'prom-client';
import { InputError, VigilError } from '../../lib/errors.ts';
import { counter, histogram } from '../../lib/metrics.ts';
import { z } from 'zod';
import type { SearchCoordinator } from '../../search/coordinator.ts';
import { ShardNotServedError } from '../../search/errors.ts';
import { planSearch, runShard } from '../../search/merge.ts';
import { SHARD_SEARCH_PATH } from '../../search/transport.ts';
import { type EventStore, SCAN_PAGE, scanPage } from '../../store/index.ts';
import { parseJsonBody } from '../body.ts';
import { parseIntParam } from '../params.ts';
import { routeDocs } from '../schemas.ts';
import { CLUSTER_PEER, principalOf, type RouteGroup } from '../server.ts';
import { parseTimeParam } from '../time.ts';

/** Default search window when `from` is not given, as in Splunk's "last 24 hours". */
const DEFAULT_WINDOW_MS = 24 * 3600e3;

export type { SearchAnswer } from '../../search/answer.ts';

import { runSearch } from '../../search/local.ts';

export { runSearch };

/** The replicas a clustered search can use: this node's and the other store nodes'. */
export interface SearchReplicas {
  /** This node's replica and how far behind the stream it is (undefined: this node holds none). */
  self(): { node: string; lag_messages: number } | undefined;
  /** Base URLs (`http://host:port`) of the other live store nodes, in the order to try them. */
  peers(): string[];
}

/** Marks a search forwarded by another node: it is answered locally, never forwarded again. */
const FORWARDED_HEADER = 'x-vigil-forwarded';

/**
 * GET /api/v1/search?q=&from=&to=&limit=. In a cluster the answer says which replica answered and its lag;
 * when this node's replica fails the query (or it holds none), the same request goes to the other store
 * nodes in turn, with the caller's credentials, and the first answer is returned. A node without a store
 * (no `store` role) never answers from an empty engine: every search is forwarded, or refused with 503
 * `no_replica` when no store node is known.
 */
export function searchRoutes(deps: {
  /** This node's event store; absent on a node that holds no events (no `store` role). */
  store?: EventStore;
  metrics: Registry;
  maxLimit: number;
  replicas?: SearchReplicas;
  forwardTimeoutMs?: number;
  /**
   * Spreads searches over the store's shards when it is split (S > 1): this node asks one replica of each
   * shard and merges. Unset or inactive (S = 1): the search is answered as above, with no extra hop.
   */
  coordinator?: SearchCoordinator;
}): RouteGroup {
  const latency = histogram(deps.metrics, 'vigil_search_seconds', 'Search latency.', ['kind']);
  const forwarded = counter(
    deps.metrics,
    'vigil_search_forwarded_total',
    'Searches sent to another replica because this one failed, by outcome.',
    ['outcome'],
  );

  const forward = async (url: string, authorization: string | undefined, firstError: unknown) => {
    for (const peer of deps.replicas?.peers() ?? []) {
      try {
        const res = await fetch(`${peer}${url}`, {
          headers: { ...(authorization ? { authorization } : {}), [FORWARDED_HEADER]: '1' },
          signal: AbortSignal.timeout(deps.forwardTimeoutMs ?? 30000),
        });
        // A 4xx is the query's fault, the same everywhere: it is the answer.
        if (res.status < 500) {
          forwarded.inc({ outcome: 'answered' });
          return { status: res.status, body: await res.json() };
        }
      } catch {
        // The next replica.
      }
    }
    forwarded.inc({ outcome: 'failed' });
    throw firstError;
  };

  return (app) => {
    app.get<{ Querystring: Record<string, string | undefined> }>(
      '/api/v1/search',
      routeDocs.search,
      async (req, reply) => {
        const principal = principalOf(req);
        const { q, from, to, limit } = req.query;
        if (q === undefined) throw new InputError('missing_query', 'q is required (use * to match every event)');
        const now = Date.now();
        const toMs = to === undefined ? now + 1 : parseTimeParam(to, 'to', now);
        const fromMs = from === undefined ? toMs - DEFAULT_WINDOW_MS : parseTimeParam(from, 'from', now);
        if (fromMs >= toMs) throw new InputError('bad_time_range', 'from must be earlier than to');
        const lim = limit === undefined ? 100 : parseIntParam(limit, 'limit', 0, deps.maxLimit);
        const end = latency.startTimer();
        const store = deps.store;
        const local = store ? deps.replicas?.self() : undefined;
        const mayForward = deps.replicas !== undefined && req.headers[FORWARDED_HEADER] === undefined;
        try {
          if (!store || (!local && deps.replicas)) {
            throw new VigilError(
              'no_replica',
              deps.replicas ? 'this node holds no replica' : 'this node runs no store and knows no store node',
              { status: 503, retryable: true },
            );
          }
          const coordinator = deps.coordinator;
          if (coordinator?.active()) {
            const answer = await coordinator.search(
              principal.name,
              q,
              { from: fromMs, to: toMs, limit: lim, tenants: principal.tenants, maxLimit: deps.maxLimit },
              (fn) => store.search(principal.name, fn),
            );
            end({ kind: 'events' in answer ? 'events' : 'table' });
            return answer;
          }
          const answer = await store.search(principal.name, (scope) =>
            runSearch(scope, q, { from: fromMs, to: toMs, limit: lim, tenants: principal.tenants }),
          );
          end({ kind: 'events' in answer ? 'events' : 'table' });
          return local ? { ...answer, replica: local } : answer;
        } catch (err) {
          // A timed-out search is as heavy on every replica: it is answered here, not sent on.
          if (!mayForward || !(err instanceof VigilError) || err.status < 500 || err.code === 'query_timeout')
            throw err;
          const answer = await forward(req.url, req.headers.authorization, err);
          return reply.status(answer.status).send(answer.body);
        }
      },
    );
  };
}

/** A shard call's body (see ShardRequest in search/coordinator.ts), each field bounded. */
const shardRequestSchema = z
  .object({
    q: z.string().max(100_000),
    from: z.number().finite(),
    to: z.number().finite(),
    limit: z.number().int().min(0),
    maxLimit: z.number().int().min(1),
    tenants: z.array(z.string().max(256)).max(10_000),
    now: z.number().finite(),
    user: z.string().min(1).max(256),
    shard: z.number().int().min(0),
    shards: z.number().int().min(1).max(65_536),
    stale_ok: z.boolean().optional(),
    scan: z
      .object({
        afterTs: z.number().int(),
        afterId: z.string().max(4096),
        page: z.number().int().min(1).max(SCAN_PAGE),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((r) => r.shard < r.shards, 'shard must be below shards');

/**
 * POST /internal/v1/search/shard: this node's part of one shard of a search another node coordinates
 * (search/coordinator.ts). Only the cluster peer token reaches it (server.ts); the query is parsed and
 * compiled here, never taken as SQL, and run as the user's search (admission, deadline).
 */
export function shardSearchRoutes(deps: {
  store: EventStore;
  /** This node's id and how far its replica is behind the stream. */
  replica: () => { node: string; lag_messages: number };
  maxLimit: number;
  /**
   * Whether this node serves a shard now (see ShardReplicas.serves): undefined refuses the part (503
   * `shard_not_served`, the asker tries the next replica); the check returned is made again after the read.
   * Absent: every shard is answered from the rows held (one shard, or a store without a shard map).
   */
  serves?: (shard: number) => (() => boolean) | undefined;
  /**
   * Whether every stored row is of `shard` (see ShardReplicas.holdsOnly): the part is then read without the
   * shard filter, and read again with it when the check returned fails after the read.
   */
  holdsOnly?: (shard: number, shards: number) => (() => boolean) | undefined;
}): RouteGroup {
  return (app) => {
    app.post(SHARD_SEARCH_PATH, routeDocs.shardSearch, async (req) => {
      if (principalOf(req) !== CLUSTER_PEER) {
        throw new VigilError('forbidden', 'a node-to-node route answers the cluster peer token only', { status: 403 });
      }
      const parsed = shardRequestSchema.safeParse(parseJsonBody(req.body));
      if (!parsed.success) {
        throw new InputError('bad_shard_request', `the shard request is malformed: ${parsed.error.issues[0]?.message}`);
      }
      const r = parsed.data;
      const replica = deps.replica();
      // A part read from a shard this node does not serve (or drops meanwhile) could lack rows: a wrong count,
      // not a partial one. Refused, so the asker tries another replica. `stale_ok` (diagnostics) reads anyway.
      const still = r.stale_ok || !deps.serves ? () => true : deps.serves(r.shard);
      if (still === undefined) {
        throw new ShardNotServedError(replica.node, r.shard, 'its map does not give it the shard as serving');
      }
      const checked = <T>(answer: T): T => {
        if (!still()) throw new ShardNotServedError(replica.node, r.shard, 'it began dropping the shard');
        return answer;
      };
      const scan = r.scan;
      if (scan !== undefined) {
        // A page of a retro-hunt's scan: each page has store.query_timeout_ms of its own, as in a local hunt.
        const rows = await deps.store.search(
          r.user,
          (scope) =>
            scanPage(scope, {
              tenants: r.tenants,
              from: r.from,
              to: r.to,
              ...scan,
              shard: { index: r.shard, count: r.shards },
            }),
          { perQuery: true },
        );
        return checked({ rows, ...replica });
      }
      const plan = planSearch(r.q, {
        from: r.from,
        to: r.to,
        limit: r.limit,
        tenants: r.tenants,
        now: r.now,
        maxLimit: Math.min(r.maxLimit, deps.maxLimit),
      });
      const sole = deps.holdsOnly?.(r.shard, r.shards);
      const result = await deps.store.search(r.user, async (scope) => {
        if (sole !== undefined) {
          const unfiltered = await runShard(scope, plan, r.shard, r.shards, true);
          if (sole()) return unfiltered;
        }
        return runShard(scope, plan, r.shard, r.shards);
      });
      return checked({ ...result, ...replica });
    });
  };
}
