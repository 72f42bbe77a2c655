/**
 * Two sites on loopback, one nats-server + one etcd member + one Vigil node each, linked by a NATS leafnode
 * (site b's server connects to site a's; each runs its own JetStream domain, named like the site). Events
 * received at one site are stored at the other by JetStream sourcing, same ids, once; the site roles live in
 * each site's etcd and change only by the guarded `dr` commands.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { stringify } from 'yaml';
import { compareSites } from '../../src/cli/dr.ts';
import { type EtcdCluster, startEtcdCluster } from '../harness/etcd.ts';
import { type NatsCluster, startNatsCluster } from '../harness/nats.ts';
import { type AlertJson, failedLogons, plantedRules } from '../harness/planted-rules.ts';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

const BIN = resolve(import.meta.dirname, '../../bin/vigil');

describe('two sites', { timeout: 900000 }, () => {
  const nats: Record<string, NatsCluster> = {};
  const etcd: Record<string, EtcdCluster> = {};
  const node: Record<string, VigilNode> = {};
  let dir: string;

  /** Every webhook delivery of both sites: the alert it carried and when it arrived. */
  const hook: { at: number; delivery: string; alert: AlertJson & { epoch?: number } }[] = [];
  let receiver: Server | undefined;
  const hookFor = async (alertId: string) => {
    await new Promise((r) => setTimeout(r, 1500));
    return hook.filter((h) => h.alert.id === alertId);
  };

  const startedAt = Date.now();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-sites-'));
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        const parsed = JSON.parse(body);
        hook.push({ at: Date.now(), delivery: parsed.delivery_id, alert: parsed.alert });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver?.listen(0, '127.0.0.1', r));
    const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    // The single failed-logon rule: an alert per failed logon, on whichever site detects.
    mkdirSync(join(dir, 'rules'));
    writeFileSync(join(dir, 'rules', 'failed-logon.yml'), plantedRules('5').files['failed-logon.yml']);
    nats.a = await startNatsCluster({ size: 1, domain: 'a', leafListen: true });
    nats.b = await startNatsCluster({ size: 1, domain: 'b', leafRemotes: nats.a.leafUrls });
    [etcd.a, etcd.b] = await Promise.all([startEtcdCluster({ size: 1 }), startEtcdCluster({ size: 1 })]);
    await Promise.all(
      (['a', 'b'] as const).map(async (site) => {
        const file = join(dir, `${site}.yml`);
        writeFileSync(
          file,
          stringify({
            roles: ['all'],
            detect: { rules_dirs: [join(dir, 'rules')] },
            notify: {
              poll_interval_ms: 200,
              destinations: [{ name: 'soc', type: 'webhook', url: hookUrl, secret: 'two-sites-secret-0123456789' }],
            },
            bus: {
              kind: 'jetstream',
              jetstream: { servers: nats[site].urls, replicas: 1, client_name: `vigil-${site}` },
            },
            cluster: {
              enabled: true,
              node_id: `${site}-1`,
              etcd_endpoints: etcd[site].endpoints,
              site,
              peer_site: site === 'a' ? 'b' : 'a',
            },
          }),
        );
        // Two nodes and their servers start together on a machine that may be loaded: more than the default.
        node[site] = await startVigil({
          readyTimeoutMs: 180000,
          env: { VIGIL_CONFIG: file, VIGIL_LOG_LEVEL: process.env.DEBUG_VIGIL_TESTS ? 'info' : 'warn' },
        });
      }),
    );
  });

  after(async () => {
    if (process.env.DEBUG_VIGIL_TESTS) {
      for (const [site, n] of Object.entries(node)) writeFileSync(`/tmp/two-sites-${site}.log`, n.output());
    }
    await Promise.all(Object.values(node).map((n) => n.close()));
    await Promise.all([...Object.values(nats), ...Object.values(etcd)].map((c) => c.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
    receiver?.closeAllConnections();
    await new Promise<void>((r) => (receiver ? receiver.close(() => r()) : r()));
  });

  /** An API call with the site's admin token (the harness has GET and POST only). */
  const api = async (site: string, method: string, path: string, body: unknown) => {
    const res = await fetch(`${node[site].url}${path}`, {
      method,
      headers: { authorization: `Bearer ${node[site].token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  /** Runs `vigil dr ...` against a site's node; returns the exit code and the parsed --json answer. */
  const dr = (site: string, ...args: string[]) => {
    const r = spawnSync(BIN, ['dr', ...args, '--json', '--url', node[site].url, '--token', node[site].token], {
      encoding: 'utf8',
      // A CLI start takes seconds on a loaded machine (14 s seen at a load of 40).
      timeout: 120000,
    });
    let body: any;
    try {
      body = JSON.parse(r.stdout);
    } catch {
      body = undefined;
    }
    return { code: r.status, body, stderr: r.stderr };
  };

  /**
   * A GET, retried once when the connection fails: with CLI runs of many seconds between requests, a
   * kept-alive connection can reach the server's keep-alive timeout (72 s) just as it is reused.
   */
  const get = (site: string, path: string) => node[site].get(path).catch(() => node[site].get(path));

  /** The site's status as `dr status --json` prints it, read from the API (a CLI start is slow). */
  const drStatus = async (site: string) => {
    const r = await get(site, '/admin/dr/status');
    return r.status === 200 ? r.body : undefined;
  };

  const ingest = async (site: string, marker: string, n: number, events?: Record<string, unknown>[]) => {
    const body = (events ?? Array.from({ length: n }, (_, i) => ({ message: `${marker} ${i}`, marker })))
      .map((e) => JSON.stringify(e))
      .join('\n');
    // A retry under one Idempotency-Key is stored once (see get() for why a request may need one).
    const key = `k-${randomUUID()}`;
    const send = () => node[site].post('/api/v1/ingest', body, { 'idempotency-key': key });
    const res = await send().catch(send);
    assert.equal(res.status, 200, JSON.stringify(res.body));
  };

  const idsAt = async (site: string, marker: string, want: number, query = false): Promise<string[]> => {
    const deadline = Date.now() + 30000;
    for (;;) {
      const q = query ? marker : `marker:${marker}`;
      const res = await get(site, `/api/v1/search?q=${encodeURIComponent(q)}&from=now-1h`);
      // The count and the page are two queries: wait until both show the events.
      if (res.status === 200 && res.body.total >= want && res.body.events.length >= want) {
        assert.equal(res.body.total, want, `${marker} stored once at site ${site}`);
        return (res.body.events as Record<string, string>[]).map((e) => e['event.id']).sort();
      }
      assert.ok(
        Date.now() < deadline,
        `${want} events of ${marker} at site ${site} within 30 s: ${JSON.stringify(res.body)}`,
      );
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  const alertsFor = async (site: string, eventId: string): Promise<AlertJson[]> => {
    const res = await get(site, '/api/v1/alerts?limit=1000');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return (res.body.alerts as (AlertJson & { eventIds: string[] })[]).filter((a) => a.eventIds.includes(eventId));
  };

  /**
   * Ingests a failed logon of a new user at `at`; it must alert once, raised at `detects` (its partition is
   * named with the site, its epoch is that site's), and the other site holds the same alert (replicated).
   */
  const detectedOnlyAt = async (at: string, detects: string, epoch?: number) => {
    const user = `u-${at}-${Date.now()}`;
    await ingest(at, '', 0, failedLogons(user, 1));
    // Both sites hold the event (replicated), with one id.
    const [id] = await idsAt(at === 'a' ? 'b' : 'a', `TargetUserName:${user}`, 1, true);
    assert.deepEqual(await idsAt(at, `TargetUserName:${user}`, 1, true), [id]);
    const other = detects === 'a' ? 'b' : 'a';
    const deadline = Date.now() + 30000;
    while ((await alertsFor(detects, id)).length === 0 || (await alertsFor(other, id)).length === 0) {
      assert.ok(Date.now() < deadline, `site ${detects} alerts on event ${id}, replicated to ${other}, within 30 s`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // The other site has had the same time, and more, to detect it.
    await new Promise((r) => setTimeout(r, 3000));
    const [mine, theirs] = [await alertsFor(detects, id), await alertsFor(other, id)];
    assert.equal(mine.length, 1, 'one alert on the active site');
    assert.equal(theirs.length, 1, 'the same alert on the standby site, once');
    const [m, t] = [mine[0], theirs[0]];
    assert.equal(t.id, m.id, 'the same id on both sites');
    assert.ok(m.partition.startsWith(`${detects}/`), `raised at ${detects}: ${m.partition}`);
    if (epoch !== undefined) assert.equal(m.epoch, epoch, 'the alert carries the epoch of the site that raised it');
    return m.id;
  };

  test('the first site starts active (epoch 1), the other standby, each seeing its peer', async () => {
    const a = dr('a', 'status');
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.body.site, 'a');
    assert.equal(a.body.role, 'active');
    assert.equal(a.body.epoch, 1);
    assert.equal(a.body.peer.site, 'b');
    assert.equal(a.body.peer.reachable, true);
    assert.equal(a.body.peer.role, 'standby');
    assert.equal(typeof a.body.peer.lag_events, 'number');
    assert.equal(typeof a.body.peer.lag_seconds, 'number');
    const b = await drStatus('b');
    assert.deepEqual([b.site, b.role, b.epoch], ['b', 'standby', 1]);
    assert.deepEqual([b.peer.site, b.peer.reachable, b.peer.role], ['a', true, 'active']);
  });

  test('events received at either site are stored at the other with the same ids, once', async () => {
    const fromA = `site-a-${Date.now()}`;
    const fromB = `site-b-${Date.now()}`;
    await ingest('a', fromA, 5);
    await ingest('b', fromB, 3);
    const [aAtA, aAtB, bAtB, bAtA] = await Promise.all([
      idsAt('a', fromA, 5),
      idsAt('b', fromA, 5),
      idsAt('b', fromB, 3),
      idsAt('a', fromB, 3),
    ]);
    assert.deepEqual(aAtB, aAtA);
    assert.deepEqual(bAtA, bAtB);
    assert.equal(new Set(aAtB).size, 5, 'no duplicate at b');
    assert.equal(new Set(bAtA).size, 3, 'no duplicate at a');
    // Once in each site's stream, with the same Nats-Msg-Id: a's message is one message at b, nothing loops back.
    const read = async (site: string): Promise<Map<string, string>> => {
      const nc = await connect({ servers: nats[site].urls });
      try {
        const jsm = await jetstreamManager(nc);
        const info = await jsm.streams.info('VIGIL_EVENTS');
        const bySubject = new Map<string, string>();
        for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
          const m = await jsm.streams.getMessage('VIGIL_EVENTS', { seq });
          assert.ok(m, `message ${seq} at ${site}`);
          const id = m.header.get('Nats-Msg-Id');
          assert.ok(!bySubject.has(id), `message ${id} stored twice at ${site}`);
          bySubject.set(id, m.subject);
        }
        return bySubject;
      } finally {
        await nc.close();
      }
    };
    const msgs: Record<string, Map<string, string>> = {};
    const deadline = Date.now() + 15000;
    for (;;) {
      [msgs.a, msgs.b] = await Promise.all([read('a'), read('b')]);
      const onlyA = [...msgs.a].filter(([id, subject]) => msgs.b.get(id) !== subject);
      const onlyB = [...msgs.b].filter(([id, subject]) => msgs.a.get(id) !== subject);
      if (onlyA.length === 0 && onlyB.length === 0) break;
      assert.ok(
        Date.now() < deadline,
        `both sites hold the same messages within 15 s: only at a ${JSON.stringify(onlyA)}, only at b ${JSON.stringify(onlyB)}`,
      );
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok([...msgs.a.values()].some((s) => s.startsWith('vigil.events.a.')));
    assert.ok([...msgs.a.values()].some((s) => s.startsWith('vigil.events.b.')));
    const status = await drStatus('b');
    assert.equal(status.peer.lag_events, 0, JSON.stringify(status));
  });

  let firstAlert = '';
  test('only the active site detects: an event received at the standby alerts once, at the active site', async () => {
    firstAlert = await detectedOnlyAt('b', 'a', 1);
  });

  test('incidents and their changes made at the active site reach the standby with the same ids', async (t) => {
    const deadline = Date.now() + 30000;
    let incident: { id: string; alertIds: string[] } | undefined;
    while (!incident) {
      const list = await get('a', '/api/v1/incidents?limit=100');
      for (const i of list.body.incidents ?? []) {
        const d = await get('a', `/api/v1/incidents/${i.id}`);
        if (d.body.alertIds?.includes(firstAlert)) incident = d.body;
      }
      if (!incident) {
        assert.ok(Date.now() < deadline, `an incident at a links alert ${firstAlert} within 30 s`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    const id = incident.id;
    const atB = async (check: (body: any) => boolean, what: string) => {
      const until = Date.now() + 30000;
      for (;;) {
        const r = await get('b', `/api/v1/incidents/${id}`);
        if (r.status === 200 && check(r.body)) return r.body;
        assert.ok(Date.now() < until, `${what} at b within 30 s: ${JSON.stringify(r.body)}`);
        await new Promise((res) => setTimeout(res, 250));
      }
    };
    const copied = await atB((b) => b.alertIds.includes(firstAlert), `incident ${id} with alert ${firstAlert}`);
    assert.deepEqual(copied.eventIds, (incident as unknown as { eventIds: string[] }).eventIds);

    // An analyst's changes at the active site follow: status, assignee, a comment.
    const changedAt = Date.now();
    const patched = await api('a', 'PATCH', `/api/v1/incidents/${id}`, { status: 'acknowledged', assignee: 'alice' });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    const commented = await api('a', 'POST', `/api/v1/incidents/${id}/comments`, { body: 'looked at it from site a' });
    assert.equal(commented.status, 201, JSON.stringify(commented.body));
    const changed = await atB(
      (b) => b.status === 'acknowledged' && b.assignee === 'alice' && b.comments.length === 1,
      'the status, assignee and comment',
    );
    assert.equal(changed.comments[0].body, 'looked at it from site a');
    t.diagnostic(`figure: incident change at a visible at b after ${Date.now() - changedAt} ms (polled every 250 ms)`);
    const timeline = await get('b', `/api/v1/incidents/${id}/timeline`);
    assert.equal(timeline.status, 200);
    const actions = (timeline.body.entries ?? timeline.body.timeline ?? timeline.body).map((e: any) => e.action);
    for (const a of ['created', 'alert_linked', 'status']) assert.ok(actions.includes(a), `${a} in ${actions}`);
    // Applied once, whatever the redeliveries: a second look finds one comment still.
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await get('b', `/api/v1/incidents/${id}`)).body.comments.length, 1);

    // The notification was sent by a, once, and carries a's epoch.
    const sent = await hookFor(firstAlert);
    assert.equal(sent.length, 1, JSON.stringify(sent));
    assert.equal(sent[0].alert.epoch, 1);
  });

  test('activate is refused while the peer is active; demote a, then activate b bumps the epoch', async () => {
    const dry = dr('b', 'activate', '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.body.dry_run, true);
    assert.match(dry.body.refused, /peer site a is reachable and active/);
    assert.deepEqual([dry.body.data_at_risk.lag_events, dry.body.data_at_risk.lag_seconds], [0, 0]);
    // The last event copied from a (the previous tests ingested at a) and when b stored it.
    assert.ok(dry.body.data_at_risk.last_received.seq > 0, JSON.stringify(dry.body));
    assert.ok(Date.now() - Date.parse(dry.body.data_at_risk.last_received.at) < 120000);

    const refused = dr('b', 'activate', '--confirm');
    assert.equal(refused.code, 1);
    assert.equal(refused.body.error.code, 'dr_refused');
    assert.equal((await drStatus('b')).role, 'standby', 'a refused activation changed nothing');

    const demoted = dr('a', 'demote', '--confirm');
    assert.equal(demoted.code, 0, demoted.stderr);
    assert.deepEqual([demoted.body.role, demoted.body.epoch], ['standby', 1]);

    const plan = dr('b', 'activate', '--dry-run');
    assert.equal(plan.body.refused, undefined);
    assert.deepEqual([plan.body.role_after, plan.body.epoch_after, plan.body.changed], ['active', 2, false]);
    assert.equal((await drStatus('b')).role, 'standby', 'a dry run changes nothing');

    const activated = dr('b', 'activate', '--confirm');
    assert.equal(activated.code, 0, activated.stderr);
    assert.equal(activated.body.changed, true);
    const b = await drStatus('b');
    assert.deepEqual([b.role, b.epoch], ['active', 2]);
    const a = await drStatus('a');
    assert.deepEqual([a.role, a.epoch, a.peer.role, a.peer.epoch], ['standby', 1, 'active', 2]);
    // The guard holds the other way round now.
    assert.equal(dr('a', 'activate', '--confirm').code, 1);
    // Replication does not depend on the role: an event received by the new standby still reaches b.
    const marker = `after-switch-${Date.now()}`;
    await ingest('a', marker, 2);
    assert.deepEqual(await idsAt('b', marker, 2), await idsAt('a', marker, 2));
    // Detection followed the roles: b detects now (epoch 2), a is idle and holds b's alert.
    await detectedOnlyAt('a', 'b', 2);
  });

  test('failback: the original site, caught up, takes detection back; the peer steps down', async () => {
    const plan = dr('a', 'failback', '--dry-run');
    assert.equal(plan.code, 0, plan.stderr);
    assert.equal(plan.body.refused, undefined, JSON.stringify(plan.body));
    assert.deepEqual([plan.body.role_after, plan.body.epoch_after, plan.body.changed], ['active', 3, false]);
    assert.equal((await drStatus('b')).role, 'active', 'a dry run changes nothing');
    assert.equal(dr('b', 'failback', '--confirm').code, 1, 'the active site cannot fail back to itself');
    const done = dr('a', 'failback', '--confirm');
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.body.changed, true);
    assert.deepEqual(
      [(await drStatus('a')).role, (await drStatus('a')).epoch, (await drStatus('b')).role],
      ['active', 3, 'standby'],
    );
    await detectedOnlyAt('b', 'a', 3);
  });

  test('the old active site, killed and replaced, comes back standby and alerts and notifies nothing', async (t) => {
    await node.a.kill('SIGKILL');
    const status = { body: await drStatus('b') };
    assert.deepEqual([status.body.role, status.body.peer.reachable], ['standby', false]);
    assert.match(status.body.peer.error, /peer site a did not answer/);
    const failback = dr('b', 'failback', '--confirm');
    assert.equal(failback.code, 1, 'failback needs the peer');
    assert.match(failback.body.error.message, /peer site a is unreachable/);
    const activated = dr('b', 'activate', '--confirm');
    const activatedAt = Date.now();
    assert.equal(activated.code, 0, activated.stderr);
    assert.deepEqual([activated.body.changed, activated.body.epoch_after], [true, 4]);

    // While a is down, b detects; these events reach a's stream, which a, were it active, would detect.
    const users = [`gone-${Date.now()}-1`, `gone-${Date.now()}-2`];
    for (const u of users) await ingest('b', '', 0, failedLogons(u, 1));
    const raisedAtB = async (user: string) => {
      const [id] = await idsAt('b', `TargetUserName:${user}`, 1, true);
      const until = Date.now() + 30000;
      while ((await alertsFor('b', id)).length === 0) {
        assert.ok(Date.now() < until, `b alerts on ${user} within 30 s`);
        await new Promise((r) => setTimeout(r, 250));
      }
      return { event: id, alert: (await alertsFor('b', id))[0] };
    };
    const raised = await Promise.all(users.map(raisedAtB));
    for (const r of raised) assert.equal(r.alert.epoch, 4);
    const first = Math.min(...raised.map((r) => r.alert.created));
    t.diagnostic(`figure: activate --confirm returned -> first alert created at b: ${first - activatedAt} ms`);

    const back = Date.now();
    await node.a.restart();
    // a heard b's greater epoch and came back standby.
    const until = Date.now() + 30000;
    let a = await drStatus('a');
    while (a?.role !== 'standby') {
      assert.ok(Date.now() < until, `a comes back standby: ${JSON.stringify(a)}`);
      await new Promise((r) => setTimeout(r, 250));
      a = await drStatus('a');
    }
    assert.deepEqual([a.epoch, a.peer.role, a.peer.epoch], [3, 'active', 4]);
    t.diagnostic(`figure: old site restarted -> reports standby: ${Date.now() - back} ms (includes process start)`);
    // It holds b's alerts (replicated), with b's epoch, once each, and raised none of its own.
    for (const r of raised) {
      const deadline = Date.now() + 30000;
      while ((await alertsFor('a', r.event)).length === 0) {
        assert.ok(Date.now() < deadline, `b's alert on ${r.event} reaches a within 30 s`);
        await new Promise((res) => setTimeout(res, 250));
      }
    }
    await detectedOnlyAt('a', 'b', 4);
    await new Promise((r) => setTimeout(r, 3000));
    for (const site of ['a', 'b']) {
      const all = (await get(site, '/api/v1/alerts?limit=1000')).body.alerts as AlertJson[];
      const stale = all.filter((x) => x.created >= back && x.epoch !== 4);
      assert.deepEqual(stale, [], `no alert of a stale epoch at ${site} since a came back`);
      for (const r of raised) assert.equal(all.filter((x) => x.id === r.alert.id).length, 1);
    }
    const stale = hook.filter((h) => h.at >= back && h.alert.epoch !== 4);
    assert.deepEqual(stale, [], 'no notification of a stale epoch since a came back');
    for (const r of raised) assert.equal((await hookFor(r.alert.id)).length, 1, 'b notified its alert once');
  });

  test('failback once caught up: a is active again (epoch 5) and b standby', async () => {
    const until = Date.now() + 60000;
    let plan = dr('a', 'failback', '--dry-run');
    while (plan.body?.refused) {
      assert.match(plan.body.refused, /behind/);
      assert.ok(Date.now() < until, `a catches up within 60 s: ${JSON.stringify(plan.body)}`);
      await new Promise((r) => setTimeout(r, 500));
      plan = dr('a', 'failback', '--dry-run');
    }
    const done = dr('a', 'failback', '--confirm');
    assert.equal(done.code, 0, done.stderr);
    assert.deepEqual([(await drStatus('a')).role, (await drStatus('a')).epoch], ['active', 5]);
    assert.equal((await drStatus('b')).role, 'standby');
    await detectedOnlyAt('b', 'a', 5);
  });

  test('compare: after failback both sites hold the same events and alerts, hour by hour; /metrics has the lags', async () => {
    const from = new Date(startedAt - 3_600_000).toISOString();
    const to = new Date(Date.now() + 3_600_000).toISOString();
    const target = (site: string) => ({ url: node[site].url, token: node[site].token });
    const until = Date.now() + 60000;
    let r = await compareSites(target('a'), target('b'), from, to);
    while (!r.equal) {
      assert.ok(Date.now() < until, `the sites converge within 60 s: ${JSON.stringify(r.missing)}`);
      await new Promise((res) => setTimeout(res, 1000));
      r = await compareSites(target('a'), target('b'), from, to);
    }
    const cli = spawnSync(
      BIN,
      [
        'dr',
        'compare',
        '--from',
        from,
        '--to',
        to,
        '--json',
        '--url',
        node.a.url,
        '--token',
        node.a.token,
        '--peer-url',
        node.b.url,
        '--peer-token',
        node.b.token,
      ],
      { encoding: 'utf8', timeout: 120000 },
    );
    assert.equal(cli.status, 0, cli.stderr);
    const body = JSON.parse(cli.stdout);
    assert.equal(body.equal, true);
    assert.deepEqual(body.sites, ['a', 'b']);
    const events = body.hours.filter((h: { kind: string }) => h.kind === 'events');
    const total = events.reduce((n: number, h: { counts: Record<string, number> }) => n + h.counts.a, 0);
    assert.ok(total >= 10, `the events of this suite are counted: ${total}`);
    assert.ok(
      body.hours.some((h: { kind: string; counts: Record<string, number> }) => h.kind === 'alerts' && h.counts.b > 0),
    );

    // Across switchover, failback, a kill and a second failback: each alert was notified once, by one site
    // (a site activated again re-detects what arrived while it was standby: the same alerts, not sent again).
    const perAlert = new Map<string, number>();
    for (const h of hook) perAlert.set(h.alert.id, (perAlert.get(h.alert.id) ?? 0) + 1);
    assert.deepEqual(
      [...perAlert].filter(([, n]) => n > 1),
      [],
      'no alert notified twice',
    );
    assert.ok(perAlert.size >= 6, `the suite's alerts were notified: ${perAlert.size}`);

    for (const site of ['a', 'b']) {
      const metrics = await fetch(`${node[site].url}/metrics`, {
        headers: { authorization: `Bearer ${node[site].token}` },
      });
      const text = await metrics.text();
      for (const name of [
        'vigil_site_replication_lag_events',
        'vigil_site_replication_lag_to_peer_events',
        'vigil_site_epoch',
      ]) {
        assert.match(text, new RegExp(`^${name} \\d`, 'm'), `${name} at ${site}`);
      }
    }
  });
});
