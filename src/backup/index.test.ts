import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createLogger } from '../lib/logger.ts';
import type { EventStore } from '../store/index.ts';
import { backupConfigSchema } from './config.ts';
import { createBackups } from './index.ts';
import { newBackupId } from './manifest.ts';

/** A backup folder with just a manifest cut at `cutAt` (what the health check and the metric read). */
function plant(dir: string, cutAt: number): number {
  const id = newBackupId(cutAt);
  mkdirSync(join(dir, id), { recursive: true });
  writeFileSync(
    join(dir, id, 'manifest.json'),
    JSON.stringify({ id, base: null, chain: [id], files: [], cut_at: new Date(cutAt).toISOString() }),
  );
  return cutAt;
}

test('health warns, and stays ok, when the last good backup is older than twice the schedule', async () => {
  const cases: { name: string; ageMs?: number; schedule: string; warns: boolean }[] = [
    { name: 'recent backup', ageMs: 60_000, schedule: '1h', warns: false },
    { name: 'just under twice the period', ageMs: 119 * 60_000, schedule: '1h', warns: false },
    { name: 'older than twice the period', ageMs: 121 * 60_000, schedule: '1h', warns: true },
    { name: 'cron: daily, three days old', ageMs: 3 * 86_400_000, schedule: '0 3 * * *', warns: true },
    { name: 'no schedule, old backup', ageMs: 30 * 86_400_000, schedule: '', warns: false },
    { name: 'none yet, just started', schedule: '1h', warns: false },
  ];
  for (const c of cases) {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-backup-health-'));
    try {
      const cutAt = c.ageMs === undefined ? 0 : plant(dir, Date.now() - c.ageMs);
      const metrics = new Registry();
      const backups = createBackups(backupConfigSchema.parse({ dir, schedule: c.schedule }), {
        dataDir: dir,
        nodeId: 'n1',
        store: {} as EventStore,
        vigilConfig: {},
        metrics,
        logger: createLogger('silent'),
      });
      await backups.start();
      const h = backups.health();
      await backups.stop(Date.now());
      assert.equal(h.ok, true, c.name);
      assert.equal(
        /warning: the last good backup .* is older than twice the schedule/.test(h.detail ?? ''),
        c.warns,
        `${c.name}: ${h.detail}`,
      );
      const metric = await metrics.getSingleMetric('vigil_backup_last_success_timestamp_seconds')?.get();
      assert.equal(metric?.values[0]?.value, cutAt / 1000, c.name);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('the schedule runs backups by itself; a failure is counted by reason and shown in health', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-backup-schedule-'));
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.parse('2026-12-06T03:00:00Z') });
  let statements = [] as string[];
  // The engine answers the listings, then fails the freeze.
  const store = {
    query: async (sql: string) => {
      if (sql.includes('system.databases')) return [];
      statements.push(sql);
      if (sql.includes('system.disks')) return [{ path: join(dir, 'engine-data/') }];
      if (sql.includes('system.tables')) return [{ name: 'events', engine: 'ReplacingMergeTree', data_paths: ['x'] }];
      return [{ statement: 'CREATE TABLE vigil.events (x UInt8) ENGINE = ReplacingMergeTree ORDER BY x' }];
    },
    exec: async (sql: string) => {
      statements.push(sql);
      throw new Error('disk full');
    },
  } as unknown as EventStore;
  const metrics = new Registry();
  const backups = createBackups(backupConfigSchema.parse({ dir, schedule: '0 * * * *' }), {
    dataDir: dir,
    nodeId: 'n1',
    store,
    vigilConfig: {},
    metrics,
    logger: createLogger('silent'),
  });
  try {
    await backups.start();
    statements = []; // Start's own clean-up reads.
    t.mock.timers.tick(59 * 60_000);
    assert.deepEqual(statements, [], 'nothing before the first run time');
    t.mock.timers.tick(60_000);
    // Timers are mocked; the backup's file work is real: wait for it by turns of the event loop.
    for (let i = 0; i < 100_000 && !backups.health().detail; i++) await new Promise((r) => setImmediate(r));
    assert.match(
      statements.find((s: string) => s.includes('FREEZE')) ?? statements.join('; '),
      /^ALTER TABLE vigil\.`events` FREEZE WITH NAME 'vigil_backup_[0-9T]+Z_[0-9a-f]{4}'$/,
    );
    const failures = await metrics.getSingleMetric('vigil_backup_failures_total')?.get();
    assert.deepEqual(
      failures?.values.map((v) => [v.labels.reason, v.value]),
      [['engine', 1]],
    );
    const h = backups.health();
    assert.equal(h.ok, true);
    assert.match(
      h.detail ?? '',
      /warning: the last backup failed: backup .*: freezing the engine tables failed: disk full/,
    );
    // The failed backup's folder is gone.
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    await backups.stop(Date.now());
    t.mock.timers.reset();
    rmSync(dir, { recursive: true, force: true });
  }
});
