import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startVigil } from '../harness/vigil.ts';

// Found by the API fuzz pass (issue 16): /health/ready answered 200 while the embedded PGlite had not been
// opened, so the first request that needed it (a login, an incident list) waited for the open: 27 s under load.
test('a node is ready only once its database answers: the first database request after ready is fast', async () => {
  // A data folder of the test's own: the node creates its PGlite cluster (seconds), as a new node does.
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-ready-'));
  const t0 = performance.now();
  const node = await startVigil({ dataDir });
  const readyMs = performance.now() - t0;
  try {
    const t1 = performance.now();
    const [users, incidents] = await Promise.all([node.get('/api/v1/users'), node.get('/api/v1/incidents')]);
    const firstMs = performance.now() - t1;
    assert.equal(users.status, 200, JSON.stringify(users.body));
    assert.equal(incidents.status, 200, JSON.stringify(incidents.body));
    // A query on an open PGlite takes milliseconds; opening it takes seconds (4.7 s on this machine).
    assert.ok(
      firstMs < 1500,
      `the first database requests took ${firstMs.toFixed(0)} ms (ready after ${readyMs.toFixed(0)} ms)`,
    );
    const ready = await node.get('/health/ready');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body.checks.postgres, { ok: true });
  } finally {
    await node.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
