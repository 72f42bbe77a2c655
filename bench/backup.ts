/**
 * `npm run bench -- backup`: backup and restore rates beside the disk's raw copy rate, measured in one run.
 *
 * The events, one of:
 * - `--rows N`: the search benchmarks' data set of N events (bench/search-data.ts: 10,000,000 for issue 13's
 *   figure; built and cached under `.bench/search-data/` when missing, or read from `--search-data DIR`, a
 *   complete build of N rows, which is then only read). The build is copied into this run's folder, never
 *   opened in place: the engine writes to the folder it opens (merges, its status file).
 * - otherwise `--events` events (1,000,000 by default) made here: `--base-events` Mordor events (50,000)
 *   written through the store, then copied in the engine with new ids, a day later each copy (about 20 s of
 *   engine work per million on a 2-core machine, where writing each event through the store took a minute
 *   per 200,000), merged to one part a day.
 * The store is opened as Vigil opens it. Then, `--passes` times (3), alternated so that both see the same
 * load: a full backup, then a raw copy of the same files (cp of that backup's engine folder, then one flush,
 * as a backup flushes: the disk's limit); the best of each is kept since the machine is shared. Then an
 * incremental after `--incremental-pct` percent more events (10, on new days: new data lands in new parts),
 * verify of the chain, and a restore of the incremental (its chain: the full one and itself) into an empty
 * folder. The SQL state is left out (no database): its export is rows of incidents and users, small beside
 * the events.
 */
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
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
import { type BuildState, buildSearchData, cachedBuild, searchDataDir } from './search-data.ts';

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

/**
 * New events for the incremental on a data set not made here: a sample of `pct` percent of the stored rows
 * (by a hash of the id: no sort of the whole table), with new ids and NEW_DAYS days later.
 */
async function copySample(store: EventStore, pct: number): Promise<number> {
  const cols = [...STORED_COLUMNS, 'content_hash'];
  const select = cols.map((c) => {
    if (c === 'id') return `concat(id, '~new') AS id`;
    if (c === 'ts') return `ts + toIntervalDay(${NEW_DAYS}) AS ts`;
    return c;
  });
  const where = `cityHash64(id) % 1000 < ${Math.round(pct * 10)}`;
  await store.exec(
    `INSERT INTO vigil.events (${cols.join(', ')}) SELECT ${select.join(', ')} FROM vigil.events WHERE ${where}`,
  );
  const [{ n }] = await store.query<{ n: string }>(
    `SELECT toString(count()) AS n FROM vigil.events WHERE ts >= now64(3) + toIntervalDay(${NEW_DAYS - 100})`,
    {},
  );
  return Number(n);
}

/** The search data set of `rows` events (cached or built; only read when `given` names a build), copied to `to`. */
async function searchDataSet(
  rows: number,
  baseEvents: number | undefined,
  given: string | undefined,
  to: string,
): Promise<BuildState> {
  let from = given;
  let state: BuildState;
  if (given) {
    const cached = cachedBuild(given, rows);
    if (!cached.state) throw new Error(`--search-data ${given}: ${cached.why}`);
    state = cached.state;
  } else {
    from = searchDataDir(rows, baseEvents);
    state = await buildSearchData({ dir: from, target: rows, events: baseEvents, rebuild: false });
  }
  const t = performance.now();
  cpSync(join(from as string, 'events'), join(to, 'events'), { recursive: true });
  progress(
    `backup: data set of ${state.rows} events copied from ${from} in ${round((performance.now() - t) / 1000, 1)} s`,
  );
  return state;
}

