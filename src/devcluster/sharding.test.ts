import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { configSchema } from '../config/schema.ts';
import { shardingConfig } from './sharding.ts';

test('--shards/--replicas become store settings every node validates; nothing asked, nothing set', () => {
  assert.equal(shardingConfig({}, 4), undefined);
  const c = shardingConfig({ shards: 8, replicas: 2 }, 4);
  assert.deepEqual(c, { store: { shards: 8, replicas: 2, shard_grace_ms: 20000 } });
  const parsed = configSchema.parse(c);
  assert.equal(parsed.store.shards, 8);
  assert.equal(parsed.store.replicas, 2);
  assert.deepEqual(shardingConfig({ shards: 4 }, 3), { store: { shards: 4, shard_grace_ms: 20000 } });
});

test('a request the cluster cannot meet is refused with the reason', () => {
  assert.throws(() => shardingConfig({ shards: 8, replicas: 5 }, 4), /more than the 4 Vigil nodes/);
  assert.throws(() => shardingConfig({ replicas: 2 }, 4), /needs --shards/);
});

test('vigil dev-cluster up --shards/--replicas: a request the cluster cannot meet exits 2 before starting anything', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-dc-shards-'));
  try {
    const bin = resolve(import.meta.dirname, '../../bin/vigil');
    const res = spawnSync(
      bin,
      ['dev-cluster', 'up', '--dir', join(dir, 'c'), '--nodes', '4', '--shards', '8', '--replicas', '5'],
      { encoding: 'utf8', timeout: 60000 },
    );
    assert.equal(res.status, 2, res.stderr);
    assert.match(res.stderr, /--replicas 5 is more than the 4 Vigil nodes/);
    assert.equal(existsSync(join(dir, 'c', 'state.json')), false, 'nothing was created');
    const bad = spawnSync(bin, ['dev-cluster', 'up', '--dir', join(dir, 'c'), '--shards', '0'], {
      encoding: 'utf8',
      timeout: 60000,
    });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--shards must be an integer from 1 to 1024/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
