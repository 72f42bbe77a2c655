/**
 * The data set of the search benchmark: Mordor events normalized once and stored in a chdb folder laid out
 * as Vigil's store (`<dir>/events`, table `vigil.events` from `eventsTableDdl`), then copied in the engine
 * (shifted times, new ids) up to the target row count, spread over 30 days.
 *
 * The build runs in a child process (`buildSearchData`): chdb keeps engine threads (background merges)
 * after a Session is closed, and two engines must never work on one folder, so the builder exits before
 * Vigil opens the folder. Checkpointed in `build.json` after every copy: a build that runs out of its time
 * budget is measured as it is, and the next run carries on from there.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Session } from 'chdb';
import type { NormalizedEvent } from '../src/lib/event.ts';
import { createNormalizer, splitJson } from '../src/parse/index.ts';
import { eventsToRows } from '../src/store/rows.ts';
import { DATABASE, EVENTS_TABLE, eventsTableDdl, SCHEMA_VERSION } from '../src/store/schema.ts';
import { progress, round, sleep } from './common.ts';
import { mordorLines } from './mordor.ts';

export const DAY_MS = 86_400_000;
const SPAN_DAYS = 30;
const SPAN_MS = SPAN_DAYS * DAY_MS;
/** Target days written by one INSERT of a copy (see copyBase). */
const CHUNK_DAYS = 30;
/** Events per insert while loading the base set. */
const LOAD_BATCH = 20_000;
/** A build older than this is redone: TTL counts from `ingested`, which is the build time. */
const MAX_CACHE_AGE_DAYS = 20;
/** The base events wait in a table of their own (same chdb path, another database) until the build ends. */
const BASE_TABLE = 'bench_build.base';

/** The build's state in `build.json`, written after the base load and after every copy. */
export interface BuildState {
  /** The events table layout (SCHEMA_VERSION) the build made; another one is rebuilt. */
  schema_version?: number;
  rows_target: number;
  base_events: number;
  copies_done: number;
  /** Target days of the current copy already written (a copy interrupted midway resumes there). */
  copy_days_done?: number;
  rows: number;
  complete: boolean;
  window_from: string;
  window_to: string;
  ingested_at: string;
  updated_at: string;
  load_base_s: number;
  copy_s: number;
  build_runs: number;
  merge_settle_s?: number;
  /** Files the engine could not open (EMFILE in merges) during this run's build and settling. */
  cannot_open_file_errors_this_run?: number;
  active_parts?: number;
  partitions?: number;
  table_bytes_on_disk_mb?: number;
  table_uncompressed_mb?: number;
}

/** What to build and how long this run may spend on it. */
export interface BuildOptions {
  dir: string;
  target: number;
  /** Mordor events in the base set; all when undefined. */
  events?: number;
  rebuild: boolean;
  budgetMs: number;
}

/** Builds (or resumes, or reuses) the data set in a child process and returns its state. */
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