/** Waits until the engine runs no merge (or `maxMs` passed): the copy of the data set starts them all. */
async function settleMerges(store: EventStore, maxMs: number): Promise<{ waited_s: number; merges_left: number }> {
  const t = performance.now();
  for (;;) {
    const [{ n }] = await store.query<{ n: string }>(
      `SELECT toString(count()) AS n FROM system.merges WHERE database = 'vigil'`,
      {},
    );
    if (Number(n) === 0 || performance.now() - t > maxMs) {
      return { waited_s: round((performance.now() - t) / 1000, 1), merges_left: Number(n) };
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Copies `from` to `to` and flushes the copy (one syncfs, as a backup); returns the ms it took, and removes the copy. */
async function rawCopy(from: string, to: string): Promise<{ ms: number; cpu_ms: number }> {
  const cpu = process.cpuUsage();
  const t = performance.now();
  cpSync(from, to, { recursive: true });
  await flushFolder(to);
  const ms = performance.now() - t;
  const cpuMs = cpuMsSince(cpu);
  rmSync(to, { recursive: true, force: true });
  return { ms, cpu_ms: cpuMs };
}

/** CPU ms of this process (its threads: the engine's, the hashing workers') since `from`. */
function cpuMsSince(from: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(from);
  return round((used.user + used.system) / 1000);
}

/** CPU ms of each thread of this process (by id, with its name), from /proc (Linux; empty elsewhere). */
function threadCpu(): Map<string, { name: string; ms: number }> {
  const out = new Map<string, { name: string; ms: number }>();
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended between the listing and the read
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime (fields 14 and 15 of stat(5)), in clock ticks of 10 ms.
    out.set(tid, {
      name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
      ms: (Number(fields[11]) + Number(fields[12])) * 10,
    });
  }
  return out;
}

/**
 * CPU ms since `before`, split between the engine's threads (named by the engine) and Node's (`node`: the
 * main thread, libuv's pool, the backup's copy threads), which tells the count from the copy.
 */
function cpuByThreads(before: Map<string, { name: string; ms: number }>): { node: number; engine: number } {
  const split = { node: 0, engine: 0 };
  for (const [tid, t] of threadCpu()) split[t.name === 'node' ? 'node' : 'engine'] += t.ms - (before.get(tid)?.ms ?? 0);
  return split;
}

const mbps = (bytes: number, ms: number) => round(bytes / 2 ** 20 / (ms / 1000), 1);

export const backupBenchmark: Benchmark = {
  name: 'backup',
  description: 'full and incremental backup, verify and restore rates beside the raw copy rate of the same files',
  async run(opts) {
    const rows = opts.rows === undefined ? undefined : intOption(opts, 'rows', 10_000_000);
    const given = typeof opts['search-data'] === 'string' ? opts['search-data'] : undefined;
    if (given && rows === undefined) throw new Error('--search-data needs --rows (the rows of that build)');
    const events = intOption(opts, 'events', 1_000_000);
    const baseEvents =
      rows === undefined
        ? Math.min(events, intOption(opts, 'base-events', 50_000))
        : intOption(opts, 'base-events', 50_000);
    const pct = intOption(opts, 'incremental-pct', 10);
    const passes = intOption(opts, 'passes', 3);
    const root = join(BENCH_DIR, 'backup');
    rmSync(root, { recursive: true, force: true });
    const dataDir = join(root, 'data');
    const dir = join(root, 'backups');
    mkdirSync(dir, { recursive: true });
    // Rows mode: the data set's Mordor base is every event unless --base-events says (a smaller, quicker build).
    const setBase = opts['base-events'] === undefined ? undefined : baseEvents;
    const dataSet = rows === undefined ? undefined : await searchDataSet(rows, setBase, given, dataDir);
    // A count of 10M events FINAL takes longer than a search may on a loaded machine.
    const config = configSchema.parse({ data_dir: dataDir, backup: { dir }, store: { query_timeout_ms: 3_600_000 } });
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
      let loaded: number;
      let settled: { waited_s: number; merges_left: number } | undefined;
      if (dataSet) {
        loaded = dataSet.rows;
        settled = await settleMerges(store, intOption(opts, 'settle-s', 300, 0) * 1000);
        progress(`backup: merges settled for ${settled.waited_s} s, ${settled.merges_left} still running`);
      } else {
        progress(`backup: loading ${baseEvents} Mordor events, then copying them in the engine up to ${events}`);
        const tl = performance.now();
        loaded = await load(store, mordorLines(baseEvents));
        const copies = Math.ceil(events / loaded) - 1;
        loaded += await copyInEngine(store, 1, copies, events - loaded);
        await store.exec('OPTIMIZE TABLE vigil.events FINAL');
        progress(`backup: ${loaded} events stored in ${round((performance.now() - tl) / 1000)} s`);
      }
      const [parts] = await store.query<{ parts: string; mb: string }>(
        `SELECT toString(count()) AS parts, toString(round(sum(bytes_on_disk) / 1048576)) AS mb FROM system.parts
          WHERE database = 'vigil' AND table = 'events' AND active`,
        {},
      );

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
      // `passes` rounds of a full backup, then a raw copy of the same files (that backup's engine folder,
      // which holds the tables' active parts at its cut), from and to the same disk, flushed as a backup is:
      // the disk's limit. Alternated, so that both meet the same load; the best of each is kept.
      // CPU time of the process beside wall time: on a shared machine it carries over where wall time does not
      // (it counts the engine's threads and the hashing workers, and the engine's background merges if any).
      let full: Manifest | undefined;
      let fullCpuMs = Number.POSITIVE_INFINITY;
      let copyMs = Number.POSITIVE_INFINITY;
      let copyCpuMs = Number.POSITIVE_INFINITY;
      let copyBytes = 0;
      const rounds: {
        full_ms: number;
        full_cpu_ms: number;
        full_cpu_ms_by_threads: { node: number; engine: number };
        copy_ms: number;
        copy_cpu_ms: number;
        load_1m: number;
      }[] = [];
      for (let i = 0; i < passes; i++) {
        const cpu = process.cpuUsage();
        const threads = threadCpu();
        const m = await createBackup({ ...deps, existing: listBackups(dir) }, { full: true });
        const mCpuMs = cpuMsSince(cpu);
        const byThreads = cpuByThreads(threads);
        const bytes = m.files.filter((f) => f.path.startsWith('engine/')).reduce((n, f) => n + f.size, 0);
        const copy = await rawCopy(join(dir, m.id, 'engine'), join(root, 'raw-copy'));
        const ms = copy.ms;
        rounds.push({
          full_ms: m.duration_ms,
          full_cpu_ms: mCpuMs,
          full_cpu_ms_by_threads: byThreads,
          copy_ms: round(ms),
          copy_cpu_ms: copy.cpu_ms,
          load_1m: round(loadavg()[0], 1),
        });
        progress(
          `backup: full ${round(m.size_bytes / 2 ** 20)} MB in ${m.duration_ms} ms (${mCpuMs} CPU-ms, ${JSON.stringify(byThreads)}) ${JSON.stringify(m.timings_ms)}; raw copy ${round(bytes / 2 ** 20)} MB in ${round(ms)} ms (${copy.cpu_ms} CPU-ms), load ${round(loadavg()[0], 1)}`,
        );
        fullCpuMs = Math.min(fullCpuMs, mCpuMs);
        copyCpuMs = Math.min(copyCpuMs, copy.cpu_ms);
        if (!full || m.duration_ms < full.duration_ms) {
          if (full) rmSync(join(dir, full.id), { recursive: true, force: true });
          full = m;
        } else rmSync(join(dir, m.id), { recursive: true, force: true });
        copyMs = Math.min(copyMs, ms);
        copyBytes = bytes;
      }
      if (!full) throw new Error('no full backup');

      // New events on days after every stored one (copies NEW_DAYS days on), as new data arrives: new parts.
      const extra = Math.max(1, Math.round((events * pct) / 100));
      const more = dataSet
        ? await copySample(store, pct)
        : await copyInEngine(store, NEW_DAYS, Math.ceil(extra / baseEvents), extra);
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
        data_set: dataSet
          ? { rows: dataSet.rows, built_parts: dataSet.active_parts, merges_settled: settled }
          : { events, base_events: baseEvents },
        active_parts_at_start: Number(parts.parts),
        table_mb: Number(parts.mb),
        rounds,
        raw_copy: {
          mb: round(copyBytes / 2 ** 20, 1),
          ms: round(copyMs),
          cpu_ms: copyCpuMs,
          mb_per_s: mbps(copyBytes, copyMs),
        },
        full: {
          events: full.engine.events.count,
          mb: round(full.size_bytes / 2 ** 20, 1),
          ms: full.duration_ms,
          cpu_ms_best: fullCpuMs,
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
        params: {
          ...(rows === undefined ? { events, base_events: baseEvents } : { rows }),
          incremental_pct: pct,
          passes,
        },
        results: {
          ...results,
          full_rate_vs_raw_copy: round(fullVsCopy, 2),
          // The same ratio in CPU time (best of each): raw copy CPU / full backup CPU.
          full_cpu_rate_vs_raw_copy: round(copyCpuMs / fullCpuMs, 2),
        },
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
