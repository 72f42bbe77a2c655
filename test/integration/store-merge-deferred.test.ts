import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileStore } from '../harness/event-store.ts';
import type { NormalizedEvent } from '../../src/lib/event.ts';
import { compileQuery } from '../../src/query/index.ts';
import { mergeLoneParts } from '../../src/store/lone-parts.ts';
import { FULL_TEXT_INDEX } from '../../src/store/schema.ts';

// Work an INSERT into a day the store wrote to lately leaves to the merges (insertFromFileSql's
// `deferToMerges`, active-days.ts): the text index on `raw` (schema.ts, FULL_TEXT_INDEX) and the collapse of
// rows of the same sort key. Searches answer the same before and after; the first INSERT into a day does both.
const store = fileStore('vigil-merge-deferred-');

const NOW = Date.now();
/** Noon (UTC) of today: the tests' events of one day, whatever the time of the run. */
const NOON = Math.floor(NOW / 86_400_000) * 86_400_000 + 43_200_000;

function event(i: number, word: string, at = NOON + i): NormalizedEvent {
  const raw = JSON.stringify({ n: i, CommandLine: `cmd.exe /c ${word} --Flag${i}` });
  return {
    id: `e${i}`,
    timestamp: at,
    ingested: NOW,
    tenant: 't1',
    source: 'http',
    layout: 'json',
    raw,
    fields: { n: String(i), CommandLine: `cmd.exe /c ${word} --Flag${i}` },
  };
}

/** The events table's active parts, and the bytes of its text index in them. */
async function indexBytes(): Promise<{ parts: number; bytes: number }> {
  const [parts] = await store().query<{ n: string }>(
    "SELECT count() AS n FROM system.parts WHERE active AND database = 'vigil' AND table = 'events'",
    {},
  );
  const [index] = await store().query<{ bytes: string }>(
    `SELECT data_compressed_bytes AS bytes FROM system.data_skipping_indices
     WHERE database = 'vigil' AND table = 'events' AND name = {name:String}`,
    { name: FULL_TEXT_INDEX },
  );
  return { parts: Number(parts.n), bytes: Number(index.bytes) };
}

async function countOf(q: string): Promise<number> {
  const c = compileQuery(`${q} | stats count()`, { from: 0, to: 2e12, limit: 100, tenants: ['t1'], now: NOW });
  const [row] = await store().query<{ count: string }>(c.sql, c.params);
  return Number(row.count);
}

/** Events found by a word in any case, and by a word inside a longer token's split. */
const counts = async () => ({
  whoami: await countOf('whoami'),
  ipconfig: await countOf('ipconfig'),
  flag7: await countOf('flag7'),
});

test('an INSERT into a day written lately leaves the text index to the merge; words are found before and after it', async () => {
  assert.equal(FULL_TEXT_INDEX, 'idx_raw_text');
  await store().exec('SYSTEM STOP MERGES vigil.events');
  // The day's first INSERT builds the index; the next, into a partition that now has a part, leaves it.
  await store().write(Array.from({ length: 30 }, (_, i) => event(i, i % 3 === 0 ? 'whoami' : 'ipconfig')));
  const first = await indexBytes();
  assert.equal(first.parts, 1);
  assert.ok(first.bytes > 0, "the day's first INSERT built the text index");
  await store().write(Array.from({ length: 20 }, (_, i) => event(100 + i, 'WhoAmI')));
  const second = await indexBytes();
  assert.equal(second.parts, 2);
  assert.equal(second.bytes, first.bytes, 'the second INSERT built no text index');
  const before = await counts();
  assert.deepEqual(before, { whoami: 30, ipconfig: 20, flag7: 1 });

  await store().exec('SYSTEM START MERGES vigil.events');
  await store().exec('OPTIMIZE TABLE vigil.events FINAL');
  const merged = await indexBytes();
  assert.equal(merged.parts, 1);
  assert.ok(merged.bytes > first.bytes, 'the merge built the text index of every row');
  const after = await counts();
  assert.deepEqual(after, before);
});

