import { gunzipSync, gzipSync } from 'node:zlib';
import type { Msg, Subscription } from '@nats-io/transport-node';
import type { Registry } from 'prom-client';
import type { JetStreamConnection } from '../../bus/jetstream/index.ts';
import type { Component, ComponentHealth } from '../../lib/component.ts';
import { errorMessage, VigilError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge } from '../../lib/metrics.ts';
import { backoffDelay, sleep } from '../../lib/retry.ts';
import type { EventStore } from '../index.ts';
import { EVENTS_TABLE, STORED_COLUMNS } from '../schema.ts';
import { coverage } from './batches.ts';
import type { RangeCopyConfig } from './config.ts';

export { BATCHES_TABLE, batchesDdl, coverage, recordBatch, type WrittenBatch } from './batches.ts';
export { type RangeCopyConfig, rangeCopyConfigSchema } from './config.ts';

/**
 * A range of events to copy: the stream sequences `fromSeq..toSeq` of `stream` (`<name>@<created>`, as the
 * materializer names it; only a peer whose batches cover all of them serves it), or the events ingested in
 * `fromIngested..toIngested` (epoch ms, both included; any peer serves it).
 */
export type CopyRange =
  | { stream: string; fromSeq: number; toSeq: number }
  | { fromIngested: number; toIngested: number };

/** What a finished copy did. */
export interface CopyResult {
  /** The node that served it. */
  peer: string;
  /** Ingestion times copied (epoch ms); null when the range held no event. */
  fromIngested: number | null;
  toIngested: number | null;
  events: number;
  pages: number;
}

/** A copy of a range of events from a peer replica into this one; the peer side of the same. */
export interface RangeCopy extends Component {
  /**
   * Copies `range` from a peer into this replica, page by page (store.copy.page_max_events and
   * page_max_bytes), at most store.copy.max_events_per_second, and resolves once every page is committed.
   * Rows are written as the peer holds them: a row this replica holds already collapses with it (the
   * events table is a ReplacingMergeTree on tenant, @timestamp, id and content hash), so a copy may
   * overlap what the stream gives, and may be run again after an interruption. Rejects with
   * {@link CopyNoPeerError} when no peer holds the whole range, {@link CopyError} when a page fails.
   */
  copy(range: CopyRange, opts?: { signal?: AbortSignal }): Promise<CopyResult>;
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
  constructor(message: string, cause?: unknown) {
    super('copy_failed', message, { status: 503, retryable: true, cause });
    this.name = 'CopyError';
  }
}

/**
 * Subjects of the copy protocol, on the NATS connection the nodes already share: only a client holding the
 * cluster's NATS credentials reaches them, never an API token. An offer goes to every replica; a page to
 * the one that answered.
 */
const OFFER_SUBJECT = '_vigil.copy.offer';
const pageSubject = (node: string) => `_vigil.copy.page.${node}`;

/** The last row of a page: the next page starts after it (the sort order below). */
interface Cursor {
  ingested: number;
  tenant: string;
  ts: number;
  id: string;
  content_hash: string;
}

interface OfferRequest {
  from_node: string;
  stream?: string;
  from_seq?: number;
  to_seq?: number;
  from_ingested?: number;
  to_ingested?: number;
}

interface OfferAnswer {
  node: string;
  from_ingested: number | null;
  to_ingested: number | null;
}

interface PageRequest {
  from_ingested: number;
  to_ingested: number;
  after: Cursor | null;
  max_events: number;
}

interface PageAnswer {
  rows?: string[];
  next?: Cursor | null;
  error?: string;
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
  const halt = new AbortController();

  const events = counter(
    deps.metrics,
    'vigil_store_copy_events_total',
    'Events copied between store replicas: received (written here) or served (read here for a peer).',
    ['direction'],
  );
  const pages = counter(deps.metrics, 'vigil_store_copy_pages_total', 'Pages of a range copy, by direction.', [
    'direction',
  ]);
  const failures = counter(deps.metrics, 'vigil_store_copy_failures_total', 'Range copies that failed, by reason.', [
    'reason',
  ]);
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
      const page = await readPage(req);
      events.inc({ direction: 'served' }, page.rows?.length ?? 0);
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

