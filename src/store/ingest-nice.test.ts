import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { Registry } from 'prom-client';
import type { NormalizedEvent } from '../lib/event.ts';
import { silentLogger } from '../lib/logger.ts';
import { createEventStore, ingestNiceArgs, insertFromFileSql, storeConfigSchema } from './index.ts';

/** A nice value no other code of the process uses, so a thread seen at it ran the store's ingest work. */
const NICE = 7;

// chdb binds one data directory per process: this file has its own.
const dataDir = mkdtempSync(join(tmpdir(), 'vigil-store-ingest-nice-'));
const store = createEventStore(storeConfigSchema.parse({ fsync: false, ingest_nice: NICE }), {
  dataDir,
  metrics: new Registry(),
  logger: silentLogger,
});
before(() => store.start());
after(async () => {
  // The engine, which lives as long as the process, would go on merging the last parts into the folder.
  await store.exec('SYSTEM STOP MERGES vigil.events');
  await store.stop(Date.now() + 5000);
  rmSync(dataDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
});

/** Events of about 2 KB of raw text: 8,000 of them are three INSERTs (cut at 6 MB). */
function events(prefix: string, n: number): NormalizedEvent[] {
  const now = Date.now();
  const pad = 'x'.repeat(2000);
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}-${i}`,
    timestamp: now,
    ingested: now,
    tenant: 'default',
    source: 'http',
    layout: 'json',
    raw: `{"id":"${prefix}-${i}","pad":"${pad}${i}"}`,
    fields: { id: `${prefix}-${i}`, pad: `${pad}${i}` },
  }));
}

/**
 * Watches the process's threads from a worker thread (the event loop is busy building rows during a write)
 * and gives, when stopped, the nice value of every thread seen running or runnable, by thread name.
 */
function watchThreads(): { stop(): Promise<Map<string, Set<number>>> } {
  const worker = new Worker(
    `const { readdirSync, readFileSync } = require('node:fs');
const { parentPort } = require('node:worker_threads');
const seen = new Map();
let go = true;
parentPort.on('message', () => { go = false; });
(function loop() {
  if (!go) { parentPort.postMessage([...seen].map(([k, v]) => [k, [...v]])); return; }
  for (const tid of readdirSync('/proc/self/task')) {
    let stat;
    try { stat = readFileSync('/proc/self/task/' + tid + '/stat', 'utf8'); } catch { continue; }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] !== 'R') continue;
    if (!seen.has(name)) seen.set(name, new Set());
    seen.get(name).add(Number(fields[16]));
  }
  setImmediate(loop);
})();`,
    { eval: true },
  );
  return {
    async stop() {
      const done = new Promise<[string, number[]][]>((resolve) => worker.once('message', resolve));
      worker.postMessage('stop');
      const seen = await done;
      await worker.terminate();
      return new Map(seen.map(([name, nices]) => [name, new Set(nices)]));
    },
  };
}

/**
 * Whether this process may set its threads' priorities (CAP_SYS_NICE, bit 23 of the effective set): the
 * engine changes them only then, and leaves them at 0 otherwise (docs/deployment.md).
 */
const MAY_NICE =
  (BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0'}`) >> 23n) & 1n;

const nicesOf = (seen: Map<string, Set<number>>) => new Set([...seen.values()].flatMap((s) => [...s]));

test('the INSERTs of a write run at store.ingest_nice, the engine arguments nice merges, and 0 leaves both alone', () => {
  assert.match(
    insertFromFileSql('/tmp/x.bin', 'events:1-2', NICE),
    / SETTINGS insert_deduplication_token = 'events:1-2', os_thread_priority = 7 SELECT /,
  );
  assert.match(insertFromFileSql('/tmp/x.bin', undefined, 25), / SETTINGS os_thread_priority = 19 SELECT /);
  assert.doesNotMatch(insertFromFileSql('/tmp/x.bin', 'events:1-2', 0), /os_thread_priority/);
  assert.deepEqual(ingestNiceArgs(NICE), ['--os_threads_nice_value_merge_mutate=7']);
  assert.deepEqual(ingestNiceArgs(0), []);
});

test('engine threads run at the ingest nice value while events are written, and a search after it runs at -1', async () => {
  const watch = watchThreads();
  await store.write(events('nice', 8000));
  const duringWrite = await watch.stop();
  const seen = JSON.stringify([...duringWrite].map(([k, v]) => [k, [...v]]));
  if (MAY_NICE === 0n) {
    // Without CAP_SYS_NICE the engine leaves every thread as it is, and the write still commits.
    assert.deepEqual(nicesOf(duringWrite), new Set([0]), `threads changed priority without CAP_SYS_NICE: ${seen}`);
    return;
  }
  assert.ok(nicesOf(duringWrite).has(NICE), `no thread ran at nice ${NICE} during the write: ${seen}`);

  const search = watchThreads();
  for (let i = 0; i < 20; i++) {
    const rows = await store.search('analyst', (scope) =>
      scope.query<{ n: string }>(
        "SELECT toString(count()) AS n FROM vigil.events FINAL WHERE startsWith(id, 'nice-')",
        {},
      ),
    );
    assert.deepEqual(rows, [{ n: '8000' }]);
  }
  const duringSearch = await search.stop();
  // Merges of the write's parts may still run (niced): only the searches' own pipeline threads are checked.
  const pipeline = [...duringSearch].filter(([name]) => name.startsWith('Query')).flatMap(([, n]) => [...n]);
  assert.ok(pipeline.length > 0, 'no search pipeline thread was seen running');
  // -1 while a search runs; a pool thread seen just after it, put back, shows 0; never the ingest's value.
  assert.ok(new Set(pipeline).has(-1), `no search thread ran at -1: ${[...new Set(pipeline)]}`);
  assert.ok(!new Set(pipeline).has(NICE), `a search thread ran at the ingest's nice ${NICE}`);
});

test('writes keep committing while searches run back to back, and the searches see them land', async () => {
  let searching = true;
  const counts: number[] = [];
  const searches = (async () => {
    while (searching) {
      const [row] = await store.search('analyst', (scope) =>
        scope.query<{ n: string }>(
          "SELECT toString(count()) AS n FROM vigil.events FINAL WHERE startsWith(id, 'busy-')",
          {},
        ),
      );
      counts.push(Number(row.n));
    }
  })();
  const writes = 5;
  const started = performance.now();
  try {
    for (let i = 0; i < writes; i++) await store.write(events(`busy-${i}`, 1500));
  } finally {
    searching = false;
    await searches;
  }
  const ms = performance.now() - started;
  // Generous: the machine is shared; a starved ingest would not end at all while the searches run.
  assert.ok(ms < 120_000, `5 writes took ${Math.round(ms)} ms beside the searches`);
  const seen = new Set(counts);
  assert.ok(counts.length >= writes, `only ${counts.length} searches ran during the writes`);
  assert.ok(seen.size >= 3, `the searches saw only the counts ${[...seen]} while 5 writes committed`);
  const [last] = await store.search('analyst', (scope) =>
    scope.query<{ n: string }>(
      "SELECT toString(count()) AS n FROM vigil.events FINAL WHERE startsWith(id, 'busy-')",
      {},
    ),
  );
  assert.equal(last.n, String(writes * 1500));
});
