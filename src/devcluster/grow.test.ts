import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../config/load.ts';
import { DevClusterError } from './errors.ts';
import { type AddRequest, MAX_DEV_NODES, planAddedNodes } from './grow.ts';
import { balancerConfig } from './haproxy.ts';
import { type DevClusterState, type Plan, planDevCluster, portAllocator } from './plan.ts';
import { planSites } from './sites.ts';

const BINARIES = { 'nats-server': '/usr/sbin/nats-server', etcd: '/usr/bin/etcd', haproxy: '/usr/sbin/haproxy' };

function write(plan: Plan): void {
  for (const d of plan.dirs) mkdirSync(d, { recursive: true });
  for (const f of plan.files) {
    mkdirSync(resolve(f.path, '..'), { recursive: true });
    writeFileSync(f.path, f.content, { mode: f.mode });
  }
}

const ports = (state: DevClusterState) =>
  state.members.flatMap((m) => Object.values(m.addresses).flatMap((a) => /:(\d+)/.exec(a)?.[1] ?? []));

test('add plans the next nodes with the cluster configuration and ports, ids and folders of their own', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-grow-'));
  try {
    const port = portAllocator();
    const sharded = { store: { shards: 8, replicas: 2, shard_grace_ms: 8000 }, detect: { starter_rules: false } };
    // A node routed through proxies (the fault harness's partitionable node) is the first: not copied.
    const plan = await planDevCluster(
      {
        dir,
        nodes: 4,
        port,
        vigilConfig: sharded,
        endpointsFor: (node, all) =>
          node === 'vigil-1' ? { nats: ['nats://127.0.0.2:1'], etcd: ['http://127.0.0.2:2'] } : all,
      },
      BINARIES,
    );
    write(plan);
    const added = await planAddedNodes(
      plan.state,
      { count: 2 },
      {
        port,
        readConfig: (path) => readFileSync(path, 'utf8'),
      },
    );
    write(added);
    assert.deepEqual(
      added.state.members.map((m) => m.name),
      ['vigil-5', 'vigil-6'],
    );
    const all = ports({ ...plan.state, members: [...plan.state.members, ...added.state.members] });
    assert.equal(new Set(all).size, all.length, 'no port is used twice');
    const token = readFileSync(plan.state.admin_token_file, 'utf8');
    const nats = plan.state.members.filter((m) => m.kind === 'nats').map((m) => m.addresses.client);
    const etcd = plan.state.members.filter((m) => m.kind === 'etcd').map((m) => m.addresses.client);
    for (const m of added.state.members) {
      assert.equal(m.state, 'stopped');
      assert.equal(m.pid, null);
      assert.equal(m.kind, 'vigil');
      const config = loadConfig({ file: m.files.config, env: {} });
      assert.equal(config.cluster.node_id, m.name);
      assert.equal(config.bus.jetstream.client_name, m.name);
      assert.equal(`http://${config.http.addr}`, m.addresses.http);
      assert.equal(config.cluster.advertise_addr, config.http.addr);
      assert.equal(config.data_dir, join(dir, m.name, 'data'));
      assert.deepEqual(config.bus.jetstream.servers, nats, 'every NATS server, directly');
      assert.deepEqual(config.cluster.etcd_endpoints, etcd, 'every etcd member, directly');
      // The cluster's own settings are the first node's.
      assert.equal(config.store.shards, 8);
      assert.equal(config.store.replicas, 2);
      assert.equal(config.store.shard_grace_ms, 8000);
      assert.equal(config.detect.starter_rules, false);
      assert.equal(config.cluster.peer_token_file, join(dir, 'peer-token'));
      assert.equal(readFileSync(join(config.data_dir, 'admin-token'), 'utf8'), token);
      assert.ok(!readFileSync(m.files.config, 'utf8').includes(token.trim()), 'the token is not in the config');
    }
    // The state given is not changed.
    assert.equal(plan.state.members.filter((m) => m.kind === 'vigil').length, 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('add numbers after the highest node and refuses what it cannot do', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-grow-'));
  try {
    const plan = await planDevCluster({ dir, nodes: 2 }, BINARIES);
    write(plan);
    const readConfig = (path: string) => readFileSync(path, 'utf8');
    const port = portAllocator();
    // vigil-2 removed by hand: the next is still vigil-3, never a reused name.
    const gap = { ...plan.state, members: plan.state.members.filter((m) => m.name !== 'vigil-2') };
    const next = await planAddedNodes(
      {
        ...gap,
        members: [...gap.members, { ...plan.state.members.find((m) => m.name === 'vigil-1')!, name: 'vigil-7' }],
      },
      { count: 1 },
      { port, readConfig },
    );
    assert.deepEqual(
      next.state.members.map((m) => m.name),
      ['vigil-8'],
    );
    assert.equal(next.state.members[0].site, undefined, 'a cluster of one site records none');
    const cases: [string, DevClusterState, AddRequest, string, RegExp][] = [
      ['a count below 1', plan.state, { count: 0 }, 'bad_count', /cannot add 0 nodes/],
      ['past the node limit', plan.state, { count: MAX_DEV_NODES - 1 }, 'too_many_nodes', /has 2 Vigil nodes/],
      ['a site named in a cluster of one', plan.state, { count: 1, site: 'a' }, 'unknown_site', /has one site/],
      [
        'no Vigil node to copy',
        { ...plan.state, members: plan.state.members.filter((m) => m.kind !== 'vigil') },
        { count: 1 },
        'no_template',
        /records no Vigil node/,
      ],
    ];
    for (const [what, state, request, code, message] of cases) {
      await assert.rejects(
        planAddedNodes(state, request, { port, readConfig }),
        (err: unknown) => err instanceof DevClusterError && err.code === code && message.test(err.message),
        what,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("add to one site of a two-site cluster: that site's NATS, etcd and site settings, named and placed in that site", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-grow-sites-'));
  try {
    const port = portAllocator();
    // Each site's first node routed through proxies (as the fault harness would): its endpoints are not copied.
    const plan = await planSites(
      {
        dir,
        nodes: 2,
        sites: 2,
        lb: true,
        port,
        vigilConfig: { detect: { starter_rules: false } },
        endpointsFor: (node, all) =>
          node === 'vigil-1' ? { nats: ['nats://127.0.0.2:1'], etcd: ['http://127.0.0.2:2'] } : all,
      },
      BINARIES,
    );
    write(plan);
    const readConfig = (path: string) => readFileSync(path, 'utf8');
    const member = (name: string) => plan.state.members.find((m) => m.name === name)!;
    const added = await planAddedNodes(plan.state, { count: 2, site: 'b' }, { port, readConfig });
    write(added);
    assert.deepEqual(
      added.state.members.map((m) => [m.name, m.site]),
      [
        ['b-vigil-3', 'b'],
        ['b-vigil-4', 'b'],
      ],
    );
    const all = ports({ ...plan.state, members: [...plan.state.members, ...added.state.members] });
    assert.equal(new Set(all).size, all.length, 'no port is used twice');
    const first = loadConfig({ file: member('b-vigil-1').files.config, env: {} });
    for (const m of added.state.members) {
      const id = m.name.replace('b-', '');
      assert.equal(m.cwd, join(dir, 'b', id), "in the site's folder");
      assert.equal(m.log, join(dir, 'b', 'logs', `${id}.log`), "logging beside the site's other nodes");
      const config = loadConfig({ file: m.files.config, env: {} });
      assert.equal(config.cluster.node_id, id, 'node ids as the site numbers them (b-vigil-1 is vigil-1)');
      assert.equal(config.data_dir, join(dir, 'b', id, 'data'));
      assert.deepEqual(config.bus.jetstream.servers, [member('b-nats-1').addresses.client], "b's NATS only");
      assert.deepEqual(config.cluster.etcd_endpoints, [member('b-etcd-1').addresses.client], "b's etcd only");
      assert.deepEqual([config.cluster.site, config.cluster.peer_site], ['b', 'a']);
      assert.equal(config.bus.jetstream.replicas, 1, "the site's one-server streams");
      assert.equal(config.cluster.peer_token_file, first.cluster.peer_token_file);
      assert.deepEqual(config.http.trusted_proxies, ['127.0.0.1'], 'behind the site balancer');
      assert.equal(config.detect.starter_rules, false);
      assert.equal(readFileSync(join(config.data_dir, 'admin-token'), 'utf8'), readConfig(plan.state.admin_token_file));
    }
    // Only b's balancer changes: a's renders exactly what up wrote.
    const members = [...plan.state.members, ...added.state.members];
    const lb = (site: string) => member(`${site}-haproxy-1`);
    assert.equal(balancerConfig(lb('a'), members), readConfig(lb('a').files.config));
    const b = balancerConfig(lb('b'), members);
    for (const name of ['b-vigil-1', 'b-vigil-2', 'b-vigil-3', 'b-vigil-4']) {
      assert.match(b, new RegExp(`server ${name} 127\\.0\\.0\\.1:\\d+ check\n`));
    }
    assert.doesNotMatch(b, /server a-vigil/);

    // Then a's numbering goes on from a's own nodes.
    const toA = await planAddedNodes({ ...plan.state, members }, { count: 1, site: 'a' }, { port, readConfig });
    assert.deepEqual(
      toA.state.members.map((m) => m.name),
      ['a-vigil-3'],
    );
    const cases: [string, AddRequest, string, RegExp][] = [
      ['no site named', { count: 1 }, 'site_required', /two-site cluster: name the site .*--site a or --site b/],
      ['an unknown site', { count: 1, site: 'c' }, 'unknown_site', /no site c: the sites are a, b/],
      ['past the node limit of the site', { count: MAX_DEV_NODES - 1, site: 'a' }, 'too_many_nodes', /site a .* has 2/],
    ];
    for (const [what, request, code, message] of cases) {
      await assert.rejects(
        planAddedNodes(plan.state, request, { port, readConfig }),
        (err: unknown) => err instanceof DevClusterError && err.code === code && message.test(err.message),
        what,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
