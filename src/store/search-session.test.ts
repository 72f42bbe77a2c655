import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { NormalizedEvent } from '../lib/event.ts';
import { openTestStore } from '../../test/harness/event-store.ts';

// chdb binds one data directory per process: this file has its own.
const dataDir = mkdtempSync(join(tmpdir(), 'vigil-store-search-session-'));
const store = openTestStore(dataDir);
before(() => store.start());
after(async () => {
  await store.stop(Date.now() + 5000);
  rmSync(dataDir, { recursive: true, force: true });
});

/** A statement the engine spends about 2 s on (40 rows at 50 ms, one row a block). */
const SLOW = 'SELECT sum(sleepEachRow(0.05)) AS slept FROM numbers(40) SETTINGS max_block_size = 1';
/** Well under SLOW's 2 s, and generous for a loaded machine. */
const QUICK_MS = 1200;

function event(id: string): NormalizedEvent {
  const now = Date.now();
  return {
    id,
    timestamp: now,
    ingested: now,
    tenant: 'default',
    source: 'http',
    layout: 'json',
    raw: `{"id":"${id}"}`,
    fields: { id },
  };
}

async function timed<T>(p: Promise<T>): Promise<{ value: T; ms: number }> {
  const t = performance.now();
  const value = await p;
  return { value, ms: performance.now() - t };
}

test('a search does not wait behind an insert running on the writing session', async () => {
  await store.write([event('before-slow')]);
  // An insert the engine spends about 2 s on: the default is computed for each row, one block of 40.
  await store.exec('CREATE TABLE vigil.slow (x UInt8, s UInt8 DEFAULT sleepEachRow(0.05)) ENGINE = Memory');
  const rows = Buffer.from(Array.from({ length: 40 }, () => '{"x":1}').join('\n'));
  const slow = timed(store.insertRows('slow', rows));
  await new Promise((r) => setTimeout(r, 100));
  const search = await timed(
    store.search('analyst', (scope) =>
      scope.query<{ n: string }>('SELECT toString(count()) AS n FROM vigil.events', {}),
    ),
  );
  const { ms: slowMs } = await slow;
  assert.ok(slowMs >= 1500, `the slow insert took only ${Math.round(slowMs)} ms`);
  assert.deepEqual(search.value, [{ n: '1' }]);
  assert.ok(
    search.ms < QUICK_MS,
    `the search took ${Math.round(search.ms)} ms behind a ${Math.round(slowMs)} ms insert`,
  );
});

test('a write does not wait behind a running search, and a search then sees it', async () => {
  const slow = timed(store.search('analyst', (scope) => scope.query(SLOW, {})));
  await new Promise((r) => setTimeout(r, 100));
  const write = await timed(store.write([event('during-search')]));
  const { ms: slowMs } = await slow;
  assert.ok(slowMs >= 1500, `the slow search took only ${Math.round(slowMs)} ms`);
  assert.ok(write.ms < QUICK_MS, `the write took ${Math.round(write.ms)} ms behind a ${Math.round(slowMs)} ms search`);
  const rows = await store.search('analyst', (scope) =>
    scope.query<{ id: string }>("SELECT id FROM vigil.events FINAL WHERE id = 'during-search'", {}),
  );
  assert.deepEqual(rows, [{ id: 'during-search' }]);
});

test('a batch written again with its dedup token is dropped by the engine, whatever characters the token has', async () => {
  for (const token of ['events:10-12', "odd 'token' \\ with quotes"]) {
    const batch = [event(`dedup-${token.length}-a`), event(`dedup-${token.length}-b`)];
    await store.write(batch, { dedupToken: token });
    await store.write(batch, { dedupToken: token });
    // Without FINAL: a second copy would be a row of its own until a merge collapsed it.
    const rows = await store.query<{ n: string }>(
      'SELECT toString(count()) AS n FROM vigil.events WHERE startsWith(id, {prefix:String})',
      { prefix: `dedup-${token.length}-` },
    );
    assert.deepEqual(rows, [{ n: '2' }], `token ${token}`);
  }
});

test("a search is not held behind an insert by the writing session's parameterized read waiting for that insert", async () => {
  // chdb runs parameterized statements one at a time in the whole process: a store read let into the busy
  // writing session would hold the search's (parameterized) read for the whole insert.
  await store.exec(
    'CREATE TABLE IF NOT EXISTS vigil.slow2 (x UInt8, s UInt8 DEFAULT sleepEachRow(0.05)) ENGINE = Memory',
  );
  const rows = Buffer.from(Array.from({ length: 40 }, () => '{"x":1}').join('\n'));
  const slow = timed(store.insertRows('slow2', rows));
  await new Promise((r) => setTimeout(r, 100));
  const ownRead = timed(store.query<{ n: string }>('SELECT toString({n:UInt8}) AS n', { n: 5 }));
  await new Promise((r) => setTimeout(r, 50));
  const search = await timed(
    store.search('analyst', (scope) => scope.query<{ n: string }>('SELECT toString({n:UInt8}) AS n', { n: 7 })),
  );
  const { ms: slowMs } = await slow;
  const own = await ownRead;
  assert.ok(slowMs >= 1500, `the slow insert took only ${Math.round(slowMs)} ms`);
  assert.deepEqual(own.value, [{ n: '5' }]);
  assert.deepEqual(search.value, [{ n: '7' }]);
  assert.ok(
    search.ms < QUICK_MS,
    `the search took ${Math.round(search.ms)} ms behind a ${Math.round(slowMs)} ms insert and a read waiting for it`,
  );
});

test("a write is not held behind the store's own read waiting in chdb's line for a running search", async () => {
  // The search is parameterized (it holds chdb's process-wide line for 2 s); the store's read waits in that
  // line, and the write must go on beside both.
  const slow = timed(store.search('analyst', (scope) => scope.query(`${SLOW.replace('40', '{n:UInt8}')}`, { n: 40 })));
  await new Promise((r) => setTimeout(r, 100));
  const ownRead = timed(store.query<{ n: string }>('SELECT toString({n:UInt8}) AS n', { n: 3 }));
  await new Promise((r) => setTimeout(r, 50));
  const write = await timed(store.write([event('beside-a-waiting-read')]));
  const { ms: slowMs } = await slow;
  const own = await ownRead;
  assert.ok(slowMs >= 1500, `the slow search took only ${Math.round(slowMs)} ms`);
  assert.deepEqual(own.value, [{ n: '3' }]);
  assert.ok(
    write.ms < QUICK_MS,
    `the write took ${Math.round(write.ms)} ms behind a read waiting for a ${Math.round(slowMs)} ms search`,
  );
});
