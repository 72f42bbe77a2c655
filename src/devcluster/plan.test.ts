import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { loadConfig } from '../config/load.ts';
import { findBinaries } from './binaries.ts';
import { DevClusterError } from './errors.ts';
import { deepMerge, planDevCluster, portAllocator } from './plan.ts';

const BINARIES = { 'nats-server': '/usr/sbin/nats-server', etcd: '/usr/bin/etcd' };

test('a plan: 3 nats, 3 etcd, N Vigil nodes on distinct loopback ports, each config valid for vigil start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-plan-'));
  try {
    const plan = await planDevCluster({ dir, nodes: 2 }, BINARIES);
    const names = plan.state.members.map((m) => m.name);
    assert.deepEqual(names, ['nats-1', 'nats-2', 'nats-3', 'etcd-1', 'etcd-2', 'etcd-3', 'vigil-1', 'vigil-2']);
    const ports = plan.state.members.flatMap((m) =>
      Object.values(m.addresses)
        .map((a) => /127\.0\.0\.1:(\d+)/.exec(a)?.[1])
        .filter(Boolean),
    );
    assert.equal(new Set(ports).size, ports.length, 'no port is used twice');
    assert.ok(plan.state.members.every((m) => m.state === 'stopped' && m.pid === null));

    const token = plan.files.find((f) => f.path === plan.state.admin_token_file);
    assert.equal(token?.mode, 0o600);
    for (const m of plan.state.members.filter((x) => x.kind === 'vigil')) {
      const file = plan.files.find((f) => f.path === m.files.config)!;
      assert.ok(!file.content.includes(token!.content.trim()), 'the token is not in the config file');
      const path = join(dir, `${m.name}.yml`);
      writeFileSync(path, file.content);
      const config = loadConfig({ file: path, env: {} });
      assert.equal(config.cluster.enabled, true);
      assert.equal(config.cluster.node_id, m.name);
      assert.equal(config.bus.kind, 'jetstream');
      assert.deepEqual(config.roles, ['all']);
      assert.equal(config.bus.jetstream.servers.length, 3);
      assert.equal(config.cluster.etcd_endpoints.length, 3);
      assert.equal(`http://${config.http.addr}`, m.addresses.http);
      // The shared token goes to <data_dir>/admin-token, where Vigil reads its own.
      const own = plan.files.find((f) => f.path === join(config.data_dir, 'admin-token'));
      assert.equal(own?.content, token!.content);
      assert.equal(own?.mode, 0o600);
    }
    const nats = plan.files.find((f) => f.path.endsWith('nats-1/nats.conf'))!.content;
    assert.match(nats, /jetstream \{/);
    assert.match(nats, /no_advertise: true/);
    assert.equal(nats.match(/nats-route:\/\//g)?.length, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('endpointsFor and vigilConfig shape each node', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-plan-'));
  try {
    const plan = await planDevCluster(
      {
        dir,
        nodes: 2,
        vigilConfig: { cluster: { lease_ttl_ms: 3000 }, log: { level: 'warn' } },
        endpointsFor: (node, all) => (node === 'vigil-2' ? { nats: [all.nats[0]], etcd: [all.etcd[0]] } : all),
      },
      BINARIES,
    );
    const config = (name: string) =>
      parse(plan.files.find((f) => f.path === plan.state.members.find((m) => m.name === name)!.files.config)!.content);
    assert.equal(config('vigil-1').bus.jetstream.servers.length, 3);
    assert.equal(config('vigil-2').bus.jetstream.servers.length, 1);
    assert.equal(config('vigil-2').cluster.etcd_endpoints.length, 1);
    assert.equal(config('vigil-1').cluster.lease_ttl_ms, 3000);
    assert.equal(config('vigil-1').cluster.node_id, 'vigil-1', 'merged, not replaced');
    assert.equal(config('vigil-1').log.level, 'warn');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('deepMerge merges mappings and replaces lists and scalars', () => {
  assert.deepEqual(deepMerge({ a: { b: 1, c: [1] }, d: 1 }, { a: { c: [2] }, d: 2 }), { a: { b: 1, c: [2] }, d: 2 });
});

test('a missing binary is named with the command that installs it', () => {
  const env = { PATH: '/nonexistent' };
  // nats-server may still be found in /usr/sbin; etcd (in /usr/bin on Debian) cannot be.
  assert.throws(
    () => findBinaries({ ...env, NATS_SERVER_BIN: '/bin/sh' }),
    (err: unknown) =>
      err instanceof DevClusterError &&
      err.code === 'binary_missing' &&
      err.message.includes('apt-get install etcd-server') &&
      err.message.includes('ETCD_BIN'),
  );
  assert.throws(
    () => findBinaries({ ...env, NATS_SERVER_BIN: '/nonexistent/nats-server' }),
    /NATS_SERVER_BIN=\/nonexistent\/nats-server is not an executable file/,
  );
});

test('planned ports lie below the kernel ephemeral range, where no outgoing connection takes them meanwhile', async () => {
  const range = '/proc/sys/net/ipv4/ip_local_port_range';
  const low = existsSync(range) ? Number(readFileSync(range, 'utf8').trim().split(/\s+/)[0]) : 60000;
  const port = portAllocator();
  const ports = [];
  for (let i = 0; i < 30; i++) ports.push(await port());
  assert.equal(new Set(ports).size, ports.length, 'never twice');
  const below = low > 21024 ? low : 60000;
  for (const p of ports) assert.ok(p >= 20000 && p < below, `${p} below ${below}`);
});
