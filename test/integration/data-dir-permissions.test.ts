/**
 * On a shared host, nobody but Vigil's user reads its data (issue 16, defect 4): the data directory was
 * 0755, PGlite's files under pg/ 0666 and the event store's under events/ 0644. `vigil start` now runs with
 * a umask of 077 and tightens an existing data directory to 0700.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

/** Every file and folder under `dir` whose mode lets group or others do anything. */
function openToOthers(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const p = join(e.parentPath, e.name);
    if (e.isSymbolicLink()) continue;
    const mode = statSync(p).mode & 0o777;
    if (mode & 0o077) out.push(`${p} 0${mode.toString(8)}`);
  }
  return out;
}

describe('the data directory is private to Vigil', () => {
  let node: VigilNode;
  let dataDir: string;
  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'vigil-perm-'));
    // As `mkdir data` leaves it under the usual umask of 022.
    chmodSync(dataDir, 0o755);
    node = await startVigil({ dataDir, env: { VIGIL_LOG_LEVEL: 'warn' } });
  });
  after(async () => {
    await node?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('an existing 0755 data directory is 0700 after start, with a warning', () => {
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    assert.match(node.output(), /The data directory was open to other users of this host/);
  });

  test('nothing the node wrote (pg/, events/, rules, keys) is open to group or others', async () => {
    const ingest = await node.post('/api/v1/ingest', JSON.stringify({ message: 'permissions check' }));
    assert.equal(ingest.status, 200, JSON.stringify(ingest.body));
    let total = 0;
    for (let i = 0; i < 100 && total < 1; i++) {
      total = (await node.get('/api/v1/search?q=permissions&from=now-1h')).body.total ?? 0;
      if (total < 1) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(total, 1);
    const pgFiles = readdirSync(join(dataDir, 'pg'), { recursive: true });
    assert.ok(pgFiles.length > 0, 'PGlite wrote its files');
    assert.ok(readdirSync(join(dataDir, 'events'), { recursive: true }).length > 0, 'the store wrote its files');
    assert.deepEqual(openToOthers(dataDir), []);
  });
});
