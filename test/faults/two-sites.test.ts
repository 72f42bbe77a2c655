/**
 * The loss of a site (issue 14), on a two-site dev cluster (`up --sites 2`, one node per site): two plain
 * HTTP senders keep a steady load on site a (falling back to b when a refuses or is gone; every batch under
 * one Idempotency-Key, so a resend is the same events); a planted correlation fires on a. Then every
 * process of site a is killed with SIGKILL, b is activated (dry run, then confirm), the senders follow, the
 * correlation fires once on b; a is restarted (it must come back standby and catch up), the sites are
 * compared, and a takes detection back (failback). Printed and written to test/faults/results/two-sites.json:
 * events acknowledged, lost and duplicated per site (both must be 0), the longest time a sender was
 * refused, activate -> first alert on b (RTO of detection), the replication lag at the kill (RPO of the
 * copy) and compare's result after failback. The collector (`vigil collect`) is not used: plain senders.
 * The partition run (cut the link instead of killing a site) is not here yet.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { compareSites } from '../../src/cli/dr.ts';
import { type DevCluster, upDevCluster } from '../../src/devcluster/index.ts';
import { failedLogons, plantedRules } from '../harness/planted-rules.ts';

const RESULTS = join(import.meta.dirname, 'results');
let dir: string;
let cluster: DevCluster;

const member = (name: string) => cluster.member(name);
const url = (site: string) => member(`${site}-vigil-1`).addresses.http;
const target = (site: string) => ({ url: url(site), token: cluster.adminToken() });

async function call(site: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${url(site)}${path}`, {
    method,
    // A string is NDJSON for the ingest route (sent as text/plain, as the senders do); anything else JSON.
    headers: {
      authorization: `Bearer ${cluster.adminToken()}`,
      ...(body === undefined || typeof body === 'string' ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(30000),
  });
  return { status: res.status, body: (await res.json()) as any };
}

const until = async <T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> => {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    assert.ok(Date.now() < deadline, `${what} within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
};

/** A sender: batches of `size` events, each batch under its own Idempotency-Key, to a, else to b. */
function sender(name: string, size: number, everyMs: number) {
  const acked: string[] = [];
  let stopped = false;
  let refusedSince: number | undefined;
  let longestRefusalMs = 0;
  let preferred = ['a', 'b'];
  const loop = (async () => {
    for (let n = 0; !stopped; n++) {
      const seqs = Array.from({ length: size }, (_, i) => `${name}-${n}-${i}`);
      const body = seqs.map((seq) => JSON.stringify({ message: `load ${seq}`, marker: 'site-load', seq })).join('\n');
      // The same batch is sent again (same key: the same ids) until a site acknowledges it.
      for (;;) {
        let ok = false;
        for (const site of preferred) {
          try {
            const res = await fetch(`${url(site)}/api/v1/ingest`, {
              method: 'POST',
              headers: { authorization: `Bearer ${cluster.adminToken()}`, 'idempotency-key': `${name}-${n}` },
              body,
              signal: AbortSignal.timeout(10000),
            });
            await res.arrayBuffer();
            if (res.status === 200) {
              ok = true;
              break;
            }
          } catch {
            // refused or gone: the next site
          }
        }
        if (ok) break;
        refusedSince ??= Date.now();
        if (stopped) return;
        await new Promise((r) => setTimeout(r, 200));
      }
      if (refusedSince !== undefined) {
        longestRefusalMs = Math.max(longestRefusalMs, Date.now() - refusedSince);
        refusedSince = undefined;
      }
      acked.push(...seqs);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    acked,
    longestRefusalMs: () => longestRefusalMs,
    prefer(order: string[]) {
      preferred = order;
    },
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** The `seq` of every load event a site holds, with how many times it is stored. */
async function stored(site: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const res = await call(site, 'GET', '/api/v1/search?q=marker:site-load&from=now-2h&limit=10000');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  for (const e of res.body.events as Record<string, string>[]) {
    const seq = e.seq;
    out.set(seq, (out.get(seq) ?? 0) + 1);
  }
  return out;
}

const correlationAlerts = async (site: string, user: string, correlationId: string) => {
  const res = await call(site, 'GET', '/api/v1/alerts?limit=1000');
  return (res.body.alerts as any[]).filter(
    (a) => a.kind === 'correlation' && a.rule.id === correlationId && JSON.stringify(a.matched).includes(user),
  );
};

const planted = plantedRules('7');
/** Every sender started, stopped by after() too (a failed assertion must not leave their loops running). */
const running: { stop(): Promise<void> }[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-two-sites-fault-'));
  const rules = join(dir, 'rules');
  mkdirSync(rules);
  for (const [f, text] of Object.entries(planted.files)) writeFileSync(join(rules, f), text);
  cluster = await upDevCluster({
    dir: join(dir, 'cluster'),
    nodes: 1,
    sites: 2,
    logLevel: 'warn',
    vigilConfig: { detect: { rules_dirs: [rules] }, cluster: { peer_poll_ms: 1000 } },
    readyTimeoutMs: 240000,
  });
});

after(async () => {
  await Promise.all(running.map((s) => s.stop()));
  if (cluster) await cluster.stop(undefined, { signal: 'SIGKILL' });
  if (dir && !process.env.KEEP_FAULT_DIR) rmSync(dir, { recursive: true, force: true });
});

test('site a killed: b activated by hand, nothing lost or duplicated, a back standby, compare equal, failback', {
  timeout: 900000,
}, async (t) => {
  const started = Date.now();
  assert.deepEqual(
    cluster.status().map((m) => [m.name, m.site]),
    [
      ['a-nats-1', 'a'],
      ['a-etcd-1', 'a'],
      ['a-vigil-1', 'a'],
      ['b-nats-1', 'b'],
      ['b-etcd-1', 'b'],
      ['b-vigil-1', 'b'],
    ],
  );
  await until('a active, b standby, each seeing the other', 60000, async () => {
    const [a, b] = [
      (await call('a', 'GET', '/admin/dr/status')).body,
      (await call('b', 'GET', '/admin/dr/status')).body,
    ];
    return a.role === 'active' && b.role === 'standby' && a.peer.reachable && b.peer.reachable ? true : undefined;
  });

  const senders = [sender('s1', 5, 500), sender('s2', 5, 500)];
  running.push(...senders);
  // The planted correlation fires on a: three failed logons of one user.
  const u1 = `victim-a-${Date.now()}`;
  assert.equal(
    (
      await call(
        'a',
        'POST',
        '/api/v1/ingest',
        failedLogons(u1, 3)
          .map((e) => JSON.stringify(e))
          .join('\n'),
      )
    ).status,
    200,
  );
  await until('the correlation fires on a', 180000, async () =>
    (await correlationAlerts('a', u1, planted.correlationId)).length === 1 ? true : undefined,
  );
  await new Promise((r) => setTimeout(r, 5000));

  // The kill: every process of site a at once. The replication lag just before it is the copy's RPO.
  const lagAtKill = (await call('b', 'GET', '/admin/dr/status')).body.peer;
  const ackedAtKill = senders.reduce((n, s) => n + s.acked.length, 0);
  await Promise.all(['a-vigil-1', 'a-nats-1', 'a-etcd-1'].map((n) => cluster.kill(n, 'SIGKILL')));
  const killedAt = Date.now();

  const dry = await until('b sees a unreachable', 30000, async () => {
    const r = await call('b', 'POST', '/admin/dr/activate', {});
    return r.body.peer?.reachable === false ? r.body : undefined;
  });
  assert.equal(dry.dry_run, true);
  assert.equal(dry.refused, undefined);
  assert.equal(dry.epoch_after, 2);
  const confirm = await call('b', 'POST', '/admin/dr/activate', { confirm: true });
  assert.equal(confirm.status, 200, JSON.stringify(confirm.body));
  const activatedAt = Date.now();
  for (const s of senders) s.prefer(['b', 'a']);

  // The planted correlation keeps firing, once, on b.
  const u2 = `victim-b-${Date.now()}`;
  assert.equal(
    (
      await call(
        'b',
        'POST',
        '/api/v1/ingest',
        failedLogons(u2, 3)
          .map((e) => JSON.stringify(e))
          .join('\n'),
      )
    ).status,
    200,
  );
  const [onB] = await until('the correlation fires on b', 180000, async () => {
    const list = await correlationAlerts('b', u2, planted.correlationId);
    return list.length > 0 ? list : undefined;
  });
  const rtoMs = onB.created - activatedAt;
  assert.equal(onB.epoch, 2);
  await new Promise((r) => setTimeout(r, 15000));

  // a comes back: standby (b's epoch is greater), and catches up.
  const restartAt = Date.now();
  await cluster.start(['a-nats-1', 'a-etcd-1', 'a-vigil-1'], { readyTimeoutMs: 240000 });
  const back = await until('a comes back standby', 60000, async () => {
    const r = (await call('a', 'GET', '/admin/dr/status')).body;
    return r.role === 'standby' && r.peer.epoch === 2 ? r : undefined;
  });
  assert.equal(back.epoch, 1);
  await new Promise((r) => setTimeout(r, 5000));
  for (const s of senders) await s.stop();
  const acked = senders.flatMap((s) => s.acked);

  await until('a caught up (failback no longer refused)', 180000, async () => {
    const r = await call('a', 'POST', '/admin/dr/failback', {});
    return r.body.refused === undefined ? true : undefined;
  });
  const from = new Date(started - 3_600_000).toISOString();
  const to = new Date(Date.now() + 3_600_000).toISOString();
  const compared = await until('the sites compare equal', 120000, async () => {
    const r = await compareSites(target('a'), target('b'), from, to);
    return r.equal ? r : undefined;
  });
  const failback = await call('a', 'POST', '/admin/dr/failback', { confirm: true });
  assert.equal(failback.status, 200, JSON.stringify(failback.body));
  assert.equal((await call('a', 'GET', '/admin/dr/status')).body.role, 'active');
  assert.equal((await call('b', 'GET', '/admin/dr/status')).body.role, 'standby');

  const perSite: Record<string, { lost: number; duplicated: number; stored: number }> = {};
  for (const site of ['a', 'b']) {
    const held = await until(`every acknowledged event at ${site}`, 120000, async () => {
      const m = await stored(site);
      return acked.every((seq) => m.has(seq)) ? m : undefined;
    }).catch(() => stored(site));
    perSite[site] = {
      lost: acked.filter((seq) => !held.has(seq)).length,
      duplicated: [...held.values()].filter((n) => n > 1).length,
      stored: held.size,
    };
  }
  const u1AtB = await correlationAlerts('b', u1, planted.correlationId);
  const u2AtA = await correlationAlerts('a', u2, planted.correlationId);
  const result = {
    at: new Date().toISOString(),
    events_acknowledged: acked.length,
    events_acknowledged_at_kill: ackedAtKill,
    per_site: perSite,
    longest_refusal_ms: Math.max(...senders.map((s) => s.longestRefusalMs())),
    rto_detection_ms: rtoMs,
    replication_lag_at_kill: { events: lagAtKill.lag_events, seconds: lagAtKill.lag_seconds },
    kill_to_activation_ms: activatedAt - killedAt,
    restart_to_standby_ms: Date.now() - restartAt,
    correlation_alerts: { u1_at_a_replicated_to_b: u1AtB.length, u2_at_b_replicated_to_a: u2AtA.length, u2_at_b: 1 },
    compare_after_failback: { equal: compared.equal, hours: compared.hours.length },
  };
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, 'two-sites.json'), `${JSON.stringify(result, null, 2)}\n`);
  t.diagnostic(JSON.stringify(result));

  for (const site of ['a', 'b']) {
    assert.equal(perSite[site].lost, 0, `no acknowledged event lost at ${site}`);
    assert.equal(perSite[site].duplicated, 0, `no event stored twice at ${site}`);
  }
  assert.equal(u2AtA.length, 1, "b's correlation alert reached a, once");
  assert.equal((await correlationAlerts('b', u2, planted.correlationId)).length, 1, 'it fired once on b');
  assert.ok(compared.equal);
});
