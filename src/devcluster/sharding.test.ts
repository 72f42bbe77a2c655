import assert from 'node:assert/strict';
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
