import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileStore } from '../../test/harness/event-store.ts';
import type { NormalizedEvent } from '../lib/event.ts';
import { compileQuery } from '../query/index.ts';
import { FULL_TEXT_INDEX } from './schema.ts';

// The events' INSERTs leave the text index on `raw` to the first merge (schema.ts, FULL_TEXT_INDEX): the
// same words are found in a part without it (read from `raw`) as after the merge that builds it.
const store = fileStore('vigil-text-index-at-merge-');

const NOW = Date.now();

function event(i: number, word: string): NormalizedEvent {
  const raw = JSON.stringify({ n: i, CommandLine: `cmd.exe /c ${word} --Flag${i}` });
  return {
    id: `e${i}`,
    timestamp: NOW - 1000 + i,
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

test('an INSERT writes its part without the text index; words are found in it, and after the merge that builds the index', async () => {
  assert.equal(FULL_TEXT_INDEX, 'idx_raw_text');
  await store().exec('SYSTEM STOP MERGES vigil.events');
  await store().write(Array.from({ length: 30 }, (_, i) => event(i, i % 3 === 0 ? 'whoami' : 'ipconfig')));
  await store().write(Array.from({ length: 20 }, (_, i) => event(100 + i, 'WhoAmI')));
  const fresh = await indexBytes();
  assert.equal(fresh.parts, 2);
  assert.equal(fresh.bytes, 0, 'the INSERTs built no text index');
  const before = await counts();
  assert.deepEqual(before, { whoami: 30, ipconfig: 20, flag7: 1 });

  await store().exec('SYSTEM START MERGES vigil.events');
  await store().exec('OPTIMIZE TABLE vigil.events FINAL');
  const merged = await indexBytes();
  assert.equal(merged.parts, 1);
  assert.ok(merged.bytes > 0, 'the merge built the text index');
  const after = await counts();
  assert.deepEqual(after, before);
});
