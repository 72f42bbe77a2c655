/**
 * Two sites on loopback, one nats-server + one etcd member + one Vigil node each, linked by a NATS leafnode
 * (site b's server connects to site a's; each runs its own JetStream domain, named like the site). Events
 * received at one site are stored at the other by JetStream sourcing, same ids, once; the site roles live in
 * each site's etcd and change only by the guarded `dr` commands.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { stringify } from 'yaml';
import { type EtcdCluster, startEtcdCluster } from '../harness/etcd.ts';
import { type NatsCluster, startNatsCluster } from '../harness/nats.ts';
import { type AlertJson, failedLogons, plantedRules } from '../harness/planted-rules.ts';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

const BIN = resolve(import.meta.dirname, '../../bin/vigil');

describe('two sites', { timeout: 120000 }, () => {
  const nats: Record<string, NatsCluster> = {};
  const etcd: Record<string, EtcdCluster> = {};
  const node: Record<string, VigilNode> = {};
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-sites-'));
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
        node[site] = await startVigil({
          env: { VIGIL_CONFIG: file, VIGIL_LOG_LEVEL: process.env.DEBUG_VIGIL_TESTS ? 'info' : 'warn' },
        });
      }),
    );
  });

  after(async () => {
    await Promise.all(Object.values(node).map((n) => n.close()));
    await Promise.all([...Object.values(nats), ...Object.values(etcd)].map((c) => c.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs `vigil dr ...` against a site's node; returns the exit code and the parsed --json answer. */
  const dr = (site: string, ...args: string[]) => {
    const r = spawnSync(BIN, ['dr', ...args, '--json', '--url', node[site].url, '--token', node[site].token], {
      encoding: 'utf8',
      timeout: 30000,
    });
    let body: any;
    try {
      body = JSON.parse(r.stdout);
    } catch {
      body = undefined;
    }
    return { code: r.status, body, stderr: r.stderr };
  };

  const ingest = async (site: string, marker: string, n: number, events?: Record<string, unknown>[]) => {
    const body = (events ?? Array.from({ length: n }, (_, i) => ({ message: `${marker} ${i}`, marker })))
      .map((e) => JSON.stringify(e))
      .join('\n');
    const res = await node[site].post('/api/v1/ingest', body);
    assert.equal(res.status, 200, JSON.stringify(res.body));
  };

  const idsAt = async (site: string, marker: string, want: number, query = false): Promise<string[]> => {
    const deadline = Date.now() + 30000;
    for (;;) {
      const q = query ? marker : `marker:${marker}`;
      const res = await node[site].get(`/api/v1/search?q=${encodeURIComponent(q)}&from=now-1h`);
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
    const res = await node[site].get('/api/v1/alerts?limit=1000');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return (res.body.alerts as (AlertJson & { eventIds: string[] })[]).filter((a) => a.eventIds.includes(eventId));
  };

  /** Ingests a failed logon of a new user at `at`; it must alert once at `detects` and never at the other site. */
  const detectedOnlyAt = async (at: string, detects: string) => {
    const user = `u-${at}-${Date.now()}`;
    await ingest(at, '', 0, failedLogons(user, 1));
    // Both sites hold the event (replicated), with one id.
    const [id] = await idsAt(at === 'a' ? 'b' : 'a', `TargetUserName:${user}`, 1, true);
    assert.deepEqual(await idsAt(at, `TargetUserName:${user}`, 1, true), [id]);
    const deadline = Date.now() + 30000;
    while ((await alertsFor(detects, id)).length === 0) {
      assert.ok(Date.now() < deadline, `site ${detects} alerts on event ${id} within 30 s`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // The other site has had the same time, and more, to detect it.
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal((await alertsFor(detects, id)).length, 1, 'one alert on the active site');
    assert.equal((await alertsFor(detects === 'a' ? 'b' : 'a', id)).length, 0, 'none on the standby site');
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
    const b = dr('b', 'status');
    assert.equal(b.code, 0, b.stderr);
    assert.deepEqual([b.body.site, b.body.role, b.body.epoch], ['b', 'standby', 1]);
    assert.deepEqual([b.body.peer.site, b.body.peer.reachable, b.body.peer.role], ['a', true, 'active']);
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
    const status = dr('b', 'status');
    assert.equal(status.body.peer.lag_events, 0, JSON.stringify(status.body));
  });

  test('only the active site detects: an event received at the standby alerts once, at the active site', async () => {
    await detectedOnlyAt('b', 'a');
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
    assert.equal(dr('b', 'status').body.role, 'standby', 'a refused activation changed nothing');

    const demoted = dr('a', 'demote', '--confirm');
    assert.equal(demoted.code, 0, demoted.stderr);
    assert.deepEqual([demoted.body.role, demoted.body.epoch], ['standby', 1]);

    const plan = dr('b', 'activate', '--dry-run');
    assert.equal(plan.body.refused, undefined);
    assert.deepEqual([plan.body.role_after, plan.body.epoch_after, plan.body.changed], ['active', 2, false]);
    assert.equal(dr('b', 'status').body.role, 'standby', 'a dry run changes nothing');

    const activated = dr('b', 'activate', '--confirm');
    assert.equal(activated.code, 0, activated.stderr);
    assert.equal(activated.body.changed, true);
    const b = dr('b', 'status').body;
    assert.deepEqual([b.role, b.epoch], ['active', 2]);
    const a = dr('a', 'status').body;
    assert.deepEqual([a.role, a.epoch, a.peer.role, a.peer.epoch], ['standby', 1, 'active', 2]);
    // The guard holds the other way round now.
    assert.equal(dr('a', 'activate', '--confirm').code, 1);
    // Replication does not depend on the role: an event received by the new standby still reaches b.
    const marker = `after-switch-${Date.now()}`;
    await ingest('a', marker, 2);
    assert.deepEqual(await idsAt('b', marker, 2), await idsAt('a', marker, 2));
    // Detection followed the roles: b detects now, a is idle.
    await detectedOnlyAt('a', 'b');
  });

  test('with the peer unreachable (its node killed), status says so and activate --confirm goes through', async () => {
    assert.equal(dr('b', 'demote', '--confirm').code, 0);
    await node.a.kill('SIGKILL');
    const status = dr('b', 'status');
    assert.equal(status.code, 0, status.stderr);
    assert.deepEqual([status.body.role, status.body.peer.reachable], ['standby', false]);
    assert.match(status.body.peer.error, /peer site a did not answer/);
    const activated = dr('b', 'activate', '--confirm');
    assert.equal(activated.code, 0, activated.stderr);
    assert.deepEqual([activated.body.changed, activated.body.epoch_after], [true, 3]);
  });
});
