/**
 * `npm run bench -- backup`: backup and restore rates beside the disk's raw copy rate, measured in one run.
 *
 * Loads `--events` Mordor events (200,000 by default: about a minute of loading on a 2-core machine; the
 * issue's 10-million-event search set takes hours to build here) into an event store opened as Vigil opens
 * it, then times: a raw copy of the engine's files (cp of the table folder: the disk's limit), a full
 * backup, an incremental after `--incremental-pct` percent more events (10), verify, and a restore of the
 * incremental (its chain: the full one and itself) into an empty folder. The SQL state is left out (no
 * database): its export is rows of incidents and users, small beside the events.
 */
import { closeSync, cpSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createBackup } from '../src/backup/create.ts';
import { listBackups } from '../src/backup/manifest.ts';
import { engineBackupArgs, restoreBackup } from '../src/backup/restore.ts';
import { verifyBackup } from '../src/backup/verify.ts';
import { configSchema } from '../src/config/schema.ts';
import { createLogger } from '../src/lib/logger.ts';
import type { NormalizedEvent } from '../src/lib/event.ts';
import { createNormalizer } from '../src/parse/index.ts';
import { createEventStore, type EventStore } from '../src/store/index.ts';
import { BENCH_DIR, type Benchmark, intOption, progress, round } from './common.ts';
import { mordorLines } from './mordor.ts';

const BATCH = 5000;

async function load(store: EventStore, lines: Buffer[]): Promise<number> {
  const normalizer = createNormalizer();
  let batch: NormalizedEvent[] = [];
  let n = 0;
  for (const line of lines) {
    const raw = line.toString('utf8');
    batch.push(
      normalizer.fromJson(JSON.parse(raw), raw, { source: 'http', receivedAt: Date.now(), tenant: 'default' }),
    );
    if (batch.length >= BATCH) {
      await store.write(batch);
      n += batch.length;
      batch = [];
    }
  }
  await store.write(batch);
  return n + batch.length;
}

/** Copies `from` to `to` and flushes every copied file; returns the ms it took, and removes the copy. */
function rawCopy(from: string, to: string): number {
  const t = performance.now();
  cpSync(from, to, { recursive: true });
  const flush = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) flush(p);
      else {
        const fd = openSync(p, 'r');
        fsyncSync(fd);
        closeSync(fd);
      }
    }
  };
  flush(to);
  const ms = performance.now() - t;
  rmSync(to, { recursive: true, force: true });
  return ms;
}

const mbps = (bytes: number, ms: number) => round(bytes / 2 ** 20 / (ms / 1000), 1);

export const backupBenchmark: Benchmark = {
  name: 'backup',
  description: 'full and incremental backup, verify and restore rates beside the raw copy rate of the same files',
  async run(opts) {
    const events = intOption(opts, 'events', 200_000);
    const pct = intOption(opts, 'incremental-pct', 10);
    const root = join(BENCH_DIR, 'backup');
    rmSync(root, { recursive: true, force: true });
    const dataDir = join(root, 'data');
    const dir = join(root, 'backups');
    mkdirSync(dir, { recursive: true });
    const config = configSchema.parse({ data_dir: dataDir, backup: { dir } });
    const store = createEventStore(config.store, {
      dataDir,
      metrics: new Registry(),
      logger: createLogger('warn'),
      engineArgs: engineBackupArgs(dir),
    });
    await store.start();
    try {
      const extra = Math.max(1, Math.round((events * pct) / 100));
      const lines = [...mordorLines(events + extra)];
      progress(`backup: loading ${events} events`);
      const loaded = await load(store, lines.slice(0, events));
      await store.exec('OPTIMIZE TABLE vigil.events FINAL');

      const deps = {
        dir,
        dataDir,
        nodeId: 'bench',
        store,
        config,
        includeSecrets: false,
        maxChain: 6,
      };
      const full = await createBackup({ ...deps, existing: listBackups(dir) }, { full: true });
      progress(`backup: full ${full.size_bytes} bytes in ${full.duration_ms} ms`);

      // The disk's limit: a plain copy of the same files (the full backup's engine folder, which holds the
      // table's active parts), from and to the same disks, each file flushed as a backup's are. Twice, the
      // faster kept: the machine is shared.
      const copyBytes = full.files.filter((f) => f.path.startsWith('engine/')).reduce((n, f) => n + f.size, 0);
      const copyMs = Math.min(
        rawCopy(join(dir, full.id, 'engine'), join(root, 'raw-copy')),
        rawCopy(join(dir, full.id, 'engine'), join(root, 'raw-copy')),
      );
      progress(`backup: raw copy ${round(copyBytes / 2 ** 20)} MB in ${round(copyMs)} ms`);

      const more = await load(store, lines.slice(events));
      const inc = await createBackup({ ...deps, existing: listBackups(dir) });
      progress(`backup: incremental (${more} new events) ${inc.size_bytes} bytes in ${inc.duration_ms} ms`);

      const tv = performance.now();
      const verified = await verifyBackup(dir, inc.id);
      const verifyMs = performance.now() - tv;

      // One engine data folder per process: the store closes before the restore opens its own.
      await store.stop(Date.now() + 10_000);
      const target = join(root, 'restored');
      const restored = await restoreBackup(dir, inc.id, target, { migrations: [] });
      const restoredBytes = full.size_bytes + inc.size_bytes;
      progress(`backup: restore ${restored.events} events in ${restored.duration_ms} ms`);

      const results = {
        events_loaded: loaded,
        raw_copy: { mb: round(copyBytes / 2 ** 20, 1), ms: round(copyMs), mb_per_s: mbps(copyBytes, copyMs) },
        full: {
          events: full.engine.events.count,
          mb: round(full.size_bytes / 2 ** 20, 1),
          ms: full.duration_ms,
          mb_per_s: mbps(full.size_bytes, full.duration_ms),
          events_per_s: round(full.engine.events.count / (full.duration_ms / 1000)),
          timings_ms: full.timings_ms,
        },
        incremental: {
          new_events: more,
          mb: round(inc.size_bytes / 2 ** 20, 2),
          ms: inc.duration_ms,
          timings_ms: inc.timings_ms,
          size_vs_full: round(inc.size_bytes / full.size_bytes, 3),
          new_events_vs_full: round(more / full.engine.events.count, 3),
        },
        verify_chain: {
          files: verified.files,
          mb: round(verified.bytes / 2 ** 20, 1),
          ms: round(verifyMs),
          mb_per_s: mbps(verified.bytes, verifyMs),
        },
        restore: {
          events: restored.events,
          ms: restored.duration_ms,
          events_per_s: round(restored.events / (restored.duration_ms / 1000)),
          mb_per_s: mbps(restoredBytes, restored.duration_ms),
        },
      };
      const fullVsCopy = results.full.mb_per_s / results.raw_copy.mb_per_s;
      progress(
        `backup: full backup at ${round(fullVsCopy, 2)} of the raw copy rate (target >= 0.5: ${fullVsCopy >= 0.5 ? 'met' : 'NOT met'})`,
      );
      return {
        params: { events, incremental_pct: pct },
        results: { ...results, full_rate_vs_raw_copy: round(fullVsCopy, 2) },
        targets: {
          full_rate_vs_raw_copy: '>= 0.5',
          incremental_size: 'in proportion to the new events (size_vs_full about new_events_vs_full)',
        },
        met: {
          full_rate_vs_raw_copy: fullVsCopy >= 0.5,
          incremental_size: results.incremental.size_vs_full <= 2 * results.incremental.new_events_vs_full + 0.02,
        },
      };
    } finally {
      await store.stop(Date.now() + 10_000);
    }
  },
};