/** Returns the cached build when complete and recent; otherwise builds, or resumes, within the budget. */
async function ensureDataSet(opts: BuildOptions): Promise<BuildState> {
  const dir = opts.dir;
  const stateFile = join(dir, 'build.json');
  let state: BuildState | undefined;
  if (!opts.rebuild && existsSync(stateFile)) {
    state = JSON.parse(readFileSync(stateFile, 'utf8')) as BuildState;
    const ageDays = (Date.now() - Date.parse(state.ingested_at)) / DAY_MS;
    if (ageDays > MAX_CACHE_AGE_DAYS) {
      progress(`the cached data set is ${Math.round(ageDays)} days old: rebuilding`);
      state = undefined;
    } else if (state.schema_version !== SCHEMA_VERSION) {
      progress(`the cached data set has events schema ${state.schema_version ?? 1}, not ${SCHEMA_VERSION}: rebuilding`);
      state = undefined;
    } else if (state.complete) {
      progress(`using the data set cached in ${dir} (${state.rows} rows)`);
      return state;
    } else progress(`resuming the cached build in ${dir} at ${state.rows} rows`);
  }
  if (state === undefined) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }
  const save = (s: BuildState) => {
    s.updated_at = new Date().toISOString();
    writeFileSync(stateFile, `${JSON.stringify(s, null, 2)}\n`);
  };
  const deadline = Date.now() + opts.budgetMs;
  const session = new Session(join(dir, 'events'));
  try {
    if (state === undefined) {
      state = await loadBase(session, opts.target, opts.events);
      save(state);
    }
    state.build_runs++;
    // Merges run while copying: with the JSON column of schema 1 they had to be stopped (a wide part held
    // a dozen files per JSON path, and merges next to the copies hit EMFILE); the map has a handful.
    await copyBase(session, state, deadline, save);
    if (state.rows >= state.rows_target) {
      await session.queryAsync(`DROP DATABASE IF EXISTS ${BASE_TABLE.split('.')[0]} SYNC`);
      state.complete = true;
    } else {
      progress(`build budget spent at ${state.rows} of ${state.rows_target} rows: measuring what there is`);
    }
    const settleStarted = performance.now();
    const settleDeadline = Date.now() + 5 * 60_000;
    // Settled: no merge running at three checks in a row (merges start a few seconds apart).
    for (let idle = 0; idle < 3 && Date.now() < settleDeadline; ) {
      await sleep(2000);
      idle = (await scalar(session, 'SELECT count() FROM system.merges')) === 0 ? idle + 1 : 0;
    }
    state.merge_settle_s = round((performance.now() - settleStarted) / 1000, 1);
    state.cannot_open_file_errors_this_run = await scalar(
      session,
      "SELECT sum(value) FROM system.errors WHERE name = 'CANNOT_OPEN_FILE'",
    );
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
    Object.assign(state, {
      active_parts: parts,
      partitions,
      table_bytes_on_disk_mb: Math.round(bytes / 2 ** 20),
      table_uncompressed_mb: Math.round(uncompressed / 2 ** 20),
    });
    save(state);
    return state;
  } finally {
    session.close();
  }
}

/**
 * Normalizes the Mordor events as the HTTP intake does, maps their times into the 30-day window (each
 * capture keeps its minutes-long shape), and stores them in the base table; creates the events table.
 */
async function loadBase(session: Session, target: number, events: number | undefined): Promise<BuildState> {
  const started = performance.now();
  const windowTo = Math.floor(Date.now() / DAY_MS) * DAY_MS;
  const windowFrom = windowTo - SPAN_MS;
  const receivedAt = Date.now();
  await session.queryAsync(`CREATE DATABASE IF NOT EXISTS ${DATABASE}`);
  await session.queryAsync(eventsTableDdl(SPAN_DAYS));
  await session.queryAsync(`CREATE DATABASE IF NOT EXISTS ${BASE_TABLE.split('.')[0]}`);
  // Same columns, none of the indexes, sort or partitioning: the base is only read back whole.
  await session.queryAsync(`CREATE TABLE ${BASE_TABLE} AS ${EVENTS_TABLE} ENGINE = MergeTree ORDER BY tuple()`);
  for (const index of ['idx_raw_text', 'idx_host']) {
    await session.queryAsync(`ALTER TABLE ${BASE_TABLE} DROP INDEX IF EXISTS ${index}`);
  }

  progress(`loading ${events ?? 'all'} Mordor events as the base set`);
  const normalizer = createNormalizer();
  let base = 0;
  let pending: Buffer[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    const batch: NormalizedEvent[] = [];
    for (const element of splitJson(Buffer.concat(pending).toString('utf8'))) {
      if ('error' in element) continue;
      try {
        const e = normalizer.fromJson(element.value, element.raw, { source: 'http', receivedAt, tenant: 'default' });
        e.timestamp = windowFrom + ((((e.timestamp - windowFrom) % SPAN_MS) + SPAN_MS) % SPAN_MS);
        batch.push(e);
      } catch {
        // Not a JSON object: the intake would reject it too.
      }
    }
    pending = [];
    await session.insert({ table: BASE_TABLE, values: eventsToRows(batch), format: 'JSONEachRow' });
    const before = base;
    base += batch.length;
    if (Math.floor(base / 100_000) > Math.floor(before / 100_000)) progress(`  ${base} base events loaded`);
  };
  const nl = Buffer.from('\n');
  for (const line of mordorLines(events)) {
    pending.push(line, nl);
    if (pending.length >= LOAD_BATCH * 2) await flush();
  }
  await flush();
  if ((await scalar(session, `SELECT countIf(position(id, '#') > 0) FROM ${BASE_TABLE}`)) > 0) {
    throw new Error('some base event ids contain #, the separator of copy ids');
  }
  const loadS = (performance.now() - started) / 1000;
  progress(`base set: ${base} events in ${round(loadS, 1)} s`);
  return {
    schema_version: SCHEMA_VERSION,
    rows_target: target,
    base_events: base,
    copies_done: 0,
    rows: 0,
    complete: false,
    window_from: new Date(windowFrom).toISOString(),
    window_to: new Date(windowTo).toISOString(),
    ingested_at: new Date(receivedAt).toISOString(),
    updated_at: '',
    load_base_s: round(loadS, 1),
    copy_s: 0,
    build_runs: 0,
  };
}

