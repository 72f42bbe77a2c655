/**
 * The fault suite's load generator: a steady NDJSON load over HTTP, spread round-robin over the Vigil nodes
 * like a load balancer would. Each request carries ECS events with an explicit `event.id`
 * (`<run>-<seq>`), so every acknowledged id is known. A refused or failed request is sent again, to the
 * next node, with the SAME body and Idempotency-Key, until it is acknowledged: nothing is sent twice under
 * different ids, and a retry of a request that did commit stores nothing twice.
 */

/** A node the load is sent to. */
export interface LoadTarget {
  name: string;
  url: string;
}

export interface LoadOptions {
  targets: LoadTarget[];
  token: string;
  /** Run id: the `test.run` field and the prefix of every event id. */
  run: string;
  /** Events per second aimed at (the machine may deliver less: measured, never asserted). */
  rate?: number;
  /** Events per request; a divisor of BUCKET_SIZE so that a request never spans two buckets. */
  batch?: number;
  /** Requests in flight at most. */
  concurrency?: number;
  /** A request without an answer after this long is abandoned and retried (same key) on another node. */
  requestTimeoutMs?: number;
  /**
   * Wait the `Retry-After` of a 503 before retrying (a polite client behind a balancer), rather than the
   * short backoff meant to move on to the next node at once. Default false.
   */
  honorRetryAfter?: boolean;
}

/** Events are counted per bucket of this many consecutive sequence numbers (`test.bucket`). */
export const BUCKET_SIZE = 1000;

/** One request of the load: a contiguous range of sequence numbers. */
interface Batch {
  first: number;
  count: number;
  key: string;
  body: string;
  attempts: number;
  /** When its first attempt was sent. */
  sentAt?: number;
  ackedAt?: number;
  /** Reasons of its failed attempts other than a 503 with Retry-After (which the protocol asks to retry). */
  hardFailures: string[];
  /** Its attempts answered 503 with Retry-After. */
  retryAfters: number;
}

/** One request as the client saw it. */
export interface RequestRecord {
  sentAt: number;
  /** When it was acknowledged (after its retries); undefined if it never was. */
  ackedAt?: number;
  attempts: number;
  hardFailures: string[];
  retryAfters: number;
}

/** What happened between two marks. */
export interface LoadWindow {
  from: number;
  to: number;
  acked: number;
  /** acked events / seconds of the window. */
  rate: number;
  /** Longest time without any acknowledgement across the cluster while the load ran (window edges count). */
  longestGapMs: number;
  /** When the longest gap began (epoch ms). */
  longestGapAt: number;
  /** Failed attempts by reason (`503`, `429`, `ECONNREFUSED`, `timeout`, ...), each retried. */
  failures: Record<string, number>;
  retriedRequests: number;
}

