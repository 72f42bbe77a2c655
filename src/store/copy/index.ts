import { createHash, randomUUID } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Msg, Subscription } from '@nats-io/transport-node';
import type { Registry } from 'prom-client';
import type { JetStreamConnection } from '../../bus/jetstream/index.ts';
import type { Component, ComponentHealth } from '../../lib/component.ts';
import { errorMessage, VigilError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge, histogram } from '../../lib/metrics.ts';
import { backoffDelay, sleep } from '../../lib/retry.ts';
import type { EventStore } from '../index.ts';
import { coverage } from './batches.ts';
import type { RangeCopyConfig } from './config.ts';
import { type Cursor, type PageAnswer, type PageRequest, readPage, type ShardFilter, shardExtent } from './pages.ts';

export {
  BATCHES_TABLE,
  batchesDdl,
  coverage,
  recordBatch,
  recordBatches,
  sequenceRuns,
  type WrittenBatch,
} from './batches.ts';
export { type RangeCopyConfig, rangeCopyConfigSchema } from './config.ts';
export { type Cursor, readPage, type ShardFilter, shardExtent } from './pages.ts';

/**
 * A range of events to copy: the stream sequences `fromSeq..toSeq` of `stream` (`<name>@<created>`, as the
 * materializer names it; only a peer whose batches cover all of them serves it), or the events ingested in
 * `fromIngested..toIngested` (epoch ms, both included; any peer serves it).
 *
 * With `shard`, the messages `fromSeq..toSeq` of one shard's subject: only a peer whose replica of the shard
 * is complete up to `toSeq` (see {@link ShardSource}) serves it, and it sends every row of the shard it holds
 * (a superset of those messages' events: the part the stream still holds collapses with what the stream gives).
 */
export type CopyRange =
  | { stream: string; fromSeq: number; toSeq: number; shard?: ShardFilter }
  | { fromIngested: number; toIngested: number };

/**
 * Whether this node's replica of `shard` holds every event of the shard's messages of `stream` up to
 * `toSeq` (the shard runner answers: a serving or draining replica, nothing missing, consumed past toSeq).
 */
export type ShardSource = (shard: ShardFilter, stream: string, toSeq: number) => boolean;

/** What a finished copy did. */
export interface CopyResult {
  /** The node that served it. */
  peer: string;
  /** Ingestion times copied (epoch ms); null when the range held no event. */
  fromIngested: number | null;
  toIngested: number | null;
  events: number;
  pages: number;
  /** Pages committed by an earlier attempt that this one resumed after (0: it started from the first page). */
  resumedPages: number;
}

/**
 * How far a copy got: its id, and the cursor after its last committed page. The caller records it with the
 * range (the materializer, in the missing range's row), so that a copy interrupted by a failed page or a
 * restart resumes after that page instead of from the first. A page committed but not yet recorded is read
 * again on resume: its insert carries a token made of the copy's id and the page's start and rows, so the
 * engine drops it when it is the same page (see pageToken).
 */
export interface CopyProgress {
  /** The copy's own id, chosen at its first page: part of each page's dedup token. */
  id: string;
  after: Cursor;
  /** Pages and events committed so far, over every attempt. */
  pages: number;
  events: number;
}

/** A copy of a range of events from a peer replica into this one; the peer side of the same. */
export interface RangeCopy extends Component {
  /**
   * Copies `range` from a peer into this replica, page by page (store.copy.page_max_events and
   * page_max_bytes), within store.copy.max_events_per_second and max_bytes_per_second (shared by all the
   * copies of this node), and resolves once every page is committed.
   * Rows are written as the peer holds them: a row this replica holds already collapses with it (the
   * events table is a ReplacingMergeTree on tenant, @timestamp, id and content hash), so a copy may
   * overlap what the stream gives, and may be run again after an interruption. Rejects with
   * {@link CopyNoPeerError} when no peer holds the whole range, {@link CopyError} when a page fails.
   */
  copy(range: CopyRange, opts?: CopyOptions): Promise<CopyResult>;
  /** Serves shard copies to peers from this node's replicas of shards, as `source` says it holds them. */
  serveShards(source: ShardSource): void;
}

