/**
 * A partition between the two sites (issue 14): on a two-site dev cluster whose link runs as a member of its
 * own (`up --sites 2 --link-relay`, one node per site), a plain HTTP sender keeps a steady load on each site
 * and a planted correlation fires on the active site a. Then the link is cut (`link-1` killed: b's leafnode,
 * which carries every copy and status request between the sites, is gone and cannot reconnect) for 15 s
 * or more. Meanwhile neither site may change role by itself: b sees a unreachable and stays standby (its
 * dry-run activation shows the data at risk; nothing confirms it), a stays active and still detects (the
 * correlation fires on a during the cut), both sites keep accepting events and the copy falls behind both
 * ways. Then the link is restarted: both sites catch up, no acknowledged event is lost at either site, none
 * is stored twice, every correlation alert was raised once, on a, and is held once by b; compare is equal.
 * A second test cuts the link again and activates b by hand during the cut (the split brain the guard cannot
 * see): on the heal a hears b's greater epoch and turns standby by itself, and what a receives afterwards is
 * detected by b alone. Printed and written to test/faults/results/two-sites-partition.json.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { compareSites } from '../../src/cli/dr.ts';
import { type DevCluster, upDevCluster } from '../../src/devcluster/index.ts';
import type { LinkRouteStats } from '../../src/devcluster/link.ts';
import { failedLogons, plantedRules, writeRulesDir } from '../harness/planted-rules.ts';
import { sleep, waitFor } from '../harness/wait.ts';
import {
  correlationAlerts,
  type Sender,
  type SiteTally,
  siteApi,
  startSender,
  storedLoad,
  tallyAtSite,
} from './sites-load.ts';

const RESULTS = join(import.meta.dirname, 'results');
/** How long the link stays cut (at least; longer only while the correlation of the cut has not fired on a). */
const PARTITION_MS = 15000;

let dir: string;
let cluster: DevCluster;
const planted = plantedRules('8');
const senders: Sender[] = [];

before(
  async () => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-two-sites-partition-'));
    const rules = writeRulesDir(join(dir, 'rules'), planted.files);
    cluster = await upDevCluster({
      dir: join(dir, 'cluster'),
      nodes: 1,
      sites: 2,
      linkRelay: true,
      logLevel: 'warn',
      vigilConfig: { detect: { rules_dirs: [rules] }, cluster: { peer_poll_ms: 1000 } },
      readyTimeoutMs: 240000,
    });
  },
  { timeout: 300000 },
);

after(async () => {
  await Promise.all(senders.map((s) => s.stop()));
  if (cluster) await cluster.stop(undefined, { signal: 'SIGKILL' });
  if (dir && !process.env.KEEP_FAULT_DIR) rmSync(dir, { recursive: true, force: true });
});

/** The relay's leafnode route, as its control port answers. */
async function linkStats(): Promise<LinkRouteStats> {
  const res = await fetch(cluster.member('link-1').ready_url, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { routes: LinkRouteStats[] };
  return body.routes[0];
}

interface Seen {
  role: string;
  epoch: number;
  peer: {
    reachable: boolean;
    epoch?: number;
    lag_events: number | null;
    lag_seconds: number | null;
    lag_to_peer_events?: number;
  };
}

/** Both tests' figures, in one file. */
const results: Record<string, unknown> = {};
function writeResults(): void {
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, 'two-sites-partition.json'), `${JSON.stringify(results, null, 2)}\n`);
}