export interface LoadGen {
  /** Starts (or resumes) issuing requests. */
  start(): void;
  /**
   * Stops issuing new requests and waits until every request in flight is acknowledged (retrying as
   * needed), at most `timeoutMs`. Resolves to the number of requests still unacknowledged.
   */
  pause(timeoutMs?: number): Promise<number>;
  /** Abandons every request still being retried (after the suite, when nodes may be gone) and stops. */
  close(): Promise<void>;
  /** Takes a node out of rotation (as a load balancer would when /health/ready fails) or back in. */
  setInRotation(name: string, inRotation: boolean): void;
  /** A point in time to measure a window from. */
  mark(): number;
  /** Figures between `from` (a mark) and now or `to`. */
  window(from: number, to?: number): LoadWindow;
  /** Acknowledged events so far. */
  acked(): number;
  /** Acknowledged events per bucket (index = bucket). */
  expectedPerBucket(): Map<number, number>;
  /** The acknowledged sequence numbers of one bucket. */
  ackedSeqs(bucket: number): number[];
  /** Sequence numbers sent but never acknowledged (after pause): they may or may not be stored. */
  unacknowledged(): number[];
  /** Every request sent so far, as the client saw it. */
  requests(): RequestRecord[];
  eventId(seq: number): string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function reasonOf(err: unknown): string {
  const e = err as { name?: string; cause?: { code?: string }; code?: string };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'timeout';
  return e?.cause?.code ?? e?.code ?? e?.name ?? 'error';
}

/** Creates the load generator; nothing is sent before start(). */
export function createLoadGen(opts: LoadOptions): LoadGen {
  const rate = opts.rate ?? 10000;
  const batchSize = opts.batch ?? 500;
  const concurrency = opts.concurrency ?? 16;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 20000;
  if (BUCKET_SIZE % batchSize !== 0) throw new Error(`batch must divide ${BUCKET_SIZE}`);
  const intervalMs = (batchSize / rate) * 1000;
  const rotation = new Map(opts.targets.map((t) => [t.name, true]));
  const batches: Batch[] = [];
  const ackTimes: number[] = [];
  /** Intervals during which the load was issuing: [start, end or undefined while running]. */
  const active: [number, number | undefined][] = [];
  const failures: { at: number; reason: string }[] = [];
  const retried: number[] = [];
  let nextSeq = 0;
  let next = 0;
  let rr = 0;
  let running = false;
  const closing = new AbortController();
  let nextSlot = 0;
  const inflight = new Set<Promise<void>>();
  let workers: Promise<void>[] = [];

  const eventId = (seq: number) => `${opts.run}-${seq}`;

  function pick(exclude?: string): LoadTarget {
    const live = opts.targets.filter((t) => rotation.get(t.name));
    const pool = live.length > 0 ? live : opts.targets;
    const choices = pool.length > 1 && exclude ? pool.filter((t) => t.name !== exclude) : pool;
    return choices[rr++ % choices.length];
  }

  function makeBatch(): Batch {
    const first = nextSeq;
    nextSeq += batchSize;
    const ts = new Date().toISOString();
    const lines: string[] = [];
    for (let seq = first; seq < first + batchSize; seq++) {
      lines.push(
        JSON.stringify({
          '@timestamp': ts,
          'event.id': eventId(seq),
          'event.kind': 'event',
          'event.category': 'authentication',
          'event.outcome': seq % 5 === 0 ? 'failure' : 'success',
          message: `fault-suite load event ${seq}`,
          'host.name': `load-${seq % 7}`,
          'user.name': `u${seq % 13}`,
          'source.ip': `10.9.${(seq >> 8) & 255}.${seq & 255}`,
          'test.run': opts.run,
          'test.bucket': Math.floor(seq / BUCKET_SIZE),
          'test.seq': seq,
        }),
      );
    }
    return {
      first,
      count: batchSize,
      key: `${opts.run}-req-${first}`,
      body: `${lines.join('\n')}\n`,
      attempts: 0,
      hardFailures: [],
      retryAfters: 0,
    };
  }

  /** Sends one batch until it is acknowledged; node after node, same key and body. */
  async function deliver(b: Batch): Promise<void> {
    let last: string | undefined;
    let backoff = 50;
    while (!closing.signal.aborted) {
      const target = pick(last);
      b.sentAt ??= Date.now();
      b.attempts++;
      if (b.attempts === 2) retried.push(Date.now());
      let reason: string;
      let retryAfterS: number | undefined;
      try {
        const res = await fetch(`${target.url}/api/v1/ingest`, {
          method: 'POST',
          body: b.body,
          headers: {
            authorization: `Bearer ${opts.token}`,
            'content-type': 'application/x-ndjson',
            'idempotency-key': b.key,
          },
          signal: AbortSignal.any([AbortSignal.timeout(requestTimeoutMs), closing.signal]),
        });
        const text = await res.text();
        if (res.status === 200) {
          const body = JSON.parse(text) as { accepted: number; rejected: unknown[] };
          if (body.accepted !== b.count || body.rejected.length > 0) {
            // Not a transient failure: the product refused valid events. Counted, never retried.
            failures.push({ at: Date.now(), reason: `partial:${text.slice(0, 200)}` });
            return;
          }
          b.ackedAt = Date.now();
          ackTimes.push(b.ackedAt);
          b.body = '';
          return;
        }
        reason = String(res.status);
        const after = Number(res.headers.get('retry-after') ?? Number.NaN);
        if (res.status === 503 && Number.isFinite(after) && after >= 0) retryAfterS = after;
      } catch (err) {
        reason = reasonOf(err);
      }
      failures.push({ at: Date.now(), reason: `${target.name}:${reason}` });
      if (retryAfterS === undefined) b.hardFailures.push(reason);
      else b.retryAfters++;
      last = target.name;
      await sleep(opts.honorRetryAfter && retryAfterS !== undefined ? Math.min(5, retryAfterS) * 1000 : backoff);
      backoff = Math.min(1000, backoff * 2);
    }
  }

  async function worker(): Promise<void> {
    while (running) {
      const now = Date.now();
      // A slot lost while every request was slow is not made up in a burst of more than a second.
      const slot = Math.max(nextSlot, now - 1000);
      nextSlot = slot + intervalMs;
      if (slot > now) await sleep(slot - now);
      if (!running) return;
      const b = makeBatch();
      batches[next++] = b;
      const p = deliver(b);
      inflight.add(p);
      await p;
      inflight.delete(p);
    }
  }

  return {
    start() {
      if (running) return;
      running = true;
      nextSlot = Date.now();
      active.push([Date.now(), undefined]);
      workers = Array.from({ length: concurrency }, () => worker());
    },
    async pause(timeoutMs = 120000) {
      if (running) {
        running = false;
        active[active.length - 1][1] = Date.now();
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(workers), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
      return batches.filter((b) => b.ackedAt === undefined).length;
    },
    async close() {
      running = false;
      closing.abort();
      await Promise.all(workers);
    },
    setInRotation(name, inRotation) {
      rotation.set(name, inRotation);
    },
    mark: () => Date.now(),
    window(from, to = Date.now()) {
      const acks = ackTimes.filter((t) => t >= from && t <= to).sort((a, b) => a - b);
      let acked = 0;
      for (const b of batches) if (b.ackedAt !== undefined && b.ackedAt >= from && b.ackedAt <= to) acked += b.count;
      // The gap is measured only while the load was issuing: edges of each active interval count as acks.
      let longest = 0;
      let longestAt = from;
      for (const [s, e] of active) {
        const start = Math.max(s, from);
        const end = Math.min(e ?? to, to);
        if (end <= start) continue;
        let prev = start;
        for (const t of acks) {
          if (t < start || t > end) continue;
          if (t - prev > longest) {
            longest = t - prev;
            longestAt = prev;
          }
          prev = t;
        }
        if (end - prev > longest) {
          longest = end - prev;
          longestAt = prev;
        }
      }
      const byReason: Record<string, number> = {};
      for (const f of failures) {
        if (f.at < from || f.at > to) continue;
        const reason = f.reason.replace(/^[^:]+:/, '');
        byReason[reason] = (byReason[reason] ?? 0) + 1;
      }
      return {
        from,
        to,
        acked,
        rate: Math.round(acked / Math.max(0.001, (to - from) / 1000)),
        longestGapMs: longest,
        longestGapAt: longestAt,
        failures: byReason,
        retriedRequests: retried.filter((t) => t >= from && t <= to).length,
      };
    },
    acked() {
      let n = 0;
      for (const b of batches) if (b.ackedAt !== undefined) n += b.count;
      return n;
    },
    expectedPerBucket() {
      const m = new Map<number, number>();
      for (const b of batches) {
        if (b.ackedAt === undefined) continue;
        const k = Math.floor(b.first / BUCKET_SIZE);
        m.set(k, (m.get(k) ?? 0) + b.count);
      }
      return m;
    },
    ackedSeqs(bucket) {
      const out: number[] = [];
      for (const b of batches) {
        if (b.ackedAt === undefined || Math.floor(b.first / BUCKET_SIZE) !== bucket) continue;
        for (let s = b.first; s < b.first + b.count; s++) out.push(s);
      }
      return out;
    },
    unacknowledged() {
      const out: number[] = [];
      for (const b of batches)
        if (b.ackedAt === undefined) for (let s = b.first; s < b.first + b.count; s++) out.push(s);
      return out;
    },
    requests() {
      return batches
        .filter((b) => b.sentAt !== undefined)
        .map((b) => ({
          sentAt: b.sentAt!,
          ackedAt: b.ackedAt,
          attempts: b.attempts,
          hardFailures: [...b.hardFailures],
          retryAfters: b.retryAfters,
        }));
    },
    eventId,
  };
}
