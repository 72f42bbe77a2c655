import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clusterConfigSchema } from './config.ts';

test('cluster config: defaults', () => {
  const c = clusterConfigSchema.parse({});
  assert.equal(c.enabled, false);
  assert.deepEqual(c.etcd_endpoints, ['http://127.0.0.1:2379']);
  assert.equal(c.key_prefix, 'vigil/');
  assert.equal(c.lease_ttl_ms, 5000);
  assert.equal(c.partitions, 16);
  assert.equal(c.node_id, undefined);
});

test('cluster config: refuses what cannot work, naming the key', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['unknown key', { lease_ttl: 5 }, ''],
    ['TTL not whole seconds', { lease_ttl_ms: 2500 }, 'lease_ttl_ms'],
    ['TTL below 2 s', { lease_ttl_ms: 1000 }, 'lease_ttl_ms'],
    ['margin and keepalive eat the TTL', { lease_ttl_ms: 3000, keepalive_interval_ms: 1500 }, 'lease_safety_margin_ms'],
    ['suspect after the lease expired', { suspect_after_ms: 5000 }, 'suspect_after_ms'],
    ['endpoint without scheme', { etcd_endpoints: ['127.0.0.1:2379'] }, 'etcd_endpoints'],
    ['no endpoint', { etcd_endpoints: [] }, 'etcd_endpoints'],
    ['prefix without trailing slash', { key_prefix: 'vigil' }, 'key_prefix'],
    ['node id with a slash', { node_id: 'a/b' }, 'node_id'],
  ];
  for (const [name, input, path] of cases) {
    const res = clusterConfigSchema.safeParse(input);
    assert.equal(res.success, false, name);
    if (path)
      assert.ok(
        res.error.issues.some((i) => i.path[0] === path),
        `${name}: ${JSON.stringify(res.error.issues)}`,
      );
  }
});