/** Options of one copy. */
export interface CopyOptions {
  signal?: AbortSignal;
  /** Peers not to ask (those whose copy just failed): another replica answers, if any holds the range. */
  exclude?: readonly string[];
  /** Called when a peer offered the range, before the first page. */
  onPeer?: (peer: string) => void;
  /** Where an earlier attempt of the same range stopped: the copy goes on after it (from any peer). */
  resume?: CopyProgress;
  /**
   * Called after each committed page but the last, with the progress to record; the copy waits for it, and
   * fails if it throws (the next attempt resumes from what was recorded before).
   */
  onPage?: (progress: CopyProgress) => Promise<void>;
}

/** No live peer replica holds the whole range (or none answered). */
export class CopyNoPeerError extends VigilError {
  constructor(what: string, cause?: unknown) {
    super('copy_no_peer', `no peer replica holds ${what}`, { status: 503, retryable: true, cause });
    this.name = 'CopyNoPeerError';
  }
}

/** A copy that started failed on a page. */
export class CopyError extends VigilError {
  /** The peer that failed it (the next attempt asks another), when a peer did. */
  readonly peer?: string;
  constructor(message: string, cause?: unknown, peer?: string) {
    super('copy_failed', message, { status: 503, retryable: true, cause });
    this.name = 'CopyError';
    if (peer !== undefined) this.peer = peer;
  }
}

/**
 * Subjects of the copy protocol, on the NATS connection the nodes already share: only a client holding the
 * cluster's NATS credentials reaches them, never an API token. An offer goes to every replica; a page to
 * the one that answered.
 */
const OFFER_SUBJECT = '_vigil.copy.offer';
const pageSubject = (node: string) => `_vigil.copy.page.${node}`;

interface OfferRequest {
  from_node: string;
  stream?: string;
  from_seq?: number;
  to_seq?: number;
  from_ingested?: number;
  to_ingested?: number;
  shard?: ShardFilter;
  /** Nodes that must not answer (bounded by SERVE_EXCLUDE_MAX). */
  exclude?: string[];
}

/** Most nodes an offer may exclude. */
const SERVE_EXCLUDE_MAX = 64;

interface OfferAnswer {
  node: string;
  from_ingested: number | null;
  to_ingested: number | null;
}

/** Page requests a node answers at once; more wait for NATS to redeliver them (as timeouts on the asker). */
const SERVING_AT_ONCE = 2;

/** Attempts at one page before the copy fails. */
const PAGE_ATTEMPTS = 5;

/**
 * Creates the range copy of this replica. start() subscribes to the offer and page subjects (serving this
 * replica to its peers); copy() needs nothing started but the connection.
 */
