import assert from 'node:assert/strict';
import { test } from 'node:test';
import { query } from 'chdb';
import fc from 'fast-check';
import { murmur3, shardOf, shardPredicate } from './types.ts';

test('murmur3 matches the reference vectors of MurmurHash3_x86_32 (seed 0)', () => {
  for (const [s, h] of [
    ['', 0],
    ['abc', 3017643002],
    ['a', 0x3c2569b2],
    ['abcd', 0x43ed676a],
    ['Hello, world!', 0xc0363e43],
  ] as const) {
    assert.equal(murmur3(s), h, JSON.stringify(s));
  }
});

test("shardOf agrees with the engine's murmurHash3_32 for any id (property, 300 ids per run)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.string({ maxLength: 40 }), fc.uuid(), fc.string({ unit: 'grapheme', maxLength: 20 })), {
        minLength: 1,
        maxLength: 300,
      }),
      fc.integer({ min: 1, max: 64 }),
      (ids, shards) => {
        const list = ids.map((id) => `'${Buffer.from(id, 'utf8').toString('hex')}'`).join(',');
        const rows = query(
          `SELECT murmurHash3_32(unhex(x)) % ${shards} AS s FROM (SELECT arrayJoin([${list}]) AS x)`,
          'JSONEachRow',
        )
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { s: number }).s);
        assert.deepEqual(
          rows,
          ids.map((id) => shardOf(id, shards)),
        );
      },
    ),
    { numRuns: 15 },
  );
});

test('shardOf spreads uuids evenly: each of 8 shards gets 12.5 % +- 1.5 % of 40,000 ids', () => {
  const counts = new Array(8).fill(0);
  for (let i = 0; i < 40000; i++) counts[shardOf(crypto.randomUUID(), 8)]++;
  for (const c of counts) assert.ok(Math.abs(c / 40000 - 0.125) < 0.015, `counts ${counts}`);
});

test('shardPredicate refuses what is not a shard and is true everywhere for one shard', () => {
  assert.equal(shardPredicate(0, 1), '1');
  assert.equal(shardPredicate(3, 8), 'murmurHash3_32(id) % 8 = 3');
  assert.throws(() => shardPredicate(8, 8), RangeError);
  assert.throws(() => shardPredicate(1.5, 8), RangeError);
  assert.throws(() => shardPredicate(-1, 8), RangeError);
});
