import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../config/load.ts';
import type { DevClusterError } from './errors.ts';
import { belowEphemeralPorts } from './plan.ts';
import { planSites, siteMembers } from './sites.ts';

const BINARIES = { 'nats-server': '/usr/sbin/nats-server', etcd: '/usr/bin/etcd', haproxy: '/usr/sbin/haproxy' };

test('a two-site plan: per site one nats (its domain), one etcd, N nodes of that site; b leafs into a', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-sites-plan-'));
  try {
    const plan = await planSites({ dir, nodes: 2, sites: 2 }, BINARIES);
    assert.deepEqual(
      plan.state.members.map((m) => [m.name, m.site]),
      [
        ['a-nats-1', 'a'],
        ['a-etcd-1', 'a'],
        ['a-vigil-1', 'a'],
        ['a-vigil-2', 'a'],
        ['b-nats-1', 'b'],
        ['b-etcd-1', 'b'],
        ['b-vigil-1', 'b'],
        ['b-vigil-2', 'b'],
      ],
    );
    const ports = plan.state.members.flatMap((m) =>
      Object.values(m.addresses).flatMap((a) => [...a.matchAll(/127\.0\.0\.1:(\d+)/g)].map((x) => x[1])),
    );
    // a's leafnode address is listed once (on a-nats-1); every other port once.
    assert.equal(new Set(ports).size, ports.length, `no port is used twice: ${ports}`);

    const conf = (name: string) => {
      const m = plan.state.members.find((x) => x.name === name);
      return plan.files.find((f) => f.path === m?.files.config)?.content ?? '';
    };
    const leaf = plan.state.members.find((m) => m.name === 'a-nats-1')?.addresses.leafnode;
    assert.match(leaf ?? '', /^nats-leaf:\/\/127\.0\.0\.1:\d+$/);
    assert.match(conf('a-nats-1'), /domain: "a"/);
    assert.match(conf('a-nats-1'), new RegExp(`listen: "127.0.0.1:${leaf?.split(':').pop()}"`));
    assert.match(conf('b-nats-1'), /domain: "b"/);
    assert.ok(conf('b-nats-1').includes(`remotes: [ { urls: ["${leaf}"] } ]`));
    assert.doesNotMatch(conf('a-nats-1'), /cluster \{/, 'one server per site runs JetStream standalone');

    const tokens = new Set(plan.files.filter((f) => f.path.endsWith('admin-token')).map((f) => f.content));
    assert.equal(tokens.size, 1, 'one admin token for both sites');
    for (const m of plan.state.members.filter((x) => x.kind === 'vigil')) {
      const path = join(dir, `${m.name}.yml`);
      writeFileSync(path, conf(m.name));
      const config = loadConfig({ file: path, env: {} });
      assert.deepEqual([config.cluster.site, config.cluster.peer_site], [m.site, m.site === 'a' ? 'b' : 'a']);
      const nats = plan.state.members.find((x) => x.name === `${m.site}-nats-1`)?.addresses.client;
      assert.deepEqual(config.bus.jetstream.servers, [nats], "a node uses its own site's NATS");
      assert.equal(config.bus.jetstream.replicas, 1, 'one server per site: streams of one replica');
      const etcd = plan.state.members.find((x) => x.name === `${m.site}-etcd-1`)?.addresses.client;
      assert.deepEqual(config.cluster.etcd_endpoints, [etcd], "and its own site's etcd");
    }

    assert.deepEqual(siteMembers(plan.state.members, 'b'), ['b-nats-1', 'b-etcd-1', 'b-vigil-1', 'b-vigil-2']);
    assert.throws(
      () => siteMembers(plan.state.members, 'c'),
      (err: DevClusterError) => err.code === 'unknown_site' && /the sites are a, b/.test(err.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('with a link relay, b leafs into link-1 (of neither site), which joins it to a; only then', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-sites-link-'));
  try {
    const plan = await planSites({ dir, nodes: 1, sites: 2, linkRelay: true }, BINARIES);
    const link = plan.state.members.find((m) => m.kind === 'link');
    assert.equal(link?.name, 'link-1');
    assert.equal(link?.site, undefined, 'the link belongs to neither site: kill --site leaves it alone');
    assert.deepEqual(siteMembers(plan.state.members, 'a'), ['a-nats-1', 'a-etcd-1', 'a-vigil-1']);
    const aLeaf = plan.state.members
      .find((m) => m.name === 'a-nats-1')
      ?.addresses.leafnode?.split(':')
      .pop();
    const [, relayPort, to] = /^127\.0\.0\.1:(\d+) -> (.+)$/.exec(link?.addresses.leafnode ?? '') ?? [];
    assert.equal(to, `127.0.0.1:${aLeaf}`, 'the relay joins to a-nats-1 leafnode port');
    const b = plan.state.members.find((m) => m.name === 'b-nats-1');
    const bConf = plan.files.find((f) => f.path === b?.files.config)?.content ?? '';
    assert.ok(bConf.includes(`remotes: [ { urls: ["nats-leaf://127.0.0.1:${relayPort}"] } ]`), bConf);
    assert.ok(!bConf.includes(`:${aLeaf}"`), "b never dials a's leafnode port itself");
    const a = plan.state.members.find((m) => m.name === 'a-nats-1');
    const aConf = plan.files.find((f) => f.path === a?.files.config)?.content ?? '';
    assert.ok(
      aConf.includes(`advertise: "127.0.0.1:${relayPort}"`),
      'nor learns it from a (it would reconnect around the relay)',
    );
    assert.ok(link?.args.includes(`leafnode=127.0.0.1:${relayPort}->127.0.0.1:${aLeaf}`));
    const quiet = belowEphemeralPorts();
    if (quiet) {
      for (const p of [relayPort, link?.ready_url.match(/:(\d+)\//)?.[1]]) {
        assert.ok(Number(p) <= quiet.max, `relay port ${p} below the ephemeral range: no outgoing connection takes it`);
      }
    }
    assert.match(link?.ready_url ?? '', /^http:\/\/127\.0\.0\.1:\d+\/ready$/);

    const without = await planSites({ dir: join(dir, 'plain'), nodes: 1, sites: 2 }, BINARIES);
    assert.ok(!without.state.members.some((m) => m.kind === 'link'), 'no relay unless asked');
    const plainA = without.state.members.find((m) => m.name === 'a-nats-1');
    assert.doesNotMatch(without.files.find((f) => f.path === plainA?.files.config)?.content ?? '', /advertise/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
