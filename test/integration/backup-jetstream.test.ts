import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Manifest } from '../../src/backup/index.ts';
import { type NatsCluster, startNatsCluster } from '../harness/nats.ts';
import { startVigil, type VigilNode, vigilCli } from '../harness/vigil.ts';

async function ids(node: VigilNode): Promise<string[]> {
  const res = await node.get('/api/v1/search?q=*&from=now-1d&to=now%2B1h&limit=10000');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return (res.body.events as Record<string, string>[]).map((e) => e['event.id']);
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

let nats: NatsCluster;
const root = mkdtempSync(join(tmpdir(), 'vigil-backup-js-'));
before(async () => {
  nats = await startNatsCluster();
});
after(async () => {
  await nats?.stop();
  rmSync(root, { recursive: true, force: true });
});

test('a replica restored from a backup catches up from the stream position in the backup', {
  timeout: 600_000,
}, async () => {
  const dir = join(root, 'backups');
  const env = {
    VIGIL_BUS__KIND: 'jetstream',
    VIGIL_BUS__JETSTREAM__SERVERS: JSON.stringify(nats.urls),
    VIGIL_CLUSTER__NODE_ID: 'replica-1',
    VIGIL_BACKUP__DIR: dir,
  };
  const node = await startVigil({ env });
  const batch = (tag: string) =>
    Array.from({ length: 100 }, (_, i) => JSON.stringify({ event: { id: `${tag}-${i}` }, message: tag })).join('\n');
  let manifest: Manifest;
  try {
    assert.equal((await node.post('/api/v1/ingest', batch('before'))).status, 200);
    await until('the replica to hold the first events', async () => (await ids(node)).length === 100);
    const created = await vigilCli(['backup', 'create'], { VIGIL_URL: node.url, VIGIL_TOKEN: node.token });
    assert.equal(created.code, 0, created.err);
    manifest = JSON.parse(readFileSync(join(dir, created.out.trim(), 'manifest.json'), 'utf8'));
    assert.equal(manifest.engine.events.count, 100);
    assert.equal(manifest.engine.positions.length, 1, JSON.stringify(manifest.engine.positions));
    assert.ok(manifest.engine.positions[0].seq > 0, 'the applied stream position is in the backup');
    // Acknowledged after the backup: only the stream has these for the restored replica.
    assert.equal((await node.post('/api/v1/ingest', batch('after'))).status, 200);
    await until('the replica to hold every event', async () => (await ids(node)).length === 200);
  } finally {
    await node.close();
  }
  const target = join(root, 'restored');
  const restored = await vigilCli(['backup', 'restore', manifest.id, '--data-dir', target], { VIGIL_BACKUP__DIR: dir });
  assert.equal(restored.code, 0, restored.err);
  const copy = await startVigil({ dataDir: target, env: { ...env, VIGIL_BACKUP__DIR: join(root, 'copy-backups') } });
  try {
    await until('the restored replica to catch up', async () => (await ids(copy)).length >= 200);
    const seen = await ids(copy);
    assert.equal(seen.length, 200);
    assert.equal(new Set(seen).size, 200, 'each event once');
    for (const tag of ['before', 'after']) {
      for (let i = 0; i < 100; i++) assert.ok(seen.includes(`${tag}-${i}`), `${tag}-${i}`);
    }
  } finally {
    await copy.close();
  }
});
