import type { TestDevCluster } from '../harness/dev-cluster.ts';
import { sleep } from '../harness/wait.ts';
import { BUCKET_SIZE, type LoadGen } from './load.ts';

/** What one store replica holds of the run, against what the load generator had acknowledged. */
export interface ReplicaCheck {
  node: string;
  /** Events of the run the replica returns (search reads with FINAL: what a user sees). */
  stored: number;
  /** Acknowledged ids the replica does not have. */
  lost: number;
  /** Ids the replica returns more than once. */
  duplicated: number;
  /** Ids never acknowledged (a request abandoned after it committed): allowed, reported. */
  unacknowledgedStored: number;
  /** Up to 10 lost and duplicated ids, for the failure message. */
  lostSample: string[];
  duplicatedSample: string[];
  /** From `since` until the replica returned every acknowledged event; null when it never did. */
  caughtUpMs: number | null;
}

async function search(dc: TestDevCluster, node: string, q: string): Promise<unknown[][]> {
  const params = new URLSearchParams({ q, limit: '10000', from: 'now-6h', to: 'now+1h' });
  const res = await dc.api(node, 'GET', `/api/v1/search?${params}`);
  if (res.status !== 200) throw new Error(`${node}: search ${q} answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body.rows as unknown[][];
}

async function storedCount(dc: TestDevCluster, node: string, run: string): Promise<number> {
  const rows = await search(dc, node, `test.run:${run} | stats count() as n`);
  return Number(rows[0]?.[0] ?? 0);
}

/**
 * Waits (at most `timeoutMs`) until each replica returns at least every acknowledged event of the run,
 * then compares them id by id: per bucket of BUCKET_SIZE ids a count and a distinct count, and for a
 * bucket that differs, every id. Each node's search reads its own replica.
 */
export async function checkReplicas(
  dc: TestDevCluster,
  gen: LoadGen,
  run: string,
  opts: { since: number; timeoutMs?: number; nodes?: string[] },
): Promise<ReplicaCheck[]> {
  const expectedTotal = gen.acked();
  const deadline = Date.now() + (opts.timeoutMs ?? 120000);
  const nodes = opts.nodes ?? dc.nodes.map((n) => n.name);
  const caughtUp = new Map<string, number | null>();
  await Promise.all(
    nodes.map(async (node) => {
      for (;;) {
        const n = await storedCount(dc, node, run).catch(() => -1);
        if (n >= expectedTotal) {
          caughtUp.set(node, Date.now() - opts.since);
          return;
        }
        if (Date.now() > deadline) {
          caughtUp.set(node, null);
          return;
        }
        await sleep(1000);
      }
    }),
  );
  const expected = gen.expectedPerBucket();
  const unackedSeqs = gen.unacknowledged();
  const unacked = new Set(unackedSeqs.map((s) => gen.eventId(s)));
  const unackedBuckets = new Set(unackedSeqs.map((s) => Math.floor(s / BUCKET_SIZE)));
  const out: ReplicaCheck[] = [];
  for (const node of nodes) {
    const check: ReplicaCheck = {
      node,
      stored: 0,
      lost: 0,
      duplicated: 0,
      unacknowledgedStored: 0,
      lostSample: [],
      duplicatedSample: [],
      caughtUpMs: caughtUp.get(node) ?? null,
    };
    const rows = await search(dc, node, `test.run:${run} | stats count() as n, dc(event.id) as d by test.bucket`);
    const seen = new Map<number, { n: number; d: number }>();
    for (const [bucket, n, d] of rows) seen.set(Number(bucket), { n: Number(n), d: Number(d) });
    const buckets = new Set([...expected.keys(), ...seen.keys()]);
    for (const b of buckets) {
      const want = expected.get(b) ?? 0;
      const got = seen.get(b) ?? { n: 0, d: 0 };
      check.stored += got.n;
      // A bucket holding unacknowledged ids is read id by id: a stored one could hide a lost one.
      if (got.n === want && got.d === want && !unackedBuckets.has(b)) continue;
      const ids = await search(dc, node, `test.run:${run} AND test.bucket:${b} | stats count() as n by event.id`);
      const counts = new Map(ids.map(([id, n]) => [String(id), Number(n)]));
      for (const seq of gen.ackedSeqs(b)) {
        const id = gen.eventId(seq);
        if (!counts.has(id)) {
          check.lost++;
          if (check.lostSample.length < 10) check.lostSample.push(id);
        }
      }
      for (const [id, n] of counts) {
        if (n > 1) {
          check.duplicated += n - 1;
          if (check.duplicatedSample.length < 10) check.duplicatedSample.push(`${id} x${n}`);
        }
        const seq = Number(id.slice(id.lastIndexOf('-') + 1));
        if (Math.floor(seq / BUCKET_SIZE) === b && unacked.has(id)) check.unacknowledgedStored++;
      }
    }
    out.push(check);
  }
  return out;
}
