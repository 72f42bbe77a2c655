import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startVigil } from '../harness/vigil.ts';

const BATCH = 500;
const CLIENTS = 4;

test('kill -9 during steady HTTP ingest: every acknowledged event is searchable exactly once after restart', async () => {
  const node = await startVigil();
  const run = `run${Date.now()}`;
  const acked = new Set<number>();
  let next = 0;
  let stop = false;
  let requestErrors = 0;

  const client = async () => {
    while (!stop) {
      const first = next;
      next += BATCH;
      const lines: string[] = [];
      for (let i = first; i < first + BATCH; i++)
        lines.push(JSON.stringify({ message: `crash ${run}`, 'test.run': run, 'test.seq': i }));
      try {
        const res = await fetch(`${node.url}/api/v1/ingest`, {
          method: 'POST',
          headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/x-ndjson' },
          body: lines.join('\n'),
        });
        if (res.status === 200) {
          const body = (await res.json()) as { accepted: number };
          assert.equal(body.accepted, BATCH);
          for (let i = first; i < first + BATCH; i++) acked.add(i);
        } else {
          requestErrors++;
        }
      } catch {
        requestErrors++;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  const clients = Array.from({ length: CLIENTS }, client);
  while (acked.size < 50 * BATCH) await new Promise((r) => setTimeout(r, 50));
  const killedAt = Date.now();
  await node.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  stop = true;
  await Promise.all(clients);
  const ackedBeforeKill = acked.size;

  await node.restart();
  const restartMs = Date.now() - killedAt;
  // A table answer has at most 10,000 rows: read the counts in ranges of sequence numbers.
  const counts = new Map<number, number>();
  for (let low = 0; low < next; low += 10000) {
    const q = `test.run:${run} AND test.seq:[${low} TO ${low + 9999}] | stats count() by test.seq`;
    const res = await node.get(`/api/v1/search?q=${encodeURIComponent(q)}&from=now-1h&limit=10000`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    for (const [seq, count] of res.body.rows as [string, number][]) counts.set(Number(seq), Number(count));
  }
  const lost = [...acked].filter((s) => !counts.has(s));
  const duplicated = [...counts].filter(([, c]) => c > 1);
  console.log(
    JSON.stringify({
      acknowledged: ackedBeforeKill,
      stored: counts.size,
      lost: lost.length,
      duplicated: duplicated.length,
      requestErrors,
      restartMs,
    }),
  );
  assert.equal(lost.length, 0, `lost acknowledged events: ${lost.slice(0, 10)}`);
  assert.equal(duplicated.length, 0, `duplicated events: ${JSON.stringify(duplicated.slice(0, 10))}`);
  await node.close();
});
