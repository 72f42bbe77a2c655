/**
 * The data set of the search benchmarks: Mordor events normalized once, then multiplied inside the engine
 * into a chdb folder laid out as Vigil's store (`<dir>/events`, table `vigil.events` from `eventsTableDdl`),
 * spread over 30 days.
 *
 * Two steps, each cached under `.bench` with the events schema version (another version is redone):
 * - the base (`ensureBase`): every Mordor event normalized as the HTTP intake does, written once as
 *   RowBinary rows of the store's own insert format (`base.rowbinary`), so that no build parses JSON again;
 * - a build (`buildSearchData`): the engine reads the base into a scratch table sorted by each event's time
 *   offset in the 30-day window, then writes the events table with INSERT ... SELECT: copy k of the base has
 *   its times shifted by a golden-ratio step around the window (distinct offsets, spread evenly) and ids
 *   `id#k` (copy 0 keeps the Mordor ids). The inserts go in time order, `chunk_hours` of target time each
 *   (each reads only its range of every copy from the sorted base), as continuous ingest writes events, so
 *   the parts cover disjoint time ranges as they would under ingest; merges run as they please meanwhile.
 * - the end state (`endAsIngest`): the folder is left as continuous ingest leaves a table, by the rule the
 *   table's force merge follows (FORCE_MERGE_AGE_S, `min_age_to_force_merge_seconds`): a partition whose
 *   writes stopped at least that long ago is one part. Time here is the writes' own (an insert is made when
 *   the window's clock reaches the end of its chunk), so at the end every day but the newest is merged into
 *   one part, and the newest is left as its inserts and the engine's own merges left it (no waiting for
 *   merges, no settling pause). The same rule for the single node's folder and every shard's: the builds
 *   take from 2 to 50 minutes of wall time, and the force merge of a partition once acted or not by
 *   accident of that time (a 3,000 s build had its first days merged, a 2-minute shard build none).
 * - a shard build (`shard` given) keeps only the rows of shard k of S (murmurHash3_32 of the new id, as
 *   `shardOf` routes an event), so the S shard folders together hold exactly the single-node set.
 *
 * Each build runs in a child process: chdb allows one data path per process and keeps engine threads after a
 * Session is closed, and two engines must never work on one folder, so the builder exits before Vigil opens
 * the folder. Measured on this 2-core machine: see docs/performance.md.
 */
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { Session } from 'chdb';
import type { NormalizedEvent } from '../src/lib/event.ts';
import { createNormalizer, splitJson } from '../src/parse/index.ts';
import { eventsToRowBinary, ROW_BINARY_STRUCTURE } from '../src/store/row-binary.ts';
import { DATABASE, EVENTS_TABLE, eventsTableDdl, FORCE_MERGE_AGE_S, SCHEMA_VERSION } from '../src/store/schema.ts';
import { BENCH_DIR, progress, round } from './common.ts';
import { mordorLines } from './mordor.ts';

export const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
export const SPAN_DAYS = 30;
const SPAN_MS = SPAN_DAYS * DAY_MS;
/** Events normalized per RowBinary write of the base. */
const BASE_BATCH = 20_000;
/** A build older than this is redone: TTL counts from `ingested`, which is the build time. */
const MAX_CACHE_AGE_DAYS = 20;
/** The scratch table of the base, in a database of its own dropped at the end of the build. */
const BASE_DB = 'bench_build';
const BASE_TABLE = `${BASE_DB}.base`;
/** The last copy takes a hashed sample of the base: this much more than the rows still missing, for FINAL. */
const SAMPLE_MARGIN = 1.003;
/** Target hours written by one INSERT by default (see BuildOptions.chunkHours). */
export const DEFAULT_CHUNK_HOURS = 6;

/** The normalized Mordor events, cached in `.bench/search-base/`. */
export interface BaseSet {
  file: string;
  schema_version: number;
  events: number;
  bytes: number;
  normalize_s: number;
  made_at: string;
}