export function createRangeCopy(
  config: RangeCopyConfig,
  deps: { connection: JetStreamConnection; store: EventStore; nodeId: string; metrics: Registry; logger: Logger },
): RangeCopy {
  const log = deps.logger;
  const node = deps.nodeId.replace(/[^A-Za-z0-9_-]/g, '_');
  let subs: Subscription[] = [];
  let subscribing: Promise<void> | undefined;
  let stopped = true;
  let serving = 0;
  let shardSource: ShardSource | undefined;
  /** Epoch ms from which the node's copies may take their next page (shared: the limit is the node's). */
  let paceFrom = 0;
  const halt = new AbortController();

  const events = counter(
    deps.metrics,
    'vigil_store_copy_events_total',
    'Events copied between store replicas: received (written here) or served (read here for a peer).',
    ['direction'],
  );
  const bytes = counter(
    deps.metrics,
    'vigil_store_copy_bytes_total',
    'Bytes of rows (JSON, before gzip) copied between store replicas, by direction.',
    ['direction'],
  );
  const pages = counter(deps.metrics, 'vigil_store_copy_pages_total', 'Pages of a range copy, by direction.', [
    'direction',
  ]);
  const failures = counter(deps.metrics, 'vigil_store_copy_failures_total', 'Range copies that failed, by reason.', [
    'reason',
  ]);
  const copies = counter(
    deps.metrics,
    'vigil_store_copies_total',
    'Copies this replica ran, by kind (range: stream sequences or times; shard: a new replica of a shard) and result (done, failed).',
    ['kind', 'result'],
  );
  const inProgress = gauge(
    deps.metrics,
    'vigil_store_copies_in_progress',
    'Copies running on this replica now, by kind (range, shard).',
    ['kind'],
  );
  const durations = histogram(
    deps.metrics,
    'vigil_store_copy_duration_seconds',
    'Time a finished copy took, offer to last page, by kind (range, shard): rate-limited by store.copy.max_events_per_second and max_bytes_per_second.',
    ['kind'],
    [1, 5, 15, 60, 300, 900, 3600, 14400, 86400],
  );
  const cursorGauge = gauge(
    deps.metrics,
    'vigil_store_copy_position_timestamp_seconds',
    'Ingestion time the running copy has reached (0: no copy running).',
  );
  const remainingGauge = gauge(
    deps.metrics,
    'vigil_store_copy_remaining_seconds',
    'Ingestion time left to copy in the running copy (0: none running).',
  );

  async function answerOffer(msg: Msg): Promise<void> {
    const req = msg.json<OfferRequest>();
    if (req.from_node === node) return;
    if (Array.isArray(req.exclude) && req.exclude.slice(0, SERVE_EXCLUDE_MAX).includes(node)) return;
    if (req.shard !== undefined) {
      const shard = { index: Number(req.shard.index), count: Number(req.shard.count) };
      const valid =
        Number.isInteger(shard.index) && Number.isInteger(shard.count) && shard.index >= 0 && shard.index < shard.count;
      // Silent unless this replica of the shard is complete up to to_seq: another one may be.
      if (!valid || typeof req.stream !== 'string' || !shardSource?.(shard, req.stream, Number(req.to_seq))) return;
      const extent = await shardExtent(deps.store, shard);
      msg.respond(
        JSON.stringify({ node, from_ingested: extent.fromIngested, to_ingested: extent.toIngested } as OfferAnswer),
      );
      return;
    }
    if (req.stream !== undefined) {
      const c = await coverage(deps.store, req.stream, Number(req.from_seq), Number(req.to_seq));
      // Silent when it does not hold all of them: another peer may.
      if (!c.covered) return;
      msg.respond(JSON.stringify({ node, from_ingested: c.fromIngested, to_ingested: c.toIngested } as OfferAnswer));
      return;
    }
    msg.respond(
      JSON.stringify({ node, from_ingested: req.from_ingested, to_ingested: req.to_ingested } as OfferAnswer),
    );
  }

  async function answerPage(msg: Msg): Promise<void> {
    if (serving >= SERVING_AT_ONCE) return;
    serving++;
    try {
      const req = msg.json<PageRequest>();
      const page = await readPage(deps.store, config, req);
      events.inc({ direction: 'served' }, page.rows?.length ?? 0);
      bytes.inc({ direction: 'served' }, rowBytes(page.rows));
      pages.inc({ direction: 'served' });
      msg.respond(gzipSync(JSON.stringify(page), { level: 1 }));
    } catch (err) {
      // The engine's reason may quote SQL: it stays in this log; the peer gets the code.
      log.warn({ err: errorMessage(err) }, 'A page of a range copy could not be read for a peer.');
      msg.respond(gzipSync(JSON.stringify({ error: 'the peer could not read the page (its reason is in its log)' })));
    } finally {
      serving--;
    }
  }

  function serve(): void {
    if (subscribing || stopped) return;
    subscribing = (async () => {
      while (!stopped && !deps.connection.ready()) await deps.connection.wait(1000, deps.connection.ready);
      if (stopped) return;
      const { nc } = deps.connection.clients();
      const handle = (what: string, fn: (msg: Msg) => Promise<void>) => (err: Error | null, msg: Msg) => {
        if (err) return;
        fn(msg).catch((e: unknown) => log.warn({ err: errorMessage(e) }, `A range copy ${what} failed.`));
      };
      subs = [
        nc.subscribe(OFFER_SUBJECT, { callback: handle('offer', answerOffer) }),
        nc.subscribe(pageSubject(node), { callback: handle('page', answerPage) }),
      ];
      log.info({ node }, 'This replica serves range copies to its peers.');
    })()
      .catch((err: unknown) => log.error({ err: errorMessage(err) }, 'This replica cannot serve range copies.'))
      .finally(() => {
        subscribing = undefined;
      });
  }

  async function findPeer(range: CopyRange, what: string, exclude: readonly string[]): Promise<OfferAnswer> {
    const req: OfferRequest =
      'stream' in range
        ? {
            from_node: node,
            stream: range.stream,
            from_seq: range.fromSeq,
            to_seq: range.toSeq,
            ...(range.shard ? { shard: range.shard } : {}),
          }
        : { from_node: node, from_ingested: range.fromIngested, to_ingested: range.toIngested };
    if (exclude.length > 0) req.exclude = exclude.slice(0, SERVE_EXCLUDE_MAX);
    try {
      const { nc } = deps.connection.clients();
      const msg = await nc.request(OFFER_SUBJECT, JSON.stringify(req), { timeout: config.request_timeout_ms });
      return msg.json<OfferAnswer>();
    } catch (err) {
      failures.inc({ reason: 'no_peer' });
      throw new CopyNoPeerError(what, err);
    }
  }

  async function fetchPage(peer: string, req: PageRequest, signal?: AbortSignal): Promise<PageAnswer> {
    let last: unknown;
    for (let attempt = 1; attempt <= PAGE_ATTEMPTS; attempt++) {
      try {
        const { nc } = deps.connection.clients();
        const msg = await nc.request(pageSubject(peer), JSON.stringify(req), { timeout: config.request_timeout_ms });
        const answer = JSON.parse(gunzipSync(msg.data).toString('utf8')) as PageAnswer;
        if (answer.error) throw new Error(answer.error);
        return answer;
      } catch (err) {
        last = err;
        if (attempt < PAGE_ATTEMPTS) await sleep(backoffDelay(attempt, { initialMs: 200, maxMs: 5000 }), signal);
      }
    }
    failures.inc({ reason: 'page' });
    throw new CopyError(`copying from ${peer} failed: ${errorMessage(last)}`, last, peer);
  }

  /**
   * Waits until the node's copies may go on after a page of `n` events and `size` bytes, so that all the
   * copies of this node together stay within store.copy.max_events_per_second and max_bytes_per_second (one
   * second of unused budget may be spent at once).
   */
  async function pace(n: number, size: number, signal?: AbortSignal): Promise<void> {
    const costMs = Math.max(
      config.max_events_per_second > 0 ? (n / config.max_events_per_second) * 1000 : 0,
      config.max_bytes_per_second > 0 ? (size / config.max_bytes_per_second) * 1000 : 0,
    );
    if (costMs === 0) return;
    const now = Date.now();
    paceFrom = Math.max(paceFrom, now - 1000) + costMs;
    if (paceFrom > now) await sleep(paceFrom - now, signal);
  }

  async function copy(range: CopyRange, opts: CopyOptions = {}): Promise<CopyResult> {
    const kind = 'shard' in range && range.shard ? 'shard' : 'range';
    const what =
      'stream' in range
        ? `${range.shard ? `shard ${range.shard.index} of ` : ''}stream messages ${range.fromSeq}-${range.toSeq} of ${range.stream}`
        : `the events ingested from ${new Date(range.fromIngested).toISOString()} to ${new Date(range.toIngested).toISOString()}`;
    inProgress.inc({ kind });
    const begun = Date.now();
    try {
      const result = await copyFrom(await findPeer(range, what, opts.exclude ?? []), range, what, opts);
      copies.inc({ kind, result: 'done' });
      durations.observe({ kind }, (Date.now() - begun) / 1000);
      return result;
    } catch (err) {
      copies.inc({ kind, result: 'failed' });
      throw err;
    } finally {
      inProgress.dec({ kind });
    }
  }

  async function copyFrom(offer: OfferAnswer, range: CopyRange, what: string, opts: CopyOptions): Promise<CopyResult> {
    const resume = opts.resume;
    const result: CopyResult = {
      peer: offer.node,
      fromIngested: offer.from_ingested,
      toIngested: offer.to_ingested,
      events: resume?.events ?? 0,
      pages: resume?.pages ?? 0,
      resumedPages: resume?.pages ?? 0,
    };
    opts.onPeer?.(offer.node);
    if (offer.from_ingested === null || offer.to_ingested === null) return result;
    const shard = 'shard' in range ? range.shard : undefined;
    const id = resume?.id ?? randomUUID();
    log.info(
      {
        peer: offer.node,
        range: what,
        from_ingested: new Date(offer.from_ingested).toISOString(),
        to_ingested: new Date(offer.to_ingested).toISOString(),
        ...(resume
          ? { resumed_after_pages: resume.pages, resumed_after_ingested: new Date(resume.after.ingested).toISOString() }
          : {}),
      },
      resume
        ? 'Resuming the copy of a range of events from a peer replica after its last committed page.'
        : 'Copying a range of events from a peer replica.',
    );
    let after: Cursor | null = resume?.after ?? null;
    try {
      for (;;) {
        if (opts.signal?.aborted || halt.signal.aborted) throw new CopyError(`copying ${what} was stopped`);
        const page = await fetchPage(
          offer.node,
          {
            from_ingested: offer.from_ingested,
            to_ingested: offer.to_ingested,
            after,
            max_events: config.page_max_events,
            ...(shard ? { shard } : {}),
          },
          opts.signal,
        );
        const rows = page.rows ?? [];
        if (rows.length > 0) {
          await deps.store.insertRows('events', Buffer.from(rows.join('\n')), {
            dedupToken: pageToken(id, after, rows),
          });
        }
        const size = rowBytes(rows);
        result.events += rows.length;
        result.pages++;
        events.inc({ direction: 'received' }, rows.length);
        bytes.inc({ direction: 'received' }, size);
        pages.inc({ direction: 'received' });
        if (!page.next) break;
        after = page.next;
        await opts.onPage?.({ id, after, pages: result.pages, events: result.events });
        cursorGauge.set(after.ingested / 1000);
        remainingGauge.set(Math.max(0, offer.to_ingested - after.ingested) / 1000);
        await pace(rows.length, size, opts.signal);
      }
    } finally {
      cursorGauge.set(0);
      remainingGauge.set(0);
    }
    return result;
  }

  return {
    name: 'range-copy',
    async start() {
      stopped = false;
      serve();
    },
    async stop() {
      stopped = true;
      halt.abort();
      for (const s of subs) s.unsubscribe();
      subs = [];
    },
    health(): ComponentHealth {
      return { ok: true, detail: subs.length > 0 ? 'serving peers' : 'not serving peers yet' };
    },
    copy,
    serveShards(source) {
      shardSource = source;
    },
  };
}

/**
 * The dedup token of a copied page: the copy's id, and a digest of where the page starts and of its rows.
 * A page read again after an interruption (committed, not yet recorded) is the same page and is dropped by
 * the engine; a page with other rows (the peer's data changed meanwhile, or another peer) is written, and
 * FINAL hides what it repeats. Without a token the engine would drop a block by the hash of its rows, and it
 * remembers those after the rows are deleted: a shard dropped and given back to this node would have the
 * same pages of its new copy dropped, never written. The copy's id is new for each copy.
 */
export function pageToken(copyId: string, after: Cursor | null, rows: readonly string[]): string {
  const digest = createHash('sha256').update(JSON.stringify(after)).update('\n').update(rows.join('\n'));
  return `copy:${copyId}:${digest.digest('base64url').slice(0, 22)}`;
}

/** Bytes of JSON rows (what the rate limit and the metrics count). */
function rowBytes(rows: readonly string[] | undefined): number {
  let n = 0;
  for (const r of rows ?? []) n += r.length;
  return n;
}
