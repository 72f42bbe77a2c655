import { spawnSync } from 'node:child_process';
import { constants, existsSync, readdirSync } from 'node:fs';
import { copyFile, cp, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Session } from 'chdb';
import { type Db, type Migration, migrate, openPglite, openPostgres } from '../db/index.ts';
import { createLogger } from '../lib/logger.ts';
import { VigilError } from '../lib/errors.ts';
import { DATABASE, SCHEMA_VERSION } from '../store/index.ts';
import { COPIED_FOLDERS, PRE_CUT_FILES } from './create.ts';

/** Written into a data folder a restore rebuilt: which backup, and when (the store's replica reads it at start). */
export const RESTORED_MARKER = 'restored-from.json';
import { ddlPath, partPath } from './frozen.ts';
import { ENGINE_FOLDER, FROZEN_PARTS_FORMAT, MANIFEST_FORMAT, type Manifest, readManifest } from './manifest.ts';
import { countRows, importDatabase } from './postgres.ts';
import { assertVerified, verifyBackup } from './verify.ts';

/** The engine server setting that lets BACKUP and RESTORE use `dir` (and only it) through File(). */
export function engineBackupArgs(dir: string): string[] {
  return [`--backups.allowed_path=${resolve(dir)}/`];
}

/** What a restore did. */
export interface RestoreResult {
  id: string;
  dataDir: string;
  events: number;
  tables: Record<string, number>;
  postgres: Record<string, number>;
  duration_ms: number;
}

/**
 * Checks that backup `id` can be restored by this Vigil, and the target folder: each refusal a clear
 * error, before anything is written.
 */