/** A build's state in `build.json`. */
export interface BuildState {
  /** The events table layout (SCHEMA_VERSION) the build made; another one is rebuilt. */
  schema_version: number;
  rows_target: number;
  /** This folder's shard, when it holds one shard of the set. */
  shard?: { index: number; count: number };
  base_events: number;
  /** Base events as FINAL counts them (a few Mordor events are in two captures). */
  base_distinct: number;
  copies: number;
  chunk_hours: number;
  /** Rows stored, as searches count them (FINAL). */
  rows: number;
  complete: boolean;
  window_from: string;
  window_to: string;
  ingested_at: string;
  /** Seconds: normalizing the base (0 when it was cached), reading it into the engine, writing the copies. */
  normalize_base_s: number;
  read_base_s: number;
  copy_s: number;
  build_s: number;
  /** CPU seconds of the builder process (the engine runs in it): the whole build, reading the base, the copies. */
  build_cpu_s: number;
  read_base_cpu_s: number;
  copy_cpu_s: number;
  inserts: number;
  /** The table as the build left it: active parts, partitions, merges still running when it ended. */
  active_parts: number;
  partitions: number;
  merges_running_at_end: number;
  table_bytes_on_disk_mb: number;
  table_uncompressed_mb: number;
  /** How the build ended (see endAsIngest); absent in a build made before the rule, which is then ended so. */
  end_state?: EndState;
}

/** The end state of a build, as `endAsIngest` left it. */
export interface EndState {
  /** END_STATE_VERSION: a cached build of another version is ended again. */
  version: number;
  rule: string;
  /** The clock of the rule: the end of the newest insert's chunk (the window's end). */
  clock: string;
  /** Partitions merged into one part by the rule now, and those that already were one part. */
  force_merged_partitions: number;
  single_part_partitions: number;
  force_merge_s: number;
  force_merge_cpu_s: number;
  /** Active parts before the rule acted (the build's inserts and the engine's own merges). */
  active_parts_before: number;
  ended_at: string;
}

/** The version of the end state's rule (see endAsIngest). */
export const END_STATE_VERSION = 1;
const END_STATE_RULE = `every partition whose last write is at least ${FORCE_MERGE_AGE_S} s (min_age_to_force_merge_seconds) before the newest write, as the writes' time counts, merged into one part, as the table's force merge does under continuous ingest; the newest partition as its inserts and the engine's own merges left it`;

/** What to build. */
export interface BuildOptions {
  dir: string;
  target: number;
  /** Mordor events in the base set; all when undefined. */
  events?: number;
  rebuild: boolean;
  /** Keep only this shard's rows. */
  shard?: { index: number; count: number };
  /** Target hours per INSERT (default DEFAULT_CHUNK_HOURS): smaller writes smaller, more numerous parts. */
  chunkHours?: number;
}

/** The cache folder of a build of `target` rows over `events` base events (all when undefined). */
export function searchDataDir(target: number, events?: number, shard?: { index: number; count: number }): string {
  const set = join(BENCH_DIR, 'search-data', `rows-${target}-events-${events ?? 'all'}`);
  return shard ? join(`${set}-shards-${shard.count}`, `shard-${shard.index}`) : set;
}

/**
 * Builds the data set in a child process (or reuses the cached one) and returns its state. Exported for
 * other benchmarks that need a large store (a backup of 10M events, for one).
 */
export async function buildSearchData(opts: BuildOptions): Promise<BuildState> {
  const child = spawn(process.execPath, [...process.execArgv, import.meta.filename, JSON.stringify(opts)], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) =>
    child.once('exit', (c, s) => res([c, s])),
  );
  if (code !== 0) throw new Error(`the search data builder failed (exit ${code ?? signal})`);
  return JSON.parse(readFileSync(join(opts.dir, 'build.json'), 'utf8')) as BuildState;
}

/** The cached build in `dir` when it is complete, recent and of this schema; otherwise undefined (and why). */
export function cachedBuild(dir: string, target: number): { state?: BuildState; why: string } {
  const file = join(dir, 'build.json');
  if (!existsSync(file)) return { why: 'no build yet' };
  const state = JSON.parse(readFileSync(file, 'utf8')) as BuildState;
  const ageDays = (Date.now() - Date.parse(state.ingested_at)) / DAY_MS;
  if (state.schema_version !== SCHEMA_VERSION)
    return { why: `the cached build has events schema ${state.schema_version ?? 1}, not ${SCHEMA_VERSION}` };
  if (ageDays > MAX_CACHE_AGE_DAYS) return { why: `the cached build is ${Math.round(ageDays)} days old` };
  if (!state.complete || state.rows_target !== target) return { why: 'the cached build is not complete' };
  return { state, why: '' };
}

