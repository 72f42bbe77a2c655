import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Session } from 'chdb';
import { eventsTableDdl, SCHEMA_VERSION } from '../store/schema.ts';
import { checksumFiles, MANIFEST_FILE, type Manifest, writeFileDurably } from './manifest.ts';
import { engineBackupArgs, restoreBackup } from './restore.ts';

const root = mkdtempSync(join(tmpdir(), 'vigil-backup-format1-'));
after(() => rmSync(root, { recursive: true, force: true }));

test("a backup of manifest format 1 (the engine's own BACKUP) still restores, every row of it", async () => {
  const dir = join(root, 'backups');
  const id = '20261201T030000000Z-0f01';
  mkdirSync(join(dir, id), { recursive: true });
  // The node that took it: the engine's BACKUP DATABASE into <id>/engine, as Vigil did before format 2.
  const session = new Session(join(root, 'data', 'events'), { connectionArgs: engineBackupArgs(dir) });
  try {
    await session.queryAsync('CREATE DATABASE vigil');
    await session.queryAsync(eventsTableDdl(3650));
    await session.queryAsync(
      `INSERT INTO vigil.events (ts, ingested, id, tenant, raw) SELECT now64(3), now64(3), toString(number), 'default', 'x' FROM numbers(500)`,
    );
    await session.queryAsync(`BACKUP DATABASE vigil TO File('${id}/engine')`);
  } finally {
    session.close();
  }
  const files = await checksumFiles(join(dir, id));
  const manifest: Manifest = {
    format: 1,
    id,
    kind: 'full',
    base: null,
    chain: [id],
    node: 'old',
    vigil_version: '0.1.0',
    cut_at: '2026-12-01T03:00:00.000Z',
    finished_at: '2026-12-01T03:00:01.000Z',
    duration_ms: 1000,
    schema: { events: SCHEMA_VERSION, postgres: [] },
    engine: {
      tables: { events: 500 },
      events: { count: 500, first_ts: null, last_ts: null, id_sum: '0' },
      positions: [],
    },
    postgres: { kind: 'none', tables: {} },
    files,
    size_bytes: files.reduce((n, f) => n + f.size, 0),
  };
  await writeFileDurably(join(dir, id, MANIFEST_FILE), JSON.stringify(manifest));
  const restored = await restoreBackup(dir, id, join(root, 'restored'), { migrations: [] });
  assert.deepEqual(restored.tables, { events: 500 });
});