export async function checkRestore(
  dir: string,
  id: string,
  dataDir: string,
  opts: { force: boolean; migrations: readonly Migration[]; postgresUrl?: string },
): Promise<Manifest> {
  const manifest = readManifest(dir, id);
  if (manifest.format > MANIFEST_FORMAT) {
    throw new VigilError(
      'backup_schema_newer',
      `backup ${id} has manifest format ${manifest.format}, newer than this Vigil's (${MANIFEST_FORMAT}): restore it with Vigil ${manifest.vigil_version} or later`,
      { status: 409 },
    );
  }
  if (manifest.schema.events > SCHEMA_VERSION) {
    throw new VigilError(
      'backup_schema_newer',
      `backup ${id} holds events of schema ${manifest.schema.events}, newer than this Vigil's (${SCHEMA_VERSION}): restore it with Vigil ${manifest.vigil_version} or later`,
      { status: 409 },
    );
  }
  const known = new Set(opts.migrations.map((m) => m.id));
  const unknown = manifest.schema.postgres.filter((m) => !known.has(m));
  if (unknown.length > 0) {
    throw new VigilError(
      'backup_schema_newer',
      `backup ${id} holds a database migrated by a newer Vigil (${unknown.join(', ')} unknown here): restore it with Vigil ${manifest.vigil_version} or later`,
      { status: 409 },
    );
  }
  assertVerified(await verifyBackup(dir, id));
  const target = resolve(dataDir);
  // Even with --force: replacing the files under a running engine corrupts its data.
  const status = join(target, 'events', 'status');
  if (isLocked(status)) {
    throw new VigilError(
      'backup_target_in_use',
      `${target} is in use: a running Vigil holds the lock on ${status}; stop that node before restoring into its data folder`,
      { status: 409 },
    );
  }
  if (existsSync(target) && readdirSync(target).length > 0 && !opts.force) {
    throw new VigilError(
      'backup_target_not_empty',
      `${target} is not empty: restore into a new or empty folder, or pass --force to replace the events, database, rules and ingest keys in it`,
      { status: 409 },
    );
  }
  if (opts.postgresUrl) {
    const db = openTargetPostgres(opts.postgresUrl);
    try {
      const [row] = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = current_schema()`,
      );
      if (Number(row.n) > 0) {
        throw new VigilError(
          'backup_target_not_empty',
          `the PostgreSQL database given by --postgres-url has ${row.n} tables in its schema: restore into a new, empty database`,
          { status: 409 },
        );
      }
    } finally {
      await db.close();
    }
  }
  return manifest;
}

/**
 * Whether another process holds the lock the event engine (ClickHouse's StatusFile) takes on
 * `<data_dir>/events/status` for as long as it runs: flock(1) from util-linux tries the same flock(2),
 * without waiting. Node has no flock of its own. A host without flock(1) cannot tell: restore goes on, as
 * before this check.
 */
export function isLocked(file: string): boolean {
  if (!existsSync(file)) return false;
  const r = spawnSync('flock', ['--nonblock', '--conflict-exit-code', '75', file, 'true'], { timeout: 10_000 });
  return r.status === 75;
}

/** A small pool to the PostgreSQL database a restore loads (its URL is never printed). */
function openTargetPostgres(url: string): Db {
  return openPostgres({ url, poolMax: 2, connectTimeoutMs: 10_000, statementTimeoutMs: 600_000 }, createLogger('warn'));
}

/**
 * Rebuilds a node's data folder from backup `id` (offline: no Vigil may run on `dataDir`). Everything is
 * built in a folder beside the target and moved in at the end, so a failure leaves the target as it was.
 */
export async function restoreBackup(
  dir: string,
  id: string,
  dataDir: string,
  opts: {
    force?: boolean;
    /** Every SQL migration this Vigil knows, in apply order (the app's list). */
    migrations: readonly Migration[];
    /** Load the SQL state into this empty PostgreSQL database instead of a PGlite folder in the target. */
    postgresUrl?: string;
  },
): Promise<RestoreResult> {
  const started = Date.now();
  const manifest = await checkRestore(dir, id, dataDir, {
    force: opts.force ?? false,
    migrations: opts.migrations,
    postgresUrl: opts.postgresUrl,
  });
  const target = resolve(dataDir);
  const staging = join(dirname(target), `.${basename(target)}.restoring-${id}`);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    const tables =
      manifest.format >= FROZEN_PARTS_FORMAT
        ? await restoreParts(dir, manifest, join(staging, 'events'))
        : await restoreEngine(dir, id, join(staging, 'events'));
    for (const name of [...COPIED_FOLDERS, ...PRE_CUT_FILES]) {
      const from = join(dir, id, name);
      if (existsSync(from)) await cp(from, join(staging, name), { recursive: true });
    }
    for (const [table, rows] of Object.entries(manifest.engine.tables)) {
      if (tables[table] !== rows) {
        throw new VigilError(
          'backup_restore_mismatch',
          `restoring ${id}: table ${table} has ${tables[table] ?? 0} rows where the manifest says ${rows}`,
        );
      }
    }
    // Last, since a PostgreSQL database is written in place: everything else is checked by now.
    const url = opts.postgresUrl;
    const postgres =
      manifest.postgres.kind === 'none'
        ? {}
        : await restorePostgres(
            join(dir, id),
            () => (url ? Promise.resolve(openTargetPostgres(url)) : openPglite(join(staging, 'pg'))),
            manifest,
            opts.migrations,
          );
    await mkdir(target, { recursive: true });
    for (const name of readdirSync(staging)) {
      await rm(join(target, name), { recursive: true, force: true });
      await rename(join(staging, name), join(target, name));
    }
    await writeFile(
      join(target, RESTORED_MARKER),
      `${JSON.stringify({ backup: id, cut_at: manifest.cut_at, restored_at: new Date().toISOString() })}\n`,
    );
    return {
      id,
      dataDir: target,
      events: manifest.engine.events.count,
      tables,
      postgres,
      duration_ms: Date.now() - started,
    };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * Rebuilds the engine's database from frozen parts (format 2) in a new engine folder: each table is made
 * from the DDL its backup holds, detached, given copies of its parts (from whichever backup of the chain
 * holds each, files copied several at once by the kernel), and attached again, which loads the parts found
 * in its folder. Returns the rows of each restored table.
 */
async function restoreParts(dir: string, manifest: Manifest, eventsDir: string): Promise<Record<string, number>> {
  await mkdir(eventsDir, { recursive: true });
  const session = new Session(eventsDir);
  const q = async (sql: string) => (await session.queryAsync(sql, { format: 'JSONEachRow' })).text();
  try {
    await q(`CREATE DATABASE IF NOT EXISTS ${DATABASE}`);
    const copies: { from: string; to: string }[] = [];
    const attach: string[] = [];
    for (const [table, parts] of Object.entries(manifest.parts ?? {})) {
      const ddl = await readFile(join(dir, manifest.id, ddlPath(table)), 'utf8');
      if (
        !ddl.startsWith(`CREATE TABLE ${DATABASE}.${table}\n`) &&
        !ddl.startsWith(`CREATE TABLE ${DATABASE}.${table} `)
      ) {
        throw new VigilError(
          'backup_corrupt',
          `backup ${manifest.id}: ${ddlPath(table)} does not create ${DATABASE}.${table}`,
          {
            status: 409,
          },
        );
      }
      await q(ddl);
      const [{ data_paths }] = (
        await q(`SELECT data_paths FROM system.tables WHERE database = '${DATABASE}' AND name = '${table}'`)
      )
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { data_paths: string[] });
      await q(`DETACH TABLE ${DATABASE}.\`${table}\``);
      attach.push(table);
      for (const p of parts) {
        const from = join(dir, p.backup, partPath(table, p.name));
        const to = join(data_paths[0], p.name);
        await mkdir(to);
        for (const f of await readdir(from)) copies.push({ from: join(from, f), to: join(to, f) });
      }
    }
    await copyAll(copies);
    for (const table of attach) await q(`ATTACH TABLE ${DATABASE}.\`${table}\``);
    const out: Record<string, number> = {};
    for (const table of attach) {
      out[table] = Number(JSON.parse(await q(`SELECT toString(count()) AS n FROM ${DATABASE}.\`${table}\``)).n);
    }
    return out;
  } finally {
    session.close();
  }
}

