/**
 * Helpers of the two-site fault tests: API calls with the dev cluster's admin token, plain HTTP senders
 * (batches under one Idempotency-Key each, so a resend is the same events) that record every event a site
 * acknowledged, and the counts of what each site holds.
 */
import assert from 'node:assert/strict';
import type { DevCluster } from '../../src/devcluster/index.ts';
import { sleep, waitFor } from '../harness/wait.ts';

/** The marker field of every load event (searched as `marker:site-load`). */
export const LOAD_MARKER = 'site-load';

/** API calls to the first Vigil node of each site of `cluster`. */
export function siteApi(cluster: DevCluster) {
  const url = (site: string) => cluster.member(`${site}-vigil-1`).addresses.http;
  return {
    url,
    target: (site: string) => ({ url: url(site), token: cluster.adminToken() }),
    /** A string body is NDJSON for the ingest route (sent as text/plain, as the senders do); anything else JSON. */
    async call(site: string, method: string, path: string, body?: unknown) {
      const res = await fetch(`${url(site)}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${cluster.adminToken()}`,
          ...(body === undefined || typeof body === 'string' ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
        signal: AbortSignal.timeout(30000),
      });
      // any: the tests read the fields they assert on
      return { status: res.status, body: (await res.json()) as any };
    },
  };
}

/** A sender's record: every event a site acknowledged, with when. */
export interface Sender {
  readonly name: string;
  /** The `seq` of every acknowledged event, in order. */
  readonly acked: string[];
  /** When each batch was acknowledged (epoch ms), one entry per batch of `acked`. */
  readonly ackedAt: number[];
  /** The longest time the sender went without an acknowledgement while it had a batch to send. */
  longestRefusalMs(): number;
  /** Send to these sites from now on, in order of preference. */
  prefer(order: string[]): void;
  stop(): Promise<void>;
}

/**
 * A sender of `size` events every `everyMs` to the first site of `sites` that acknowledges; the same batch
 * (same key, so the same ids) goes again until one does.
 */
export function startSender(
  cluster: DevCluster,
  o: { name: string; size: number; everyMs: number; sites: string[] },
): Sender {
  const api = siteApi(cluster);
  const acked: string[] = [];
  const ackedAt: number[] = [];
  let stopped = false;
  let refusedSince: number | undefined;
  let longestRefusalMs = 0;
  let preferred = o.sites;
  const loop = (async () => {
    for (let n = 0; !stopped; n++) {
      const seqs = Array.from({ length: o.size }, (_, i) => `${o.name}-${n}-${i}`);
      const body = seqs.map((seq) => JSON.stringify({ message: `load ${seq}`, marker: LOAD_MARKER, seq })).join('\n');
      for (;;) {
        let ok = false;
        for (const site of preferred) {
          try {
            const res = await fetch(`${api.url(site)}/api/v1/ingest`, {
              method: 'POST',
              headers: { authorization: `Bearer ${cluster.adminToken()}`, 'idempotency-key': `${o.name}-${n}` },
              body,
              signal: AbortSignal.timeout(10000),
            });
            await res.arrayBuffer();
            if (res.status === 200) {
              ok = true;
              break;
            }
          } catch {
            // refused or gone: the next site, else the same batch again
          }
        }
        if (ok) break;
        refusedSince ??= Date.now();
        // A batch not acknowledged when the test stops is not counted: nobody was told it was stored.
        if (stopped) return;
        await sleep(200);
      }
      if (refusedSince !== undefined) {
        longestRefusalMs = Math.max(longestRefusalMs, Date.now() - refusedSince);
        refusedSince = undefined;
      }
      acked.push(...seqs);
      ackedAt.push(Date.now());
      await sleep(o.everyMs);
    }
  })();
  return {
    name: o.name,
    acked,
    ackedAt,
    longestRefusalMs: () => longestRefusalMs,
    prefer(order) {
      preferred = order;
    },
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** The `seq` of every load event `site` holds, with how many times it is stored. */
export async function storedLoad(cluster: DevCluster, site: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const res = await siteApi(cluster).call(
    site,
    'GET',
    `/api/v1/search?q=marker:${LOAD_MARKER}&from=now-2h&limit=10000`,
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
  for (const e of res.body.events as Record<string, string>[]) out.set(e.seq, (out.get(e.seq) ?? 0) + 1);
  return out;
}

/** What a site holds of the acknowledged load: events held, acknowledged ones missing, ones stored more than once. */
export interface SiteTally {
  held: number;
  lost: number;
  duplicated: number;
}

/**
 * Waits (at most `timeoutMs`) until `site` holds every seq of `acked`, then tallies what it holds; when the
 * wait times out, it tallies what the site holds then, and the loss shows in `lost`.
 */
export async function tallyAtSite(
  cluster: DevCluster,
  site: string,
  acked: readonly string[],
  timeoutMs: number,
): Promise<SiteTally> {
  const held = await waitFor(`every acknowledged event at ${site}`, timeoutMs, async () => {
    const m = await storedLoad(cluster, site);
    return acked.every((s) => m.has(s)) ? m : undefined;
  }).catch(() => storedLoad(cluster, site));
  return {
    held: held.size,
    lost: acked.filter((s) => !held.has(s)).length,
    duplicated: [...held.values()].filter((n) => n > 1).length,
  };
}

/** An alert as GET /api/v1/alerts answers it (the fields these tests read). */
export interface AlertSummary {
  id: string;
  kind: string;
  rule: { id: string };
  matched: unknown;
  partition: string;
  created: number;
  /** The epoch of the site that raised it. */
  epoch?: number;
}

/** The correlation alerts `site` holds of rule `correlationId` for `user`. */
export async function correlationAlerts(
  cluster: DevCluster,
  site: string,
  user: string,
  correlationId: string,
): Promise<AlertSummary[]> {
  const res = await siteApi(cluster).call(site, 'GET', '/api/v1/alerts?limit=1000');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return (res.body.alerts as AlertSummary[]).filter(
    (a) => a.kind === 'correlation' && a.rule.id === correlationId && JSON.stringify(a.matched).includes(user),
  );
}