  /** One page of rows in (ingested, tenant, ts, id, content_hash) order, bounded in events and bytes. */
  async function readPage(req: PageRequest): Promise<PageAnswer> {
    const max = Math.max(1, Math.min(config.page_max_events, Math.trunc(req.max_events)));
    const after = req.after ?? { ingested: req.from_ingested - 1, tenant: '', ts: 0, id: '', content_hash: '' };
    const rows = await deps.store.query<Record<string, unknown> & { i_ms: string; t_ms: string }>(
      `SELECT ${STORED_COLUMNS.join(', ')}, content_hash,
              toString(toUnixTimestamp64Milli(ingested)) AS i_ms, toString(toUnixTimestamp64Milli(ts)) AS t_ms
         FROM ${EVENTS_TABLE}
        WHERE ingested >= fromUnixTimestamp64Milli({from:Int64}) AND ingested <= fromUnixTimestamp64Milli({to:Int64})
          AND (ingested, tenant, ts, id, content_hash) > (fromUnixTimestamp64Milli({a_i:Int64}), {a_tenant:String},
               fromUnixTimestamp64Milli({a_ts:Int64}), {a_id:String}, {a_hash:String})
        ORDER BY ingested, tenant, ts, id, content_hash
        LIMIT {max:UInt32}`,
      {
        from: req.from_ingested,
        to: req.to_ingested,
        a_i: after.ingested,
        a_tenant: after.tenant,
        a_ts: after.ts,
        a_id: after.id,
        a_hash: after.content_hash,
        max,
      },
    );
    const out: string[] = [];
    let bytes = 0;
    let last: Cursor | null = null;
    for (const r of rows) {
      const { i_ms, t_ms, ...row } = r;
      const line = JSON.stringify(row);
      if (out.length > 0 && bytes + line.length > config.page_max_bytes) break;
      out.push(line);
      bytes += line.length;
      last = {
        ingested: Number(i_ms),
        tenant: String(row.tenant),
        ts: Number(t_ms),
        id: String(row.id),
        content_hash: String(row.content_hash),
      };
    }
    const more = out.length < rows.length || rows.length === max;
    return { rows: out, next: more ? last : null };
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

  async function findPeer(range: CopyRange, what: string): Promise<OfferAnswer> {
    const req: OfferRequest =
      'stream' in range
        ? { from_node: node, stream: range.stream, from_seq: range.fromSeq, to_seq: range.toSeq }
        : { from_node: node, from_ingested: range.fromIngested, to_ingested: range.toIngested };
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
    throw new CopyError(`copying from ${peer} failed: ${errorMessage(last)}`, last);
  }

  async function copy(range: CopyRange, opts: { signal?: AbortSignal } = {}): Promise<CopyResult> {
    const what =
      'stream' in range
        ? `stream messages ${range.fromSeq}-${range.toSeq} of ${range.stream}`
        : `the events ingested from ${new Date(range.fromIngested).toISOString()} to ${new Date(range.toIngested).toISOString()}`;
    const offer = await findPeer(range, what);
    const result: CopyResult = {
      peer: offer.node,
      fromIngested: offer.from_ingested,
      toIngested: offer.to_ingested,
      events: 0,
      pages: 0,
    };
    if (offer.from_ingested === null || offer.to_ingested === null) return result;
    log.info(
      {
        peer: offer.node,
        range: what,
        from_ingested: new Date(offer.from_ingested).toISOString(),
        to_ingested: new Date(offer.to_ingested).toISOString(),
      },
      'Copying a range of events from a peer replica.',
    );
    const started = Date.now();
    let after: Cursor | null = null;
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
          },
          opts.signal,
        );
        const rows = page.rows ?? [];
        if (rows.length > 0) await deps.store.insertRows('events', Buffer.from(rows.join('\n')));
        result.events += rows.length;
        result.pages++;
        events.inc({ direction: 'received' }, rows.length);
        pages.inc({ direction: 'received' });
        if (!page.next) break;
        after = page.next;
        cursorGauge.set(after.ingested / 1000);
        remainingGauge.set(Math.max(0, offer.to_ingested - after.ingested) / 1000);
        if (config.max_events_per_second > 0) {
          const due = started + (result.events / config.max_events_per_second) * 1000;
          if (due > Date.now()) await sleep(due - Date.now(), opts.signal);
        }
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
  };
}
