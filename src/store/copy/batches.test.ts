import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openTestStore } from '../../../test/harness/event-store.ts';
import { batchesDdl, coverage, recordBatch, recordBatches, sequenceRuns } from './batches.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'vigil-batches-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

test('a range of stream sequences is covered only when the batches hold all of it, without a hole', async () => {
  const store = openTestStore(dataDir);
  await store.start();
  try {
    await store.exec(batchesDdl(30));
    const t = Date.parse('2026-12-06T08:00:00Z');
    const batches: [number, number, number, number, number][] = [
      // first, last, events, min ingested, max ingested
      [1, 3, 3, t, t + 10],
      [4, 6, 2, t + 20, t + 30],
      [4, 5, 2, t + 20, t + 25], // a redelivery cut differently
      [7, 7, 0, 0, 0], // a batch without events
      [9, 12, 4, t + 50, t + 90],
    ];
    for (const [firstSeq, lastSeq, events, minIngested, maxIngested] of batches) {
      await recordBatch(store, { stream: 'S@1', firstSeq, lastSeq, events, minIngested, maxIngested });
    }
    await recordBatch(store, { stream: 'S@2', firstSeq: 8, lastSeq: 8, events: 1, minIngested: t, maxIngested: t });
    const cases: [number, number, boolean, number | null, number | null][] = [
      [1, 6, true, t, t + 30],
      [2, 5, true, t, t + 30],
      [5, 7, true, t + 20, t + 30],
      [7, 7, true, null, null],
      [1, 9, false, t, t + 90], // 8 is in no batch of this stream
      [9, 13, false, t + 50, t + 90], // past the end
      [0, 3, false, t, t + 10], // before the start
      [20, 30, false, null, null],
    ];
    for (const [from, to, covered, fromIngested, toIngested] of cases) {
      assert.deepEqual(await coverage(store, 'S@1', from, to), { covered, fromIngested, toIngested }, `${from}-${to}`);
    }
  } finally {
    await store.stop(Date.now() + 5000);
  }
});

test('a batch holds the runs of consecutive sequences among those delivered, whatever their order', () => {
  const cases: [number[], [number, number][]][] = [
    [[1, 2, 3], [[1, 3]]],
    [
      [12, 7],
      [
        [7, 7],
        [12, 12],
      ],
    ],
    [
      [5, 8, 7],
      [
        [5, 5],
        [7, 8],
      ],
    ],
    [
      [13, 14, 9, 9],
      [
        [9, 9],
        [13, 14],
      ],
    ],
    [[4], [[4, 4]]],
    [[], []],
  ];
  for (const [seqs, runs] of cases) assert.deepEqual(sequenceRuns(seqs), runs, JSON.stringify(seqs));
});

test('a written range that runs downwards is refused, never recorded', async () => {
  const store = openTestStore(dataDir);
  await store.start();
  try {
    await store.exec(batchesDdl(30));
    const b = { stream: 'S@down', events: 1, minIngested: 1, maxIngested: 2 };
    await assert.rejects(recordBatches(store, [{ ...b, firstSeq: 12, lastSeq: 7 }]), RangeError);
    const [row] = await store.query<{ n: string }>(
      "SELECT toString(count()) AS n FROM vigil.stream_batches WHERE stream = 'S@down'",
      {},
    );
    assert.equal(row.n, '0');
  } finally {
    await store.stop(Date.now() + 5000);
  }
});
