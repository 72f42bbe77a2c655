import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { acceptedEventId, newEventId, seededEventId, windowsEventId } from './event-id.ts';

const HEX128 = /^[0-9a-f]{32}$/;
const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('seeded ids (idempotent requests)', () => {
  test('the same tenant, seed and text give the same id, as 32 lowercase hex digits', () => {
    const a = seededEventId('t1', 'key-1:1', '{"a":1}');
    assert.match(a, HEX128);
    assert.equal(seededEventId('t1', 'key-1:1', '{"a":1}'), a);
  });

  test('changing any input changes the id', () => {
    const base = seededEventId('t1', 'key-1:1', '{"a":1}');
    for (const other of [
      seededEventId('t2', 'key-1:1', '{"a":1}'),
      seededEventId('t1', 'key-1:2', '{"a":1}'),
      seededEventId('t1', 'key-1:1', '{"a":2}'),
    ]) {
      assert.notEqual(other, base);
    }
  });

  test('parts cannot run into each other (length-prefixed)', () => {
    assert.notEqual(seededEventId('ab', 'c', 'x'), seededEventId('a', 'bc', 'x'));
    assert.notEqual(seededEventId('t', 'k\n1:', 'x'), seededEventId('t', 'k', '1:\nx'));
  });
});

describe('Windows record ids', () => {
  test('the same record gives the same id; computer and channel compare without case', () => {
    const a = windowsEventId('t1', 'WS5.corp.local', 'Security', '66936');
    assert.match(a, HEX128);
    assert.equal(windowsEventId('t1', 'ws5.CORP.local', 'security', '66936'), a);
  });

  test('another tenant, computer, channel or record gives another id', () => {
    const a = windowsEventId('t1', 'WS5', 'Security', '1');
    assert.notEqual(windowsEventId('t2', 'WS5', 'Security', '1'), a);
    assert.notEqual(windowsEventId('t1', 'WS6', 'Security', '1'), a);
    assert.notEqual(windowsEventId('t1', 'WS5', 'System', '1'), a);
    assert.notEqual(windowsEventId('t1', 'WS5', 'Security', '2'), a);
  });

  test('a record id never equals a seeded id of the same parts', () => {
    assert.notEqual(windowsEventId('t', 'c', 'h', 'r'), seededEventId('t', 'c', 'r'));
  });
});

describe('new ids', () => {
  test('are UUIDv7 carrying the given millisecond time', () => {
    const now = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    const id = newEventId(now);
    assert.match(id, UUID7);
    assert.equal(Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16), now);
  });

  test('are unique and sort by time', () => {
    const ids = Array.from({ length: 10000 }, (_, i) => newEventId(1_700_000_000_000 + Math.floor(i / 100)));
    assert.equal(new Set(ids).size, ids.length);
    const byTime = ids.filter((_, i) => i % 100 === 0);
    assert.deepEqual([...byTime].sort(), byTime);
  });
});

describe('event.id sent with the event', () => {
  const cases: { name: string; value: Parameters<typeof acceptedEventId>[0]; expected: string | undefined }[] = [
    { name: 'a printable id is kept', value: 'Abc-123_x:y', expected: 'Abc-123_x:y' },
    { name: 'a number is kept as its text', value: 12345, expected: '12345' },
    { name: 'exactly 128 characters is kept', value: 'x'.repeat(128), expected: 'x'.repeat(128) },
    { name: 'more than 128 characters is refused', value: 'x'.repeat(129), expected: undefined },
    { name: 'control characters are refused', value: 'a\nb', expected: undefined },
    { name: 'non-ASCII is refused', value: 'ümlaut', expected: undefined },
    { name: 'empty or blank is refused', value: '  ', expected: undefined },
    { name: 'an array is refused', value: ['a'], expected: undefined },
    { name: 'null is refused', value: null, expected: undefined },
  ];
  for (const c of cases) test(c.name, () => assert.equal(acceptedEventId(c.value), c.expected));
});

test('deterministic ids never change across versions (a retry through a node of another version stores nothing twice)', () => {
  assert.equal(windowsEventId('t', 'HOST', 'Security', '123'), '767f126a2ba7e9e68a59dfe97a1425b0');
  assert.equal(seededEventId('t1', 'key-1:1', '{"a":1}'), '4069239a40fc11035e5f5d18002a2cf6');
});