/** Normalizes the Mordor events once into RowBinary rows (cached by schema version and event count). */
export function ensureBase(events: number | undefined): BaseSet {
  const dir = join(BENCH_DIR, 'search-base', `schema-${SCHEMA_VERSION}-events-${events ?? 'all'}`);
  const meta = join(dir, 'base.json');
  if (existsSync(meta)) {
    const base = JSON.parse(readFileSync(meta, 'utf8')) as BaseSet;
    if (base.schema_version === SCHEMA_VERSION && existsSync(base.file)) return { ...base, normalize_s: 0 };
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  progress(`normalizing ${events ?? 'all'} Mordor events into the base set (once per schema version)`);
  const started = performance.now();
  const file = join(dir, 'base.rowbinary');
  const fd = openSync(`${file}.tmp`, 'w');
  const normalizer = createNormalizer();
  const receivedAt = Date.now();
  let count = 0;
  let bytes = 0;
  let pending: Buffer[] = [];
  const flush = () => {
    if (pending.length === 0) return;
    const batch: NormalizedEvent[] = [];
    for (const element of splitJson(Buffer.concat(pending).toString('utf8'))) {
      if ('error' in element) continue;
      try {
        batch.push(normalizer.fromJson(element.value, element.raw, { source: 'http', receivedAt, tenant: 'default' }));
      } catch {
        // Not a JSON object: the intake would reject it too.
      }
    }
    pending = [];
    const rows = eventsToRowBinary(batch);
    writeSync(fd, rows);
    bytes += rows.length;
    const before = count;
    count += batch.length;
    if (Math.floor(count / 100_000) > Math.floor(before / 100_000)) progress(`  ${count} base events normalized`);
  };
  const nl = Buffer.from('\n');
  try {
    for (const line of mordorLines(events)) {
      pending.push(line, nl);
      if (pending.length >= BASE_BATCH * 2) flush();
    }
    flush();
  } finally {
    closeSync(fd);
  }
  renameSync(`${file}.tmp`, file);
  const base: BaseSet = {
    file,
    schema_version: SCHEMA_VERSION,
    events: count,
    bytes,
    normalize_s: round((performance.now() - started) / 1000, 1),
    made_at: new Date().toISOString(),
  };
  writeFileSync(meta, `${JSON.stringify(base, null, 2)}\n`);
  progress(`base set: ${count} events, ${Math.round(bytes / 2 ** 20)} MB of rows, in ${base.normalize_s} s`);
  return base;
}

/** The SQL structure of the base file (the store's RowBinary insert structure). */
function baseStructure(): string {
  return ROW_BINARY_STRUCTURE.map(([name, type]) => `${name} ${type}`)
    .join(', ')
    .replace(/'/g, "\\'");
}

/** Copy k's shift around the window: golden-ratio steps, distinct and evenly spread. */
function shiftOf(k: number): number {
  return Math.round(SPAN_MS * ((k * 0.6180339887) % 1));
}

/**
 * The SELECT of copy k's rows whose shifted offset falls in [from, to) of the window (ms), reading only that
 * range of the base (sorted on `o`, the offset of copy 0).
 */
function copySelect(
  k: number,
  from: number,
  to: number,
  opts: { windowFrom: number; ingested: number; where: string[] },
): string {
  const shift = shiftOf(k);
  const lo = (((from - shift) % SPAN_MS) + SPAN_MS) % SPAN_MS;
  const hi = lo + (to - from);
  const range = hi <= SPAN_MS ? `o >= ${lo} AND o < ${hi}` : `(o >= ${lo} OR o < ${hi - SPAN_MS})`;
  const id = k === 0 ? 'id' : `concat(id, '#${k}')`;
  const where = [range, ...opts.where.map((w) => w.replaceAll('$id', id))].join(' AND ');
  // Aliases of their own: an alias named as a column would stand for the column in WHERE (the shard of
  // `concat(id, '#1')` computed on `id#1#1`).
  return `SELECT fromUnixTimestamp64Milli(toInt64(${opts.windowFrom} + (o + ${shift}) % ${SPAN_MS}), 'UTC') AS copy_ts,
  fromUnixTimestamp64Milli(toInt64(${opts.ingested}), 'UTC') AS copy_ingested, ${id} AS copy_id, content_hash, tenant, source, layout, host, message, raw, parse_error, fields
FROM ${BASE_TABLE} WHERE ${where}`;
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1e6;
}

/** Builds the folder (the child process's work): base into the engine, then the copies in time order. */
async function build(opts: BuildOptions): Promise<BuildState> {
  const cached = opts.rebuild ? { why: 'a rebuild was asked' } : cachedBuild(opts.dir, opts.target);
  if (cached.state?.end_state?.version === END_STATE_VERSION) {
    progress(`using the data set cached in ${opts.dir} (${cached.state.rows} rows)`);
    return cached.state;
  }
  if (cached.state) return endCachedBuild(opts.dir, cached.state);
  progress(`building ${opts.dir}: ${cached.why}`);
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const base = ensureBase(opts.events);
  rmSync(opts.dir, { recursive: true, force: true });
  mkdirSync(opts.dir, { recursive: true });
  const chunkHours = opts.chunkHours ?? DEFAULT_CHUNK_HOURS;
  const windowTo = Math.floor(Date.now() / DAY_MS) * DAY_MS;
  const windowFrom = windowTo - SPAN_MS;
  const ingested = Date.now();
  const session = new Session(join(opts.dir, 'events'));
  try {
    const scalar = async (sql: string) => Number((await session.queryAsync(sql, { format: 'CSV' })).text().trim());
    await session.queryAsync(`CREATE DATABASE IF NOT EXISTS ${DATABASE}`);
    await session.queryAsync(eventsTableDdl(SPAN_DAYS));
    await session.queryAsync(`CREATE DATABASE IF NOT EXISTS ${BASE_DB}`);
    const readStarted = performance.now();
    const readCpu = process.cpuUsage();
    const columns = ROW_BINARY_STRUCTURE.map(([name]) => name).join(', ');
    await session.queryAsync(
      `CREATE TABLE ${BASE_TABLE} ENGINE = MergeTree ORDER BY o AS
SELECT ((toUnixTimestamp64Milli(ts) - ${windowFrom}) % ${SPAN_MS} + ${SPAN_MS}) % ${SPAN_MS} AS o, ${columns}
FROM file('${base.file}', 'RowBinary', '${baseStructure()}')`,
    );
    if ((await scalar(`SELECT countIf(position(id, '#') > 0) FROM ${BASE_TABLE}`)) > 0) {
      throw new Error('some base event ids contain #, the separator of copy ids');
    }
    const readBaseS = (performance.now() - readStarted) / 1000;
    const readBaseCpu = cpuSeconds(readCpu);
    // Rows a copy adds as searches count them: Mordor has events stored in two captures (same id, time and
    // text), which FINAL shows once, in every copy.
    const distinct = await scalar(`SELECT uniqExact(tenant, ts, id, content_hash) FROM ${BASE_TABLE}`);
    const copies = Math.ceil(opts.target / distinct);
    const lastShare = Math.min(1, ((opts.target - (copies - 1) * distinct) / distinct) * SAMPLE_MARGIN);
    const shardWhere = opts.shard ? [`murmurHash3_32($id) % ${opts.shard.count} = ${opts.shard.index}`] : [];
    progress(
      `base read in ${round(readBaseS, 1)} s; writing ${copies} copies of ${base.events} events, ${chunkHours} h of target time per insert${opts.shard ? `, shard ${opts.shard.index} of ${opts.shard.count}` : ''}`,
    );
    const copyStarted = performance.now();
    const copyCpu = process.cpuUsage();
    let inserts = 0;
    for (let from = 0; from < SPAN_MS; from += chunkHours * HOUR_MS) {
      const to = Math.min(SPAN_MS, from + chunkHours * HOUR_MS);
      const selects = [];
      for (let k = 0; k < copies; k++) {
        const sample =
          k === copies - 1 && lastShare < 1 ? [`cityHash64(id) % 1000000 < ${Math.ceil(lastShare * 1_000_000)}`] : [];
        selects.push(copySelect(k, from, to, { windowFrom, ingested, where: [...shardWhere, ...sample] }));
      }
      await session.queryAsync(
        `INSERT INTO ${EVENTS_TABLE} (ts, ingested, id, content_hash, tenant, source, layout, host, message, raw, parse_error, fields)
${selects.join('\nUNION ALL\n')}`,
      );
      inserts++;
      if (Math.floor(to / (5 * DAY_MS)) > Math.floor(from / (5 * DAY_MS))) {
        progress(
          `  ${Math.round(to / DAY_MS)} of ${SPAN_DAYS} days written (${round((performance.now() - copyStarted) / 1000, 1)} s)`,
        );
      }
    }
    const copyS = (performance.now() - copyStarted) / 1000;
    const copyCpuS = cpuSeconds(copyCpu);
    const endState = await endAsIngest(session, { from: windowFrom, to: windowTo, chunkHours });
    const buildS = (performance.now() - started) / 1000;
    // Measured before anything else touches the table: the state searches will find.
    const table = await tableState(session);
    await session.queryAsync(`DROP DATABASE ${BASE_DB} SYNC`);
    // Counted as searches see them: copy 0 holds the few Mordor events that share an id, which FINAL collapses.
    const rows = await scalar(`SELECT count() FROM ${EVENTS_TABLE} FINAL`);
    if (opts.shard) {
      const { index, count } = opts.shard;
      const strays = await scalar(
        `SELECT count() FROM ${EVENTS_TABLE} WHERE murmurHash3_32(id) % ${count} != ${index}`,
      );
      if (strays > 0) throw new Error(`the build of shard ${index} of ${count} holds ${strays} rows of other shards`);
    }
    const state: BuildState = {
      schema_version: SCHEMA_VERSION,
      rows_target: opts.target,
      ...(opts.shard ? { shard: opts.shard } : {}),
      base_events: base.events,
      base_distinct: distinct,
      copies,
      chunk_hours: chunkHours,
      rows,
      complete: true,
      window_from: new Date(windowFrom).toISOString(),
      window_to: new Date(windowTo).toISOString(),
      ingested_at: new Date(ingested).toISOString(),
      normalize_base_s: base.normalize_s,
      read_base_s: round(readBaseS, 1),
      copy_s: round(copyS, 1),
      build_s: round(buildS, 1),
      build_cpu_s: round(cpuSeconds(cpu0), 1),
      read_base_cpu_s: round(readBaseCpu, 1),
      copy_cpu_s: round(copyCpuS, 1),
      inserts,
      ...table,
      end_state: endState,
    };
    writeFileSync(join(opts.dir, 'build.json'), `${JSON.stringify(state, null, 2)}\n`);
    progress(
      `built ${rows} rows in ${state.build_s} s (${state.build_cpu_s} CPU-s): ${table.active_parts} active parts in ${table.partitions} partitions, ${table.merges_running_at_end} merges running`,
    );
    return state;
  } finally {
    session.close();
  }
}

/** The table's parts as searches will find them (BuildState's fields of the same names). */
async function tableState(
  session: Session,
): Promise<
  Pick<
    BuildState,
    'active_parts' | 'partitions' | 'merges_running_at_end' | 'table_bytes_on_disk_mb' | 'table_uncompressed_mb'
  >
> {
  const [parts, partitions, bytes, uncompressed] = (
    await session.queryAsync(
      `SELECT count(), uniqExact(partition), sum(bytes_on_disk), sum(data_uncompressed_bytes) FROM system.parts
WHERE database = '${DATABASE}' AND table = 'events' AND active`,
      { format: 'CSV' },
    )
  )
    .text()
    .trim()
    .split(',')
    .map(Number);
  const merges = Number(
    (await session.queryAsync(`SELECT count() FROM system.merges WHERE database = '${DATABASE}'`, { format: 'CSV' }))
      .text()
      .trim(),
  );
  return {
    active_parts: parts,
    partitions,
    merges_running_at_end: merges,
    table_bytes_on_disk_mb: Math.round(bytes / 2 ** 20),
    table_uncompressed_mb: Math.round(uncompressed / 2 ** 20),
  };
}

/** Active parts per partition id of the events table. */
async function partsByPartition(session: Session): Promise<Map<string, number>> {
  const text = (
    await session.queryAsync(
      `SELECT partition_id, count() FROM system.parts WHERE database = '${DATABASE}' AND table = 'events' AND active
GROUP BY partition_id`,
      { format: 'CSV' },
    )
  ).text();
  const out = new Map<string, number>();
  for (const line of text.trim().split('\n')) {
    if (line === '') continue;
    const [id, n] = line.split(',');
    out.set(id.replace(/"/g, ''), Number(n));
  }
  return out;
}

/** Attempts at merging a due partition into one part (a merge of the engine's own may hold some of its parts). */
const FORCE_MERGE_ATTEMPTS = 5;

/**
 * Leaves the table as continuous ingest leaves it (see the module's comment): every day partition whose
 * last write, on the writes' own clock, is at least FORCE_MERGE_AGE_S before the newest write is merged into
 * one part, as the table's force merge would have merged it by then; the newest partition is left as it is.
 * A day's last write is the end of the last `chunkHours` chunk that holds any of it (an insert is made when
 * the clock reaches its chunk's end), and the newest write is the end of the window.
 */
async function endAsIngest(
  session: Session,
  window: { from: number; to: number; chunkHours: number },
): Promise<EndState> {
  const started = performance.now();
  const cpu = process.cpuUsage();
  const chunkMs = window.chunkHours * HOUR_MS;
  const clock = window.to;
  const due: string[] = [];
  for (let day = window.from; day < window.to; day += DAY_MS) {
    const lastWrite = Math.min(window.to, window.from + Math.ceil((day + DAY_MS - window.from) / chunkMs) * chunkMs);
    if (lastWrite + FORCE_MERGE_AGE_S * 1000 <= clock)
      due.push(new Date(day).toISOString().slice(0, 10).replace(/-/g, ''));
  }
  const before = await partsByPartition(session);
  const activeBefore = [...before.values()].reduce((a, b) => a + b, 0);
  let merged = 0;
  let single = 0;
  for (const id of due) {
    if ((before.get(id) ?? 0) <= 1) {
      single++;
      continue;
    }
    for (let attempt = 1; ; attempt++) {
      // Partition ids are the build's own digits (YYYYMMDD), never outside text.
      await session.queryAsync(`OPTIMIZE TABLE ${EVENTS_TABLE} PARTITION ID '${id}' FINAL`);
      const parts = (await partsByPartition(session)).get(id) ?? 0;
      if (parts <= 1) break;
      if (attempt >= FORCE_MERGE_ATTEMPTS) {
        throw new Error(`partition ${id} still has ${parts} parts after ${attempt} force merges`);
      }
      await new Promise((res) => setTimeout(res, 1000 * attempt));
    }
    merged++;
    if (merged % 5 === 0) progress(`  ${merged} partitions merged as the force merge would have`);
  }
  return {
    version: END_STATE_VERSION,
    rule: END_STATE_RULE,
    clock: new Date(clock).toISOString(),
    force_merged_partitions: merged,
    single_part_partitions: single,
    force_merge_s: round((performance.now() - started) / 1000, 1),
    force_merge_cpu_s: round(cpuSeconds(cpu), 1),
    active_parts_before: activeBefore,
    ended_at: new Date().toISOString(),
  };
}

/**
 * A cached build made before the end-state rule (or by another version of it): ended by the rule in place,
 * its build.json updated (the build's own figures kept).
 */
async function endCachedBuild(dir: string, cached: BuildState): Promise<BuildState> {
  progress(`ending the build cached in ${dir} as continuous ingest leaves it (${END_STATE_RULE})`);
  const session = new Session(join(dir, 'events'));
  try {
    const endState = await endAsIngest(session, {
      from: Date.parse(cached.window_from),
      to: Date.parse(cached.window_to),
      chunkHours: cached.chunk_hours,
    });
    const state: BuildState = { ...cached, ...(await tableState(session)), end_state: endState };
    writeFileSync(join(dir, 'build.json'), `${JSON.stringify(state, null, 2)}\n`);
    progress(
      `ended: ${endState.force_merged_partitions} partitions merged in ${endState.force_merge_s} s, ${endState.active_parts_before} -> ${state.active_parts} active parts`,
    );
    return state;
  } finally {
    session.close();
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  // Exit explicitly: the engine's threads may keep the process alive, and its exit is what frees the folder.
  build(JSON.parse(process.argv[2]) as BuildOptions).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