/** Files copied at once by a restore: the kernel copies (copy_file_range), so a few in flight keep the disk busy. */
const RESTORE_COPIES_IN_FLIGHT = 8;

/** Copies every file (new files; their folders exist), several at once. */
async function copyAll(copies: readonly { from: string; to: string }[]): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(RESTORE_COPIES_IN_FLIGHT, copies.length) }, async () => {
      while (next < copies.length) {
        const c = copies[next++];
        await copyFile(c.from, c.to, constants.COPYFILE_EXCL);
      }
    }),
  );
}

/** RESTORE DATABASE (format 1: the engine's own backup) into a new engine folder; returns the rows of each restored table. */
async function restoreEngine(dir: string, id: string, eventsDir: string): Promise<Record<string, number>> {
  await mkdir(eventsDir, { recursive: true });
  const session = new Session(eventsDir, { connectionArgs: engineBackupArgs(dir) });
  try {
    await session.queryAsync(`RESTORE DATABASE ${DATABASE} FROM File('${id}/${ENGINE_FOLDER}')`);
    const text = (
      await session.queryAsync(`SELECT name FROM system.tables WHERE database = '${DATABASE}'`, {
        format: 'JSONEachRow',
      })
    ).text();
    const out: Record<string, number> = {};
    for (const line of text.trim().split('\n').filter(Boolean)) {
      const { name } = JSON.parse(line) as { name: string };
      const n = (await session.queryAsync(`SELECT count() FROM ${DATABASE}.\`${name}\``, { format: 'CSV' })).text();
      out[name] = Number(n.trim());
    }
    return out;
  } finally {
    session.close();
  }
}

/** A new database (a PGlite folder, or an empty PostgreSQL one), migrated as the backup's was, loaded with its rows. */
async function restorePostgres(
  folder: string,
  open: () => Promise<Db>,
  manifest: Manifest,
  migrations: readonly Migration[],
): Promise<Record<string, number>> {
  const had = new Set(manifest.schema.postgres);
  const db = await open();
  try {
    await migrate(
      db,
      migrations.filter((m) => had.has(m.id)),
    );
    const tables = Object.keys(manifest.postgres.tables).sort();
    await importDatabase(db, folder, tables);
    const counts = await countRows(db, tables);
    for (const t of tables) {
      if (counts[t] !== manifest.postgres.tables[t]) {
        throw new VigilError(
          'backup_restore_mismatch',
          `restoring ${manifest.id}: database table ${t} has ${counts[t]} rows where the manifest says ${manifest.postgres.tables[t]}`,
        );
      }
    }
    return counts;
  } finally {
    await db.close();
  }
}