/**
 * Copies the base into the events table until it holds the target or the deadline passes: copy k has its
 * times shifted by a golden-ratio step around the window (distinct offsets, spread evenly) and ids `id#k`.
 * Each copy goes in chunks of CHUNK_DAYS target days: one INSERT writes a part per day it touches and
 * reads the whole base once. Schema 1 (a JSON column: a dozen files per path in a wide part) needed 1-day
 * chunks to stay under the descriptor limit, and so read the base 30 times a copy.
 */
async function copyBase(
  session: Session,
  state: BuildState,
  deadline: number,
  save: (s: BuildState) => void,
): Promise<void> {
  const windowFrom = Date.parse(state.window_from);
  while (state.rows < state.rows_target && Date.now() < deadline) {
    const k = state.copies_done;
    const shift = Math.round(SPAN_MS * ((k * 0.6180339887) % 1));
    const offset = `((toUnixTimestamp64Milli(ts) - ${windowFrom} + ${shift}) % ${SPAN_MS})`;
    // The last copy takes a hashed sample of the base, about the rows still missing.
    const share = Math.min(1, (state.rows_target - state.rows) / state.base_events);
    const sample = share < 1 ? ` AND cityHash64(id) % 1000000 < ${Math.ceil(share * 1_000_000)}` : '';
    const t = performance.now();
    for (let day = state.copy_days_done ?? 0; day < SPAN_DAYS; day += CHUNK_DAYS) {
      await session.queryAsync(
        `INSERT INTO ${EVENTS_TABLE} (ts, ingested, id, content_hash, tenant, source, layout, host, message, raw, parse_error, fields)
SELECT fromUnixTimestamp64Milli(${windowFrom} + ${offset}, 'UTC') AS ts,
  ingested, ${k === 0 ? 'id' : `concat(id, '#${k}')`} AS id, content_hash, tenant, source, layout, host, message, raw, parse_error, fields
FROM ${BASE_TABLE}
WHERE ${offset} >= ${day * DAY_MS} AND ${offset} < ${(day + CHUNK_DAYS) * DAY_MS}${sample}`,
      );
      state.copy_days_done = day + CHUNK_DAYS;
      save(state);
    }
    const s = (performance.now() - t) / 1000;
    state.copies_done++;
    state.copy_days_done = 0;
    state.copy_s = round(state.copy_s + s, 1);
    // Counted as searches see them: copy 0 holds the few Mordor events that share an id, which FINAL collapses.
    state.rows = await scalar(session, `SELECT count() FROM ${EVENTS_TABLE} FINAL`);
    save(state);
    progress(
      `  copy ${k}: ${state.rows} rows (${round(s, 1)} s, ${Math.max(0, Math.round((state.rows_target - state.rows) / 1000))}k to go)`,
    );
  }
}

async function scalar(session: Session, sql: string): Promise<number> {
  return Number((await session.queryAsync(sql, { format: 'CSV' })).text().trim());
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  // Exit explicitly: the engine's threads may keep the process alive, and its exit is what frees the folder.
  ensureDataSet(JSON.parse(process.argv[2]) as BuildOptions).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
