import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lastKnownAddresses } from './transport.ts';

test('shard calls go to the address a node last registered, kept while its registration lapses', () => {
  let nodes: { id: string; address?: string }[] = [
    { id: 'vigil-1', address: '127.0.0.1:8001' },
    { id: 'vigil-2', address: '127.0.0.1:8002' },
  ];
  const addressOf = lastKnownAddresses(() => nodes);
  assert.equal(addressOf('vigil-2'), 'http://127.0.0.1:8002');
  // Its lease expired for a moment (etcd slow): it is gone from the membership but may well serve.
  nodes = [{ id: 'vigil-1', address: '127.0.0.1:8001' }];
  assert.equal(addressOf('vigil-2'), 'http://127.0.0.1:8002');
  // Registered again elsewhere: the new address.
  nodes = [...nodes, { id: 'vigil-2', address: '127.0.0.1:9002' }];
  assert.equal(addressOf('vigil-2'), 'http://127.0.0.1:9002');
  assert.equal(addressOf('vigil-9'), undefined, 'a node never registered has no address');
});