test('an event twice in one INSERT is two rows until a merge, and one event to a search before and after it', async () => {
  await store().exec('SYSTEM STOP MERGES vigil.events');
  await store().write([event(499, 'route')]); // the day written lately, whatever ran before
  const twice = event(500, 'netstat');
  await store().write([twice, event(501, 'netstat'), { ...twice }]);
  const rows = async () => {
    const [row] = await store().query<{ n: string }>("SELECT count() AS n FROM vigil.events WHERE id = 'e500'", {});
    return Number(row.n);
  };
  assert.equal(await rows(), 2, 'the INSERT kept both rows');
  assert.equal(await countOf('netstat'), 2);
  const c = compileQuery('netstat', { from: 0, to: 2e12, limit: 100, tenants: ['t1'], now: NOW });
  const found = await store().query<{ id: string }>(c.sql, c.params);
  assert.deepEqual(found.map((r) => r.id).sort(), ['e500', 'e501']);
  await store().exec('SYSTEM START MERGES vigil.events');
  await store().exec('OPTIMIZE TABLE vigil.events FINAL');
  assert.equal(await rows(), 1);
  assert.equal(await countOf('netstat'), 2);
});

test("a day's first INSERT indexes and collapses its rows at insert: a lone part of an old day is final", async () => {
  const old = Date.UTC(2026, 0, 10, 12);
  const twice = event(900, 'tasklist', old);
  const indexedBefore = (await indexBytes()).bytes;
  await store().write([twice, event(901, 'tasklist', old + 1), { ...twice }]);
  const [part] = await store().query<{ rows: string; level: number }>(
    `SELECT toString(rows) AS rows, level FROM system.parts
      WHERE active AND database = 'vigil' AND table = 'events' AND partition_id = '20260110'`,
    {},
  );
  // Level 1: the engine's FINAL reads a partition of one such part as it is, without merging it.
  assert.deepEqual(part, { rows: '2', level: 1 });
  assert.ok((await indexBytes()).bytes > indexedBefore, 'the INSERT built the text index');
  const c = compileQuery('tasklist | stats count()', { from: 0, to: 2e12, limit: 100, tenants: ['t1'], now: NOW });
  const [row] = await store().query<{ count: string }>(c.sql, c.params);
  assert.equal(Number(row.count), 2);
});

test('a part left alone unmerged (its earlier part dropped) is merged by the sweep; a drop makes the store forget its days', async () => {
  const day = Date.UTC(2026, 0, 20, 12);
  const parts = () =>
    store().query<{ name: string; level: number }>(
      `SELECT name, level FROM system.parts WHERE active AND database = 'vigil' AND table = 'events'
        AND partition_id = '20260120' ORDER BY level`,
      {},
    );
  const levels = async () => (await parts()).map((p) => p.level);
  await store().exec('SYSTEM STOP MERGES vigil.events');
  await store().write([event(700, 'hostname', day), event(701, 'hostname', day + 1)]);
  await store().write([event(702, 'whoami', day + 2), event(702, 'whoami', day + 2)]);
  assert.deepEqual(await levels(), [0, 1], "the day's second INSERT left its work to a merge");
  const first = (await parts()).find((p) => p.level === 1)?.name;
  await store().exec(`ALTER TABLE vigil.events DROP PART '${first}'`);
  assert.deepEqual(await levels(), [0], 'the unmerged part is alone in its day');
  await store().exec('SYSTEM START MERGES vigil.events');
  const indexed = (await indexBytes()).bytes;
  assert.deepEqual(await mergeLoneParts(store(), 0), ['20260120']);
  const [merged] = await levels();
  assert.ok(merged >= 1, 'merged');
  assert.ok((await indexBytes()).bytes > indexed, 'its word index built');
  const [row] = await store().query<{ n: string }>(
    "SELECT toString(count()) AS n FROM vigil.events WHERE id = 'e702'",
    {},
  );
  assert.equal(row.n, '1', 'its two rows of one event collapsed');
  assert.deepEqual(await mergeLoneParts(store(), 0), [], 'nothing left to merge');
  // The drop made the store forget the day: its next INSERT does all its work again.
  await store().write([event(703, 'arp', day + 3)]);
  assert.ok(
    (await levels()).every((l) => l >= 1),
    'no unmerged part',
  );
});