async function status(site: string): Promise<Seen> {
  const res = await siteApi(cluster).call(site, 'GET', '/admin/dr/status');
  if (res.status !== 200) throw new Error(`dr status of ${site}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as Seen;
}

/** Three failed logons of `user` sent to `site`: the planted correlation's trigger. */
async function ingest(site: string, user: string): Promise<void> {
  const body = failedLogons(user, 3)
    .map((e) => JSON.stringify(e))
    .join('\n');
  assert.equal((await siteApi(cluster).call(site, 'POST', '/api/v1/ingest', body)).status, 200);
}

const alerts = (site: string, user: string) => correlationAlerts(cluster, site, user, planted.correlationId);

test('the link between the sites cut and healed: no site changes role by itself, nothing lost or duplicated', {
  timeout: 420000,
}, async (t) => {
  const api = siteApi(cluster);
  const statusErrors: string[] = [];
  const started = Date.now();
  assert.deepEqual(
    cluster.status().map((m) => [m.name, m.site ?? null, m.state]),
    [
      ['a-nats-1', 'a', 'running'],
      ['a-etcd-1', 'a', 'running'],
      ['a-vigil-1', 'a', 'running'],
      ['b-nats-1', 'b', 'running'],
      ['b-etcd-1', 'b', 'running'],
      ['b-vigil-1', 'b', 'running'],
      ['link-1', null, 'running'],
    ],
  );
  await waitFor('a active, b standby, each seeing the other', 90000, async () => {
    const [a, b] = [await status('a'), await status('b')];
    return a.role === 'active' && b.role === 'standby' && a.peer.reachable && b.peer.reachable ? true : undefined;
  });
  const linkBefore = await linkStats();
  assert.equal(linkBefore.connections_open, 1, "b's leafnode goes through the relay");
  assert.ok(linkBefore.bytes_to > 0 && linkBefore.bytes_from > 0);

  // Steady load on both sites, each sender on its own site only: both keep receiving during the cut.
  senders.push(
    startSender(cluster, { name: 'sa', size: 5, everyMs: 500, sites: ['a'] }),
    startSender(cluster, { name: 'sb', size: 5, everyMs: 500, sites: ['b'] }),
  );
  const [sa, sb] = senders;

  // Before the cut: the correlation fires on a and its alert reaches b.
  const u1 = `part-u1-${Date.now()}`;
  await ingest('a', u1);
  await waitFor('the correlation fires on a and reaches b', 180000, async () =>
    (await alerts('a', u1)).length === 1 && (await alerts('b', u1)).length === 1 ? true : undefined,
  );
  await sleep(3000);

  // The cut.
  await cluster.kill('link-1', 'SIGKILL');
  const cutAt = Date.now();
  const ackedAtCut = { a: sa.acked.length, b: sb.acked.length };
  const roles: Record<string, Set<string>> = { a: new Set(), b: new Set() };
  const maxLag = { a: { events: 0, seconds: 0 }, b: { events: 0, seconds: 0 } };
  const unreachableAfterMs: Record<string, number | null> = { a: null, b: null };
  const observe = async () => {
    for (const site of ['a', 'b'] as const) {
      const s = await status(site).catch((err: Error) => {
        statusErrors.push(`${Date.now() - cutAt} ms: ${err.message}`);
      });
      if (!s) continue;
      roles[site].add(`${s.role}/${s.epoch}`);
      if (!s.peer.reachable) unreachableAfterMs[site] ??= Date.now() - cutAt;
      maxLag[site].events = Math.max(maxLag[site].events, s.peer.lag_events ?? 0);
      maxLag[site].seconds = Math.max(maxLag[site].seconds, s.peer.lag_seconds ?? 0);
    }
  };
  // Detection goes on at a during the cut; b, standby, evaluates nothing of what it receives.
  const u2 = `part-u2-${Date.now()}`;
  const u3 = `part-u3-${Date.now()}`;
  await ingest('a', u2);
  await ingest('b', u3);
  // The operator's view on b (the routes of `vigil dr status` and `vigil dr activate --dry-run`; the CLI
  // itself, a whole process start, took over a minute at a load of 50): peer unreachable, b standby, and
  // the data at risk of an activation.
  const [bStatus, dryRun] = await Promise.all([
    waitFor('dr status on b: peer unreachable', 60000, async () => {
      const s = await status('b');
      return s.peer.reachable === false ? s : undefined;
    }),
    (async () => {
      await waitFor('b sees a unreachable', 60000, async () => ((await status('b')).peer.reachable ? undefined : true));
      const dry = await api.call('b', 'POST', '/admin/dr/activate', {});
      assert.equal(dry.status, 200, JSON.stringify(dry.body));
      return dry.body;
    })(),
    (async () => {
      while (Date.now() - cutAt < PARTITION_MS) {
        await observe();
        await sleep(1000);
      }
    })(),
  ]);
  const u2FiredCut = await waitFor('the correlation fires on a during the cut', 90000, async () => {
    await observe();
    const list = await alerts('a', u2);
    return list.length > 0 ? list : undefined;
  });
  await observe();
  // Still cut: b holds neither a's alert of the cut nor any of its own; each site lacks the other's recent events.
  assert.equal((await alerts('b', u2)).length, 0, "a's alert of the cut has not reached b");
  assert.equal((await alerts('b', u3)).length, 0, 'b, standby, raised nothing');
  const [heldA, heldB] = [await storedLoad(cluster, 'a'), await storedLoad(cluster, 'b')];
  const behindAtHeal = {
    b_lacks_of_a: sa.acked.filter((s) => !heldB.has(s)).length,
    a_lacks_of_b: sb.acked.filter((s) => !heldA.has(s)).length,
  };
  const ackedDuringCut = { a: sa.acked.length - ackedAtCut.a, b: sb.acked.length - ackedAtCut.b };
  const refusedDuringCut = { a: sa.longestRefusalMs(), b: sb.longestRefusalMs() };

  // The link returns.
  await cluster.restart('link-1');
  const healAt = Date.now();
  const partitionMs = healAt - cutAt;
  const ackedAtHeal = [...sa.acked, ...sb.acked];
  await waitFor('each site sees the other again', 90000, async () => {
    const [a, b] = [await status('a'), await status('b')];
    return a.peer.reachable && b.peer.reachable ? true : undefined;
  });
  await waitFor('both sites hold every event acknowledged before the heal', 120000, async () => {
    const [a, b] = [await storedLoad(cluster, 'a'), await storedLoad(cluster, 'b')];
    return ackedAtHeal.every((s) => a.has(s) && b.has(s)) ? true : undefined;
  });
  const caughtUpMs = Date.now() - healAt;
  assert.equal((await linkStats()).connections_open, 1, 'the leafnode is back through the relay');

  await sleep(3000);
  for (const s of senders) await s.stop();
  const acked = { a: sa.acked, b: sb.acked };
  const all = [...sa.acked, ...sb.acked];
  const perSite: Record<string, SiteTally> = {};
  for (const site of ['a', 'b']) perSite[site] = await tallyAtSite(cluster, site, all, 90000);

  // Alerts: the correlation of the cut reaches b; the events b received during the cut are evaluated by a.
  const once = async (site: string, user: string) =>
    waitFor(`the ${user} alert at ${site}`, 120000, async () => {
      const l = await alerts(site, user);
      return l.length > 0 ? l : undefined;
    });
  const alertCounts: Record<string, Record<string, number>> = {};
  for (const user of [u1, u2, u3]) {
    const [a, b] = [await once('a', user), await once('b', user)];
    alertCounts[user] = { a: a.length, b: b.length };
    assert.equal(a[0].id, b[0].id, 'the same alert, same id, at both sites');
    assert.equal(a[0].epoch, 1, 'raised by a at its first epoch');
    assert.match(a[0].partition, /^a\//, 'raised by a');
  }
  const from = new Date(started - 3_600_000).toISOString();
  const to = new Date(Date.now() + 3_600_000).toISOString();
  const compared = await waitFor('the sites compare equal', 120000, async () => {
    const r = await compareSites(api.target('a'), api.target('b'), from, to);
    return r.equal ? r : undefined;
  });
  const [aAfter, bAfter] = [await status('a'), await status('b')];

  const result = {
    at: new Date().toISOString(),
    events_acknowledged: { a: acked.a.length, b: acked.b.length },
    events_acknowledged_during_cut: ackedDuringCut,
    per_site: perSite,
    partition_ms: partitionMs,
    peer_unreachable_seen_after_ms: unreachableAfterMs,
    roles_during_cut: { a: [...roles.a], b: [...roles.b] },
    roles_after_heal: { a: `${aAfter.role}/${aAfter.epoch}`, b: `${bAfter.role}/${bAfter.epoch}` },
    // Through the cut, lag_events is null (unknown) and lag_seconds the time since the peer was last heard.
    max_lag_reported_by_dr_status: maxLag,
    events_behind_at_heal: behindAtHeal,
    longest_sender_refusal_ms: refusedDuringCut,
    heal_to_caught_up_ms: caughtUpMs,
    dry_run_activation_on_b_during_cut: {
      peer_reachable: dryRun.peer.reachable,
      refused: dryRun.refused ?? null,
      epoch: `${dryRun.epoch_before} -> ${dryRun.epoch_after}`,
      data_at_risk: dryRun.data_at_risk,
    },
    correlation_alerts: {
      before_cut_on_a: alertCounts[u1],
      during_cut_on_a: alertCounts[u2],
      received_by_b_during_cut: alertCounts[u3],
      fired_during_cut_after_ms: u2FiredCut[0].created - cutAt,
    },
    compare_after_heal: { equal: compared.equal, hours: compared.hours.length },
    dr_status_errors_during_cut: statusErrors,
    test_ms: Date.now() - started,
  };
  Object.assign(results, result);
  writeResults();
  t.diagnostic(JSON.stringify(result));

  // Neither site changed role by itself, during the cut or when the link returned.
  assert.deepEqual(result.roles_during_cut, { a: ['active/1'], b: ['standby/1'] });
  assert.deepEqual(result.roles_after_heal, { a: 'active/1', b: 'standby/1' });
  assert.equal(bStatus.role, 'standby');
  assert.equal(bStatus.peer.reachable, false);
  assert.notEqual(unreachableAfterMs.a, null, 'a saw b unreachable');
  // A site cut off still answers its operator (a call slower than 30 s on a loaded machine is not counted).
  assert.deepEqual(
    statusErrors.filter((e) => !/timeout|aborted/i.test(e)),
    [],
    'dr status answered on both sites through the cut',
  );
  // The dry run would activate b (a is unreachable, so the guard cannot refuse) and says what is at risk.
  assert.equal(dryRun.dry_run, true);
  assert.equal(dryRun.changed, false);
  assert.equal(dryRun.peer.reachable, false);
  assert.equal(dryRun.epoch_after, 2);
  // Cut off, b cannot know how many events a received since: unknown, and the seconds since it last heard a.
  assert.equal(dryRun.data_at_risk.lag_events, null);
  assert.ok(dryRun.data_at_risk.lag_seconds > 0, JSON.stringify(dryRun.data_at_risk));
  assert.ok(dryRun.data_at_risk.last_received.seq > 0);
  // Both sites kept accepting events, and the copy fell behind both ways.
  assert.ok(ackedDuringCut.a > 0 && ackedDuringCut.b > 0, JSON.stringify(ackedDuringCut));
  assert.ok(behindAtHeal.b_lacks_of_a > 0 && behindAtHeal.a_lacks_of_b > 0, JSON.stringify(behindAtHeal));
  for (const site of ['a', 'b']) {
    assert.equal(perSite[site].lost, 0, `no acknowledged event lost at ${site}`);
    assert.equal(perSite[site].duplicated, 0, `no event stored twice at ${site}`);
  }
  for (const user of [u1, u2, u3]) assert.deepEqual(alertCounts[user], { a: 1, b: 1 }, `${user}: one alert each`);
  assert.ok(compared.equal);
});

test('b activated by hand during a cut (split brain): on the heal a turns standby by itself and raises nothing more', {
  timeout: 300000,
}, async (t) => {
  const api = siteApi(cluster);
  // Linked again, whatever the first test left.
  if (cluster.status().find((m) => m.name === 'link-1')?.state !== 'running') await cluster.start(['link-1']);
  await waitFor('a active, b standby, each seeing the other', 60000, async () => {
    const [a, b] = [await status('a'), await status('b')];
    return a.role === 'active' && b.role === 'standby' && a.peer.reachable && b.peer.reachable ? true : undefined;
  });
  const [sa, sb] = [
    startSender(cluster, { name: 'sa2', size: 5, everyMs: 500, sites: ['a'] }),
    startSender(cluster, { name: 'sb2', size: 5, everyMs: 500, sites: ['b'] }),
  ];
  senders.push(sa, sb);
  await sleep(2000);

  await cluster.kill('link-1', 'SIGKILL');
  const cutAt = Date.now();
  await waitFor('b sees a unreachable', 30000, async () => ((await status('b')).peer.reachable ? undefined : true));
  // The operator decides a is lost while it is in fact alive behind the cut: the guard cannot tell.
  const confirm = await api.call('b', 'POST', '/admin/dr/activate', { confirm: true });
  assert.equal(confirm.status, 200, JSON.stringify(confirm.body));
  assert.equal(confirm.body.epoch_after, 2);
  const activatedAt = Date.now();
  // Both detect now, each at its own epoch: b on what it receives, a (which cannot know) on its own.
  const [u4, u5] = [`split-u4-${Date.now()}`, `split-u5-${Date.now()}`];
  await ingest('b', u4);
  await ingest('a', u5);
  const [onB] = await waitFor('the correlation fires on b, activated', 120000, async () => {
    const l = await alerts('b', u4);
    return l.length > 0 ? l : undefined;
  });
  const [onA] = await waitFor('the correlation fires on a, cut off and still active', 120000, async () => {
    const l = await alerts('a', u5);
    return l.length > 0 ? l : undefined;
  });
  const [aCut, bCut] = [await status('a'), await status('b')];
  assert.deepEqual(
    [`${aCut.role}/${aCut.epoch}`, `${bCut.role}/${bCut.epoch}`],
    ['active/1', 'active/2'],
    'two active sites: the split brain the activation made',
  );
  await sleep(Math.max(0, 10000 - (Date.now() - cutAt)));

  await cluster.restart('link-1');
  const healAt = Date.now();
  // a hears b's greater epoch within a poll (cluster.peer_poll_ms: 1 s) and writes itself standby.
  const aAfter = await waitFor('a turns standby by itself', 60000, async () => {
    const s = await status('a');
    return s.role === 'standby' ? s : undefined;
  });
  const fencedMs = Date.now() - healAt;
  assert.equal(aAfter.epoch, 1);
  assert.equal(aAfter.peer.epoch, 2);
  const bAfter = await status('b');
  assert.deepEqual([bAfter.role, bAfter.epoch], ['active', 2]);

  // After the heal only b detects: a trigger sent to a fires once, on b, at epoch 2.
  const u6 = `split-u6-${Date.now()}`;
  await ingest('a', u6);
  const u6Alerts: Record<string, { epoch?: number; partition: string }[]> = {};
  for (const site of ['b', 'a']) {
    u6Alerts[site] = await waitFor(`the ${u6} alert at ${site}`, 120000, async () => {
      const l = await alerts(site, u6);
      return l.length > 0 ? l : undefined;
    });
  }
  await sleep(3000);
  for (const s of [sa, sb]) await s.stop();

  const all = senders.flatMap((s) => s.acked);
  const perSite: Record<string, SiteTally> = {};
  for (const site of ['a', 'b']) perSite[site] = await tallyAtSite(cluster, site, all, 90000);
  const counts: Record<string, Record<string, { n: number; epochs: (number | undefined)[] }>> = {};
  for (const user of [u4, u5, u6]) {
    counts[user] = {};
    for (const site of ['a', 'b']) {
      const l = await alerts(site, user);
      counts[user][site] = { n: l.length, epochs: l.map((x) => x.epoch) };
    }
  }
  const started = cutAt - 3_600_000;
  const compared = await compareSites(
    api.target('a'),
    api.target('b'),
    new Date(started).toISOString(),
    new Date(Date.now() + 3_600_000).toISOString(),
  );
  results.activation_during_cut = {
    cut_ms: healAt - cutAt,
    split_brain_ms: healAt - activatedAt,
    heal_to_a_standby_ms: fencedMs,
    roles_during_cut: { a: `${aCut.role}/${aCut.epoch}`, b: `${bCut.role}/${bCut.epoch}` },
    roles_after_heal: { a: `${aAfter.role}/${aAfter.epoch}`, b: `${bAfter.role}/${bAfter.epoch}` },
    per_site: perSite,
    correlation_alerts: { on_b_during_cut: counts[u4], on_a_during_cut: counts[u5], sent_to_a_after_heal: counts[u6] },
    compare_after_heal: {
      events_equal: compared.hours.filter((h) => h.kind === 'events').every((h) => h.equal),
      alerts_equal: compared.hours.filter((h) => h.kind === 'alerts').every((h) => h.equal),
      missing_counts: compared.missing_counts,
    },
  };
  writeResults();
  t.diagnostic(JSON.stringify(results.activation_during_cut));

  assert.equal(onB.epoch, 2);
  assert.equal(onA.epoch, 1, 'a, cut off, raised its alert at its old epoch');
  for (const site of ['a', 'b']) {
    assert.equal(perSite[site].lost, 0, `no acknowledged event lost at ${site}`);
    assert.equal(perSite[site].duplicated, 0, `no event stored twice at ${site}`);
  }
  // Fenced: what a receives after the heal is detected by b alone, at b's epoch, and held once by each.
  assert.deepEqual(counts[u6], { a: { n: 1, epochs: [2] }, b: { n: 1, epochs: [2] } });
  assert.deepEqual(counts[u4], { a: { n: 1, epochs: [2] }, b: { n: 1, epochs: [2] } });
  for (const site of ['a', 'b']) assert.ok(counts[u5][site].n <= 1, `${u5}: at most one alert at ${site}`);
  assert.ok(
    (results.activation_during_cut as { compare_after_heal: { events_equal: boolean } }).compare_after_heal
      .events_equal,
    'the events of both sites compare equal',
  );
});
