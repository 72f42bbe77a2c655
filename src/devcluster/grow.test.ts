import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../config/load.ts';
import { DevClusterError } from './errors.ts';
import { MAX_DEV_NODES, planAddedNodes } from './grow.ts';
import { type DevClusterState, type Plan, planDevCluster, portAllocator } from './plan.ts';

const BINARIES = { 'nats-server': '/usr/sbin/nats-server', etcd: '/usr/bin/etcd' };

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
    const added = await planAddedNodes(plan.state, 2, {
      port,
      readConfig: (path) => readFileSync(path, 'utf8'),
    });
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
      1,
      { port, readConfig },
    );
    assert.deepEqual(
      next.state.members.map((m) => m.name),
      ['vigil-8'],
    );
    const cases: [string, DevClusterState, number, string][] = [
      ['a count below 1', plan.state, 0, 'bad_count'],
      ['past the node limit', plan.state, MAX_DEV_NODES - 1, 'too_many_nodes'],
      [
        'a two-site cluster',
        { ...plan.state, members: plan.state.members.map((m) => ({ ...m, site: 'a' })) },
        1,
        'sites_unsupported',
      ],
      [
        'no Vigil node to copy',
        { ...plan.state, members: plan.state.members.filter((m) => m.kind !== 'vigil') },
        1,
        'no_template',
      ],
    ];
    for (const [what, state, count, code] of cases) {
      await assert.rejects(
        planAddedNodes(state, count, { port, readConfig }),
        (err: unknown) => err instanceof DevClusterError && err.code === code,
        what,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
