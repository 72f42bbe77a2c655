import { createHash } from 'node:crypto';
import { link, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { EventStore } from '../store/index.ts';
import { DATABASE } from '../store/index.ts';
import { type CopyJob, copyFiles, type HashedFile } from './hash-files.ts';
import { ENGINE_FOLDER, type Manifest, type PartRef } from './manifest.ts';

/**
 * The engine's side of a backup by frozen parts (format 2, ADR 0010): `ALTER TABLE ... FREEZE WITH NAME`
 * hard-links every active part of a table under `<engine data>/shadow/<name>/` at once, without copying a
 * byte or stopping inserts; Vigil then copies the frozen parts itself (see {@link copyFrozenParts}) and
 * counts them in a read-only database of its own (see {@link countFrozen}). Parts never change once written
 * (a merge or a mutation makes new ones), so a part is known across backups by its table, name and the
 * SHA-256 of its `checksums.txt` (which lists the engine's checksum of every file of the part): an
 * incremental copies only the parts its base does not list.
 */

/** The table whose freeze is the cut: frozen last, after every table that says something about it. */
const CUT_TABLE = 'events';
/**
 * Tables frozen in this order after all others: the alert fences after the alerts (a new owner writes its
 * fence before its first alert, so the backup holds the fence of every alert it holds), the events last.
 */
const FROZEN_LAST = ['alert_fences', CUT_TABLE];

/** Names that go into SQL and paths as they are: the engine's table names and part names are of this form. */
const TABLE_NAME = /^[A-Za-z0-9_]+$/;
export const PART_NAME = /^[A-Za-z0-9_-]+$/;

/** A table of the store's database, frozen. */
export interface FrozenTable {
  name: string;
  /** CREATE TABLE as the engine shows it (SHOW CREATE TABLE), written beside the parts. */
  ddl: string;
  /** The frozen copy of the table's data folder (hard links of its active parts at the freeze). */
  shadow: string;
  /** Part folders of `shadow`, each with the SHA-256 of its checksums.txt and its rows (its count.txt). */
  parts: { name: string; checksums: string; rows: number }[];
}

/** A frozen snapshot of the store's database (see {@link freezeEngine}). */
export interface FrozenEngine {
  /** The engine's folder holding this freeze's hard links (removed by {@link releaseFrozen}). */
  shadowRoot: string;
  /** ms since the epoch, taken just before the events table was frozen: every acknowledged write is in. */
  cutAt: number;
  tables: FrozenTable[];
}

/** Where a table's DDL lands in a backup's folder. */
export function ddlPath(table: string): string {
  return `${ENGINE_FOLDER}/metadata/${DATABASE}/${table}.sql`;
}

/** Where a part's folder lands in a backup's folder. */
export function partPath(table: string, part: string): string {
  return `${ENGINE_FOLDER}/data/${DATABASE}/${table}/${part}`;
}

/** Prefix of the freezes of backups (folders under `<engine data>/shadow/`). */
const FREEZE_PREFIX = 'vigil_backup_';

/** The freeze's name, made of the backup id (checked: digits, letters, `-`). */
function freezeName(id: string): string {
  return `${FREEZE_PREFIX}${id.replace(/[^0-9a-zA-Z]/g, '_')}`;
}

/** The engine's data folder (its default disk). */
async function enginePath(store: Pick<EventStore, 'query'>): Promise<string> {
  const [disk] = await store.query<{ path: string }>(`SELECT path FROM system.disks WHERE name = 'default'`, {});
  if (!disk) throw new Error('the engine has no default disk');
  return disk.path;
}

/**
 * Removes the freezes of backups that did not end (the process stopped during one): their hard links
 * would keep every part they hold on disk, merged away or not. Returns their names. Run before any backup.
 */
export async function removeLeftoverFreezes(store: Pick<EventStore, 'query'>): Promise<string[]> {
  const shadow = join(await enginePath(store), 'shadow');
  let names: string[];
  try {
    names = (await readdir(shadow)).filter((n) => n.startsWith(FREEZE_PREFIX));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  for (const n of names) await rm(join(shadow, n), { recursive: true, force: true });
  return names;
}

/**
 * Freezes every table of the store's database, the events table last. The order is the consistency: the
 * materializer writes a batch's events before its stream position and its batch record, detection stores
 * alerts after the events they match, a fence before its alerts (see FROZEN_LAST). So a table frozen earlier never claims
 * more than the events frozen after it hold: the positions in a backup are at or before its events (a
 * restored node applies the rest again, and the events table drops the duplicates), and each alert's fence
 * is frozen after the alert. The cut is read just before the events' freeze: a write acknowledged before it
 * is a committed part by then (the bus acknowledges after the store commits), so it is in the freeze.
 * On failure the freeze's hard links are removed.
 */
export async function freezeEngine(store: EventStore, id: string): Promise<FrozenEngine> {
  const name = freezeName(id);
  const disk = { path: await enginePath(store) };
  const shadowRoot = join(disk.path, 'shadow', name);
  const rows = await store.query<{ name: string; engine: string; data_paths: string[] }>(
    'SELECT name, engine, data_paths FROM system.tables WHERE database = {db:String} ORDER BY name',
    { db: DATABASE },
  );
  for (const r of rows) {
    if (!TABLE_NAME.test(r.name)) throw new Error(`the table name ${JSON.stringify(r.name)} cannot be backed up`);
    if (!r.engine.endsWith('MergeTree')) {
      throw new Error(`table ${DATABASE}.${r.name} has engine ${r.engine}: only MergeTree tables can be frozen`);
    }
    if (r.data_paths.length !== 1) throw new Error(`table ${DATABASE}.${r.name} has ${r.data_paths.length} data paths`);
  }
  const rank = (name: string) => FROZEN_LAST.indexOf(name);
  const ordered = [...rows].sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
  try {
    const tables: FrozenTable[] = [];
    let cutAt = Date.now();
    for (const r of ordered) {
      const [show] = await store.query<{ statement: string }>(`SHOW CREATE TABLE ${DATABASE}.\`${r.name}\``, {});
      if (r.name === CUT_TABLE) cutAt = Date.now();
      await store.exec(`ALTER TABLE ${DATABASE}.\`${r.name}\` FREEZE WITH NAME '${name}'`);
      const shadow = join(shadowRoot, relative(disk.path, r.data_paths[0]));
      tables.push({ name: r.name, ddl: show.statement, shadow, parts: await frozenParts(shadow) });
    }
    return { shadowRoot, cutAt, tables };
  } catch (err) {
    await rm(shadowRoot, { recursive: true, force: true });
    throw err;
  }
}

/** The part folders of a frozen table (none when the table had no part), each with its checksums.txt's sum. */
async function frozenParts(shadow: string): Promise<FrozenTable['parts']> {
  let entries: { name: string; isDirectory(): boolean }[];
  try {
    entries = await readdir(shadow, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const parts: FrozenTable['parts'] = [];
  for (const e of entries) {
    if (!e.isDirectory() || e.name === 'detached') continue;
    if (!PART_NAME.test(e.name)) throw new Error(`the frozen part ${join(shadow, e.name)} has an unexpected name`);
    const sums = await readFile(join(shadow, e.name, 'checksums.txt'));
    parts.push({
      name: e.name,
      checksums: createHash('sha256').update(sums).digest('hex'),
      rows: await partRows(join(shadow, e.name)),
    });
  }
  return parts.sort((a, b) => a.name.localeCompare(b.name));
}

/** A part's rows, from the count.txt the engine writes in every part it makes. */
async function partRows(part: string): Promise<number> {
  const text = (await readFile(join(part, 'count.txt'), 'utf8')).trim();
  if (!/^[0-9]+$/.test(text)) throw new Error(`${join(part, 'count.txt')} holds no row count`);
  return Number(text);
}

/** Removes a freeze's hard links (the engine keeps no other record of a freeze). */
export async function releaseFrozen(frozen: FrozenEngine): Promise<void> {
  await rm(frozen.shadowRoot, { recursive: true, force: true });
}

/**
 * Copies into `folder` (the backup's) the DDL of every frozen table and the files of every part its base
 * does not list, hashing them in the same read (see hash-files.ts), and returns the manifest's part list
 * (every part at the cut, each with the backup holding its files) and the sums of the copied files.
 */
export async function copyFrozenParts(
  frozen: FrozenEngine,
  folder: string,
  id: string,
  base: Manifest | undefined,
): Promise<{ parts: Record<string, PartRef[]>; files: HashedFile[] }> {
  const inBase = new Map<string, string>();
  for (const [table, refs] of Object.entries(base?.parts ?? {})) {
    for (const p of refs) inBase.set(`${table}/${p.name}/${p.checksums}`, p.backup);
  }
  const parts: Record<string, PartRef[]> = {};
  const jobs: CopyJob[] = [];
  for (const t of frozen.tables) {
    await mkdir(join(folder, ENGINE_FOLDER, 'metadata', DATABASE), { recursive: true });
    await writeFile(join(folder, ddlPath(t.name)), `${t.ddl}\n`, { mode: 0o600 });
    parts[t.name] = [];
    for (const p of t.parts) {
      const held = inBase.get(`${t.name}/${p.name}/${p.checksums}`);
      parts[t.name].push({ name: p.name, checksums: p.checksums, backup: held ?? id });
      if (held) continue;
      const to = partPath(t.name, p.name);
      await mkdir(join(folder, to), { recursive: true });
      const entries = await readdir(join(t.shadow, p.name), { withFileTypes: true });
      for (const e of entries) {
        if (!e.isFile()) throw new Error(`${join(t.shadow, p.name, e.name)} is not a file`);
      }
      // The sizes of a part's files at once: a wide part has a hundred or more.
      const sizes = await Promise.all(entries.map((e) => stat(join(t.shadow, p.name, e.name)).then((s) => s.size)));
      entries.forEach((e, i) => {
        const from = join(t.shadow, p.name, e.name);
        jobs.push({ from, to: join(folder, to, e.name), path: `${to}/${e.name}`, size: sizes[i] });
      });
    }
  }
  return { parts, files: await copyFiles(jobs) };
}

/** Names of the read-only databases a backup opens over its freeze when it must (dropped after, and at start). */
export const CHECK_DATABASE_PREFIX = 'vigil_backup_check_';

/** What {@link countFrozen} found, and how. */
export interface FrozenCount {
  engine: Manifest['engine'];
  /**
   * Frozen parts read through a database of their own because a merge had replaced them (or a part of
   * their partition) in the live table before the read (see {@link countFrozen}), by table; empty usually.
   */
  copied: Record<string, string[]>;
}

/**
 * What the frozen snapshot holds, as the manifest says it (see manifest.ts):
 * - rows of each table: the sum of its frozen parts' `count.txt` (the engine writes each part's row count
 *   there), read from disk without a query. It is what `count()` of the restored table gives: rows stored,
 *   before `FINAL` collapses the duplicates a ReplacingMergeTree (events, alerts) may hold in several parts.
 * - events as searches see them (`FINAL`: count, time range, `id_sum`) and the stream positions: read by the
 *   engine from the live table restricted to the frozen parts (`_part IN`, which selects the parts before
 *   `FINAL` merges, so rows of parts written after the cut neither count nor replace frozen ones). Parts
 *   never change once written, so a frozen part still active holds what the backup copies. A merge may
 *   have replaced some of them since the freeze (on an ingesting node, the newest parts of the day): the
 *   read tells which parts it read, per partition, and a partition with a part missing is read again from
 *   a database of its own given that partition's frozen parts by hard links (slower: a table to make and
 *   parts to load). Partitions are independent under FINAL (the sort key holds `ts`, the partition is its
 *   day), so their sums add up.
 * Measured (bench/backup.ts, 300,000 events, 60 parts): the database over every frozen table, which this
 * replaced, took 0.9 to 3.1 s to make and drop beside 0.3 to 0.9 s of reads on the loaded 2-core machine.
 */
export async function countFrozen(store: EventStore, frozen: FrozenEngine, id: string): Promise<FrozenCount> {
  const tables: Record<string, number> = {};
  for (const t of frozen.tables) tables[t.name] = t.parts.reduce((n, p) => n + p.rows, 0);
  const events = frozen.tables.find((t) => t.name === 'events');
  const positions = frozen.tables.find((t) => t.name === 'positions');
  const copied: Record<string, string[]> = {};
  const copy = new CopyDatabase(store, id);
  try {
    let ev = NO_EVENTS;
    if (events && events.parts.length > 0) {
      const live = await readEvents(store, `${DATABASE}.events`, events.parts);
      const missing = events.parts.filter((p) => !live.complete.has(partitionOf(p.name)));
      ev = live.sum;
      if (missing.length > 0) {
        copied.events = missing.map((p) => p.name);
        ev = addEvents(ev, (await readEvents(store, await copy.table(events, missing))).sum);
      }
    }
    let pos: Manifest['engine']['positions'] = [];
    if (positions && positions.parts.length > 0) {
      const live = await readPositions(store, `${DATABASE}.positions`, positions.parts);
      if (live) pos = live;
      else {
        copied.positions = positions.parts.map((p) => p.name);
        pos = (await readPositions(store, await copy.table(positions, positions.parts))) ?? [];
      }
    }
    return {
      engine: {
        tables,
        events: {
          count: ev.count,
          first_ts: ev.count > 0 && ev.first !== null ? new Date(ev.first).toISOString() : null,
          last_ts: ev.count > 0 && ev.last !== null ? new Date(ev.last).toISOString() : null,
          id_sum: ev.idSum.toString(),
        },
        positions: pos,
      },
      copied,
    };
  } finally {
    await copy.drop();
  }
}

/** Events as FINAL shows them, summed over partitions (`idSum` modulo 2^64). */
interface EventSums {
  count: number;
  first: number | null;
  last: number | null;
  idSum: bigint;
}

const NO_EVENTS: EventSums = { count: 0, first: null, last: null, idSum: 0n };

function addEvents(a: EventSums, b: EventSums): EventSums {
  const pick = (x: number | null, y: number | null, f: (...n: number[]) => number) =>
    x === null ? y : y === null ? x : f(x, y);
  return {
    count: a.count + b.count,
    first: pick(a.first, b.first, Math.min),
    last: pick(a.last, b.last, Math.max),
    idSum: (a.idSum + b.idSum) & 0xffff_ffff_ffff_ffffn,
  };
}

/** A part's partition id: its name is `<partition id>_<min block>_<max block>_<level>[_<mutation>]`. */
function partitionOf(part: string): string {
  return /^(.+?)_\d+_\d+_\d+(?:_\d+)?$/.exec(part)?.[1] ?? part;
}

/**
 * The manifest's `id_sum`: the sum modulo 2^64 of the first 8 bytes, read little-endian, of
 * SHA-256(tenant + "\0" + event.id) over every event (as searches see them). Any client can compute it
 * from a search's answers (see eventIdSum in create.ts); it is the same whatever the order of the events.
 */
const EVENT_ID_SUM = `sum(reinterpretAsUInt64(substring(SHA256(concat(tenant, '\\0', id)), 1, 8)))`;

/**
 * Events (FINAL) of `table` (`vigil.events`, or a copy's), summed; with `parts` (the live table), of those parts only, and
 * `complete` names the partitions of which the engine read every part given (the others' sums are left out:
 * a part merged away since the freeze was not read). A frozen part always holds rows; under FINAL a part
 * whose every row is replaced by a later frozen one reads as missing too, and its partition is read from
 * the copy: slower, never wrong.
 */
async function readEvents(
  store: Pick<EventStore, 'query'>,
  table: string,
  parts?: FrozenTable['parts'],
): Promise<{ sum: EventSums; complete: Set<string> }> {
  const names = parts?.map((p) => p.name);
  const rows = await store.query<{
    partition: string;
    n: string;
    first: string;
    last: string;
    id_sum: string;
    parts: string[];
  }>(
    `SELECT _partition_id AS partition, toString(count()) AS n, toString(toUnixTimestamp64Milli(min(ts))) AS first,
            toString(toUnixTimestamp64Milli(max(ts))) AS last, toString(${EVENT_ID_SUM}) AS id_sum,
            groupUniqArray(_part) AS parts
       FROM ${table} FINAL
       ${names ? 'WHERE _part IN {parts:Array(String)}' : ''}
      GROUP BY partition`,
    names ? { parts: names } : {},
  );
  const wanted = new Map<string, number>();
  for (const n of names ?? []) wanted.set(partitionOf(n), (wanted.get(partitionOf(n)) ?? 0) + 1);
  let sum = NO_EVENTS;
  const complete = new Set<string>();
  for (const r of rows) {
    if (names && r.parts.length !== wanted.get(r.partition)) continue;
    complete.add(r.partition);
    const n = Number(r.n);
    sum = addEvents(sum, {
      count: n,
      first: n > 0 ? Number(r.first) : null,
      last: n > 0 ? Number(r.last) : null,
      idSum: BigInt(r.id_sum),
    });
  }
  return { sum, complete };
}

/** Stream positions of `table` (`vigil.positions`, or a copy's); with `parts` (the live table), of those only, or undefined when one was not read. */
async function readPositions(
  store: Pick<EventStore, 'query'>,
  table: string,
  parts?: FrozenTable['parts'],
): Promise<Manifest['engine']['positions'] | undefined> {
  const names = parts?.map((p) => p.name);
  const rows = await store.query<{ stream: string; consumer: string; seq: string; ack_floor: string; parts: string[] }>(
    `SELECT stream, consumer, toString(max(seq)) AS seq, toString(max(ack_floor)) AS ack_floor,
            groupUniqArray(_part) AS parts
       FROM ${table} ${names ? 'WHERE _part IN {parts:Array(String)}' : ''}
      GROUP BY stream, consumer ORDER BY stream, consumer`,
    names ? { parts: names } : {},
  );
  if (names && new Set(rows.flatMap((r) => r.parts)).size !== names.length) return undefined;
  return rows.map((p) => ({
    stream: p.stream,
    consumer: p.consumer,
    seq: Number(p.seq),
    ack_floor: Number(p.ack_floor),
  }));
}

/**
 * A database of a backup's own whose tables are made like the live ones (CREATE TABLE ... AS) and given
 * frozen parts by hard links (same file system as the freeze; parts are never written in place, so the
 * links cannot change the backup's source): what those parts held at the cut, whatever merged since. Made
 * on first use, dropped by {@link CopyDatabase.drop} (and at start, see CHECK_DATABASE_PREFIX).
 */
class CopyDatabase {
  private readonly name: string;
  private made = false;
  constructor(
    private readonly store: EventStore,
    id: string,
  ) {
    this.name = `${CHECK_DATABASE_PREFIX}${id.replace(/[^0-9a-zA-Z]/g, '_')}`;
  }

  /** A table like `t` holding `parts` of its freeze; returns its name (`db`.`table`). */
  async table(t: FrozenTable, parts: FrozenTable['parts']): Promise<string> {
    if (!this.made) {
      this.made = true;
      await this.store.exec(`CREATE DATABASE ${this.name}`);
    }
    await this.store.exec(`CREATE TABLE ${this.name}.\`${t.name}\` AS ${DATABASE}.\`${t.name}\``);
    const [row] = await this.store.query<{ data_paths: string[] }>(
      'SELECT data_paths FROM system.tables WHERE database = {db:String} AND name = {name:String}',
      { db: this.name, name: t.name },
    );
    await this.store.exec(`DETACH TABLE ${this.name}.\`${t.name}\``);
    for (const p of parts) {
      const to = join(row.data_paths[0], p.name);
      await mkdir(to);
      for (const f of await readdir(join(t.shadow, p.name))) await link(join(t.shadow, p.name, f), join(to, f));
    }
    await this.store.exec(`ATTACH TABLE ${this.name}.\`${t.name}\``);
    return `${this.name}.\`${t.name}\``;
  }

  async drop(): Promise<void> {
    if (this.made) await this.store.exec(`DROP DATABASE IF EXISTS ${this.name} SYNC`);
  }
}
