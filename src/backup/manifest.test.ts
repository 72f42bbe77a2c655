import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { MANIFEST_FILE, type Manifest, readManifest } from './manifest.ts';
import { verifyBackup } from './verify.ts';

const ID = '20261206T033300123Z-1a2b';

/** Writes a manifest for backup `id` in a new backup.dir, with `change` applied to a valid one. */
function backupDir(change: (m: Manifest) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-manifest-'));
  mkdirSync(join(dir, ID));
  writeFileSync(join(dir, ID, 'a.txt'), 'a');
  const m = {
    format: 1,
    id: ID,
    kind: 'full',
    base: null,
    chain: [ID],
    node: 'n1',
    vigil_version: '0.0.0',
    cut_at: '2026-12-06T03:33:00.123Z',
    finished_at: '2026-12-06T03:33:01.000Z',
    duration_ms: 877,
    schema: { events: 1, postgres: [] },
    engine: { tables: {}, events: { count: 0, first_ts: null, last_ts: null, id_sum: '0' }, positions: [] },
    postgres: { kind: 'pglite', tables: { incidents: 0 } },
    files: [{ path: 'a.txt', size: 1, sha256: 'ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb' }],
    size_bytes: 1,
  } as Manifest;
  change(m);
  writeFileSync(join(dir, ID, MANIFEST_FILE), JSON.stringify(m));
  return dir;
}

test('a valid manifest is read and verifies', async () => {
  const dir = backupDir(() => {});
  try {
    assert.equal(readManifest(dir, ID).id, ID);
    const r = await verifyBackup(dir, ID);
    assert.deepEqual(r.problems, []);
    assert.equal(r.files, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a manifest naming paths outside its backup, or a table that is not a name, is refused as backup_corrupt', async () => {
  const cases: [string, (m: Manifest) => void][] = [
    ['file ../../etc/passwd', (m) => m.files.push({ path: '../../etc/passwd', size: 1, sha256: 'x' })],
    ['file a/../../b', (m) => m.files.push({ path: 'a/../../b', size: 1, sha256: 'x' })],
    ['absolute file', (m) => m.files.push({ path: '/etc/passwd', size: 1, sha256: 'x' })],
    ['base as a path', (m) => Object.assign(m, { kind: 'incremental', base: '../../etc' })],
    ['chain entry as a path', (m) => m.chain.unshift('../other')],
    ['id that is not an id', (m) => Object.assign(m, { id: '../x' })],
    ['table with SQL', (m) => Object.assign(m.postgres.tables, { 'x"; DROP TABLE users; --': 1 })],
    ['table as a path', (m) => Object.assign(m.postgres.tables, { '../../etc/passwd': 1 })],
  ];
  for (const [what, change] of cases) {
    const dir = backupDir(change);
    try {
      assert.throws(() => readManifest(dir, ID), { code: 'backup_corrupt' }, what);
      await assert.rejects(verifyBackup(dir, ID), { code: 'backup_corrupt' }, what);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});
