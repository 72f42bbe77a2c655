/**
 * Detection in a cluster (3 Vigil nodes, 3 nats-server, 3 etcd on loopback): rule alerts and correlation
 * alerts are the same on every node (the replicated alert log), a correlation whose window spans the kill -9
 * of its partition's owner still fires exactly once (the new owner rebuilds the window by replay), and no
 * alert carries a fencing token older than its partition's owner at the time.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { partitionOf } from '../../src/cluster/index.ts';
import { startDevCluster, type TestDevCluster } from '../harness/dev-cluster.ts';
import { type AlertJson, failedLogons, plantedRules } from '../harness/planted-rules.ts';

const { correlationId: CORRELATION_ID, files: RULES } = plantedRules('c');
const PARTITIONS = 16;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function failedLogonLines(user: string, n: number): string {
  return `${failedLogons(user, n, 60000)
    .map((e) => JSON.stringify(e))
    .join('\n')}\n`;
}

describe('detection in a 3-node cluster', { timeout: 300000 }, () => {
  let dc: TestDevCluster;
  let rulesDir: string;

  before(async () => {
    rulesDir = mkdtempSync(join(tmpdir(), 'vigil-cluster-rules-'));
    for (const [name, text] of Object.entries(RULES)) writeFileSync(join(rulesDir, name), text);
    dc = await startDevCluster({
      nodes: 3,
      vigilConfig: { detect: { rules_dirs: [rulesDir] } },
      logLevel: process.env.DEBUG_VIGIL_TESTS ? 'info' : 'warn',
      keepDir: !!process.env.DEBUG_VIGIL_TESTS,
    });
    console.log(`dev cluster in ${dc.dir}`);
    // Nodes join one after another and partitions move until each holds its share: wait for the balance, so
    // that the owner seen by the tests is the one that stamped the alerts.
    const deadline = Date.now() + 60000;
    for (;;) {
      const owners: { node: string }[] =
        (await dc.api('vigil-1', 'GET', '/admin/cluster/status')).body?.partitions?.owners ?? [];
      const per = new Map<string, number>();
      for (const o of owners) per.set(o.node, (per.get(o.node) ?? 0) + 1);
      if (owners.length === PARTITIONS && per.size === 3 && Math.max(...per.values()) <= 6) break;
      assert.ok(Date.now() < deadline, 'partitions balanced within 60 s');
      await sleep(250);
    }
  });

  after(async () => {
    await dc?.down({ hard: true });
    rmSync(rulesDir, { recursive: true, force: true });
  });

  const ingest = async (node: string, body: string) => {
    const res = await fetch(`${dc.nodes.find((n) => n.name === node)!.url}/api/v1/ingest`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dc.token}`, 'content-type': 'application/x-ndjson' },
      body,
    });
    assert.equal(res.status, 200, await res.text());
  };

  const alertsOn = async (node: string): Promise<AlertJson[]> => {
    const res = await dc.api(node, 'GET', '/api/v1/alerts?limit=1000');
    assert.equal(res.status, 200);
    return res.body.alerts;
  };

  const correlationUsers = (alerts: AlertJson[]) =>
    alerts
      .filter((a) => a.kind === 'correlation')
      .map((a) => String(a.matched.TargetUserName))
      .sort();

  /** Waits until `node` shows `rules` rule alerts and correlation alerts for exactly `users`. */
  const waitForAlerts = async (node: string, rules: number, users: string[], ms = 30000) => {
    const deadline = Date.now() + ms;
    let last: AlertJson[] = [];
    while (Date.now() < deadline) {
      last = await alertsOn(node).catch(() => []);
      const got = correlationUsers(last);
      if (last.filter((a) => a.kind === 'rule').length === rules && got.join() === users.join()) return last;
      await sleep(250);
    }
    assert.fail(
      `${node}: wanted ${rules} rule alerts and correlations for ${users}, got ${last.filter((a) => a.kind === 'rule').length} and ${correlationUsers(last)}`,
    );
  };

  /** The partition's owner as etcd says; waits out a moment without one (a lease lost under load). */
  const ownerOf = async (p: number, except?: string): Promise<{ node: string; fencing_token: number }> => {
    const deadline = Date.now() + 30000;
    for (;;) {
      const res = await dc.api(survivorOf(except), 'GET', '/admin/cluster/status').catch(() => undefined);
      const o = res?.body?.partitions?.owners?.find((x: { partition: number }) => x.partition === p);
      if (o && o.node !== except) return o;
      assert.ok(Date.now() < deadline, `partition ${p} has an owner${except ? ` other than ${except}` : ''}`);
      await sleep(200);
    }
  };
  const survivorOf = (except?: string) => dc.nodes.map((n) => n.name).find((n) => n !== except)!;

  test('alerts are the same on every node; a correlation fires once, from matches ingested on several nodes', async () => {
    await ingest('vigil-1', failedLogonLines('alice', 2));
    await ingest('vigil-2', failedLogonLines('alice', 1) + failedLogonLines('bob', 2));
    await ingest('vigil-3', failedLogonLines('bob', 1));
    for (const n of dc.nodes) await waitForAlerts(n.name, 6, ['alice', 'bob']);
    // Searches answer from the node's own replica and say so, with its lag. The replica writes what it read
    // after up to store.materialize.linger_ms (1 s), so an alert can be visible before its events are.
    const search = () =>
      dc.api('vigil-2', 'GET', `/api/v1/search?q=${encodeURIComponent('TargetUserName:alice')}&from=now-1d`);
    let found = await search();
    for (const until = Date.now() + 10_000; found.body?.total !== 3 && Date.now() < until; found = await search()) {
      await sleep(200);
    }
    assert.equal(found.status, 200, JSON.stringify(found.body));
    assert.equal(found.body.total, 3);
    assert.equal(found.body.replica.node, 'vigil-2');
    assert.equal(typeof found.body.replica.lag_messages, 'number');
    const p = partitionOf('default', CORRELATION_ID, PARTITIONS);
    const owner = await ownerOf(p);
    const corr = (await alertsOn('vigil-3')).filter((a) => a.kind === 'correlation');
    for (const a of corr) {
      assert.equal(a.partition, String(p));
      // The owner then, or an earlier one if the partition moved since (a loaded machine can lose a lease).
      assert.ok(a.fencingToken > 0 && a.fencingToken <= owner.fencing_token, 'stamped with an owner token');
    }
  });

  test('kill -9 of the partition owner mid-window: the new owner rebuilds it, the correlation fires once', async () => {
    const p = partitionOf('default', CORRELATION_ID, PARTITIONS);
    const before = await ownerOf(p);
    const survivor = survivorOf(before.node);
    // Two of three matches reach the owner, then it dies.
    await ingest(survivor, failedLogonLines('carol', 2));
    await sleep(2000);
    const t0 = Date.now();
    await dc.cluster.kill(before.node);
    const after = await ownerOf(p, before.node);
    assert.ok(after.fencing_token > before.fencing_token, 'the new owner has a higher fencing token');
    await ingest(survivor, failedLogonLines('carol', 1));
    const alerts = await waitForAlerts(survivor, 9, ['alice', 'bob', 'carol']);
    console.log(`correlation resumed ${Date.now() - t0} ms after the owner's kill -9 (takeover + replay + alert)`);
    const carol = alerts.find((a) => a.kind === 'correlation' && a.matched.TargetUserName === 'carol')!;
    // Stamped by the owner that took over, or by a later one if the partition moved again meanwhile (a loaded
    // machine can lose a lease); never by the dead owner.
    assert.ok(carol.fencingToken >= after.fencing_token, `token ${carol.fencingToken} >= ${after.fencing_token}`);
    if (carol.fencingToken !== after.fencing_token) console.log(`partition ${p} moved again after the takeover`);
    // A burst after the takeover must not fire carol again (the window was rebuilt, not restarted).
    await ingest(survivor, failedLogonLines('carol', 1));
    await sleep(3000);
    const others = dc.nodes.map((n) => n.name).filter((n) => n !== before.node);
    for (const n of others) await waitForAlerts(n, 10, ['alice', 'bob', 'carol']);

    await dc.cluster.start([before.node]);
    // The restarted node catches up on the alert log: same alerts, nothing twice.
    const back = await waitForAlerts(before.node, 10, ['alice', 'bob', 'carol'], 60000);
    const seen = await alertsOn(survivor);
    const key = (list: AlertJson[]) =>
      list
        .map((a) => `${a.id}:${a.fencingToken}`)
        .sort()
        .join();
    assert.equal(key(back), key(seen), 'the restarted node has the same alerts, with the same tokens');
  });
});
