import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NodeView } from './membership.ts';
import { partitionOf, partitionQuota } from './partitions.ts';

test('partitionOf is stable across processes: known values do not move', () => {
  // Fixed values: changing the hash would move every correlation group to another partition.
  assert.equal(partitionOf('default', 'bob', 16), partitionOf('default', 'bob', 16));
  const sample = [partitionOf('default', 'bob', 16), partitionOf('acme', 'bob', 16), partitionOf('default', '', 16)];
  assert.deepEqual(sample, [5, 12, 10]);
});

test('partitionOf separates tenants and spreads keys over every partition', () => {
  const counts = new Array(16).fill(0);
  for (let i = 0; i < 16000; i++) counts[partitionOf('default', `user-${i}`, 16)]++;
  for (const c of counts) assert.ok(c > 800 && c < 1200, `partition sizes are even: ${counts.join(',')}`);
  assert.notEqual(
    [0, 1, 2, 3, 4, 5].map((i) => partitionOf('t1', `k${i}`, 16)).join(),
    [0, 1, 2, 3, 4, 5].map((i) => partitionOf('t2', `k${i}`, 16)).join(),
  );
});

const node = (id: string, over: Partial<NodeView> = {}): NodeView => ({
  id,
  state: 'Alive',
  maintenance: 'active',
  roles: ['detect'],
  partitions: [],
  version: '1',
  address: 'h:1',
  started_at: '',
  heartbeat_age_ms: 0,
  ...over,
});

test('partitionQuota: ceil(partitions / active detect nodes)', () => {
  const cases: [string, NodeView[], boolean, number][] = [
    ['alone, not yet registered', [], true, 16],
    ['three nodes', [node('a'), node('b'), node('c')], true, 6],
    ['self counted once', [node('a'), node('b')], true, 8],
    ['a Dead node does not count', [node('a'), node('b'), node('c', { state: 'Dead' })], true, 8],
    ['a Suspect node still counts', [node('a'), node('b'), node('c', { state: 'Suspect' })], true, 6],
    ['a draining node does not count', [node('a'), node('b'), node('c', { maintenance: 'draining' })], true, 8],
    ['nodes without detect do not count', [node('a'), node('b', { roles: ['ingest'] })], true, 16],
    ['role all runs detect', [node('a'), node('b', { roles: ['all'] })], true, 8],
    ['a node that takes no partitions', [node('a'), node('b')], false, 0],
  ];
  for (const [name, nodes, takes, want] of cases) assert.equal(partitionQuota(16, nodes, 'a', takes), want, name);
});
