/**
 * `npm run bench -- backup`: backup and restore rates beside the disk's raw copy rate, measured in one run.
 *
 * Builds `--events` events (1,000,000 by default) into an event store opened as Vigil opens it: `--base-events`
 * Mordor events (50,000) written through the store, then copied in the engine with new ids, a day later each
 * copy (about 20 s of engine work per million on a 2-core machine, where writing each event through the store
 * took a minute per 200,000), merged to one part a day. Then times, `--passes` times each (3), the best
 * kept since the machine is shared: a raw copy of the engine's files (cp of the full backup's engine folder,
 * then one flush, as a backup flushes: the disk's limit) and a full backup; then an incremental after
 * `--incremental-pct` percent more events (10, on new days: new data lands in new parts), verify of the
 * chain, and a restore of the incremental (its chain: the full one and itself) into an empty folder. The SQL
 * state is left out (no database): its export is rows of incidents and users, small beside the events.
 */
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createBackup } from '../src/backup/create.ts';
import { flushFolder, listBackups, type Manifest } from '../src/backup/manifest.ts';
import { engineBackupArgs, restoreBackup } from '../src/backup/restore.ts';
import { verifyBackup } from '../src/backup/verify.ts';
import { configSchema } from '../src/config/schema.ts';
import { createLogger } from '../src/lib/logger.ts';
import type { NormalizedEvent } from '../src/lib/event.ts';
import { createNormalizer } from '../src/parse/index.ts';
import { createEventStore, type EventStore } from '../src/store/index.ts';
import { STORED_COLUMNS } from '../src/store/schema.ts';
import { BENCH_DIR, type Benchmark, intOption, progress, round } from './common.ts';
import { mordorLines } from './mordor.ts';

const BATCH = 5000;
/** Days later than the stored events the incremental's new events are (past the Mordor span and its copies). */
const NEW_DAYS = 10_000;

async function load(store: EventStore, lines: Iterable<Buffer>): Promise<number> {
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

/**
 * Copies the first `base` rows (the Mordor events as stored, told apart by an id without `~`) `copies`
 * times in the engine, copy k with ids `<id>~<k>` and times `dayOffset + k` days later, up to `limit` rows.
 */
async function copyInEngine(store: EventStore, firstCopy: number, copies: number, limit: number): Promise<number> {
  const cols = [...STORED_COLUMNS, 'content_hash'];
  const select = cols.map((c) => {
    if (c === 'id') return `concat(id, '~', toString(k)) AS id`;
    if (c === 'ts') return `ts + toIntervalDay(k) AS ts`;
    return c;
  });
  let done = 0;
  for (let k = firstCopy; k < firstCopy + copies && done < limit; k++) {
    const [{ n }] = await store.query<{ n: string }>(
      `SELECT toString(count()) AS n FROM vigil.events WHERE position(id, '~') = 0`,
      {},
    );
    const take = Math.min(Number(n), limit - done);
    await store.exec(
      `INSERT INTO vigil.events (${cols.join(', ')}) SELECT ${select.join(', ')} FROM (SELECT *, ${k} AS k FROM vigil.events WHERE position(id, '~') = 0 ORDER BY ts, id LIMIT ${take})`,
    );
    done += take;
  }
  return done;
}

/** Copies `from` to `to` and flushes the copy (one syncfs, as a backup); returns the ms it took, and removes the copy. */
async function rawCopy(from: string, to: string): Promise<number> {
  const t = performance.now();
  cpSync(from, to, { recursive: true });
  await flushFolder(to);
  const ms = performance.now() - t;
  rmSync(to, { recursive: true, force: true });
  return ms;
}

const mbps = (bytes: number, ms: number) => round(bytes / 2 ** 20 / (ms / 1000), 1);

export const backupBenchmark: Benchmark = {
  name: 'backup',
  description: 'full and incremental backup, verify and restore rates beside the raw copy rate of the same files',
  async run(opts) {
    const events = intOption(opts, 'events', 1_000_000);
    const baseEvents = Math.min(events, intOption(opts, 'base-events', 50_000));
    const pct = intOption(opts, 'incremental-pct', 10);
    const passes = intOption(opts, 'passes', 3);
    const root = join(BENCH_DIR, 'backup');
    rmSync(root, { recursive: true, force: true });
    const dataDir = join(root, 'data');
    const dir = join(root, 'backups');
    mkdirSync(dir, { recursive: true });
    const config = configSchema.parse({ data_dir: dataDir, backup: { dir } });
    const metrics = new Registry();
    const logger = createLogger('warn');
    const store = createEventStore(config.store, {
      dataDir,
      metrics,
      logger,
      engineArgs: engineBackupArgs(dir),
    });
    await store.start();
    try {
      progress(`backup: loading ${baseEvents} Mordor events, then copying them in the engine up to ${events}`);
      const tl = performance.now();
      let loaded = await load(store, mordorLines(baseEvents));
      const copies = Math.ceil(events / loaded) - 1;
      loaded += await copyInEngine(store, 1, copies, events - loaded);
      await store.exec('OPTIMIZE TABLE vigil.events FINAL');
      progress(`backup: ${loaded} events stored in ${round((performance.now() - tl) / 1000)} s`);

      const deps = {
        dir,
        dataDir,
        nodeId: 'bench',
        store,
        config,
        includeSecrets: false,
        maxChain: 6,
        logger,
        metrics,
      };
      // The best of `passes` full backups (each a full one); the last one stays as the incremental's base.
      let full: Manifest | undefined;
      for (let i = 0; i < passes; i++) {
        const m = await createBackup({ ...deps, existing: listBackups(dir) }, { full: true });
        progress(
          `backup: full ${round(m.size_bytes / 2 ** 20)} MB in ${m.duration_ms} ms ${JSON.stringify(m.timings_ms)}`,
        );
        if (!full || m.duration_ms < full.duration_ms) full = m;
      }
      if (!full) throw new Error('no full backup');
      const best = full;
      for (const e of listBackups(dir)) if (e.id !== best.id) rmSync(join(dir, e.id), { recursive: true, force: true });

      // The disk's limit: a plain copy of the same files (the full backup's engine folder, which holds the
      // table's active parts), from and to the same disk, flushed as a backup is.
      const copyBytes = full.files.filter((f) => f.path.startsWith('engine/')).reduce((n, f) => n + f.size, 0);
      let copyMs = Number.POSITIVE_INFINITY;
      for (let i = 0; i < passes; i++) {
        copyMs = Math.min(copyMs, await rawCopy(join(dir, full.id, 'engine'), join(root, 'raw-copy')));
      }
      progress(`backup: raw copy ${round(copyBytes / 2 ** 20)} MB in ${round(copyMs)} ms`);

      // New events on days after every stored one (copies NEW_DAYS days on), as new data arrives: new parts.
      const extra = Math.max(1, Math.round((events * pct) / 100));
      const more = await copyInEngine(store, NEW_DAYS, Math.ceil(extra / baseEvents), extra);
      const inc = await createBackup({ ...deps, existing: listBackups(dir) });
      progress(
        `backup: incremental (${more} new events) ${round(inc.size_bytes / 2 ** 20, 2)} MB in ${inc.duration_ms} ms`,
      );

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
        params: { events, base_events: baseEvents, incremental_pct: pct, passes },
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
