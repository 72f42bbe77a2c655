import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { Db } from '../db/index.ts';
import { errorMessage, VigilError } from '../lib/errors.ts';
import { redactUrl } from '../lib/redact.ts';
import { VERSION } from '../lib/version.ts';
import { DATABASE, type EventStore, SCHEMA_VERSION } from '../store/index.ts';
import {
  type BackupEntry,
  checksumFiles,
  flushFolder,
  ENGINE_FOLDER,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  type Manifest,
  newBackupId,
  writeFileDurably,
} from './manifest.ts';
import { type HashedFile, hashFiles } from './hash-files.ts';
import { exportDatabase } from './postgres.ts';

/** Folders of the data directory a backup copies as they are: API-managed rules (global and per tenant) and the ingest keys. */
export const COPIED_FOLDERS = ['rules', 'tenant-rules', 'ingest-keys'] as const;
/**
 * Files copied before the cut: detection's committed position (every stored event received before it is
 * evaluated). Copied first, it is at or before the position at the cut, so the restored node evaluates
 * again, rather than skips, what was not evaluated yet (alerts are deduplicated by id).
 */
export const PRE_CUT_FILES = ['detect-position.json'] as const;
/** The backup's copy of the node's configuration (secrets redacted unless backup.include_secrets). */
export const CONFIG_FILE = 'config.yaml';

/** Why a backup failed, as counted in vigil_backup_failures_total{reason}. */
export type FailureReason = 'engine' | 'postgres' | 'files' | 'disk';

/** A failed backup: what failed, for the failure counter. */
export class BackupError extends VigilError {
  readonly reason: FailureReason;
  constructor(reason: FailureReason, message: string, cause: unknown) {
    super('backup_failed', message, { status: 500, retryable: true, cause });
    this.name = 'BackupError';
    this.reason = reason;
  }
}

/** What a backup reads from the running node. */
export interface CreateDeps {
  dir: string;
  dataDir: string;
  nodeId: string;
  store: EventStore;
  db?: Db;
  /** The node's whole configuration, written (redacted) beside the data; backup reads nothing in it. */
  config: Readonly<object>;
  includeSecrets: boolean;
  maxChain: number;
  /** The backups in `dir` now (the base is chosen among them). */
  existing: readonly BackupEntry[];
}

/** Names of the read-only databases a backup opens over itself to count it (dropped after, and at start). */
export const CHECK_DATABASE_PREFIX = 'vigil_backup_check_';

/** How often the engine's progress is read while it writes the backup in the background. */
const POLL_MS = 100;

/**
 * The base of the next backup: the newest complete backup of this node whose chain is shorter than
 * `maxChain + 1`, or none (a full backup).
 */
export function chooseBase(existing: readonly BackupEntry[], nodeId: string, maxChain: number): Manifest | undefined {
  for (let i = existing.length - 1; i >= 0; i--) {
    const m = existing[i].manifest;
    if (!m || m.node !== nodeId || m.schema.events !== SCHEMA_VERSION) continue;
    return m.chain.length <= maxChain ? m : undefined;
  }
  return undefined;
}

/**
 * Takes a backup of the running node into `<dir>/<id>`. The engine writes its own backup (BACKUP DATABASE
 * ... ASYNC: the parts committed when it starts, copied in the engine's background threads, so intake and
 * searches go on). The cut is taken just before the statement: every acknowledged write is a committed part
 * by then (the bus acknowledges after the store commits), so it is in the backup. The manifest is written
 * last: a folder without one is a partial backup that nothing restores. On failure the folder is removed.
 */
export async function createBackup(deps: CreateDeps, opts: { full?: boolean; now?: number } = {}): Promise<Manifest> {
  const startedAt = opts.now ?? Date.now();
  const base = opts.full ? undefined : chooseBase(deps.existing, deps.nodeId, deps.maxChain);
  const id = newBackupId(startedAt);
  const folder = join(deps.dir, id);
  const timings: Record<string, number> = {};
  const step = async <T>(reason: FailureReason, what: string, fn: () => Promise<T>, phase?: string): Promise<T> => {
    const t = performance.now();
    try {
      const result = await fn();
      if (phase) timings[phase] = Math.round(performance.now() - t);
      return result;
    } catch (err) {
      if (err instanceof BackupError) throw err;
      throw new BackupError(reason, `backup ${id}: ${what} failed: ${errorMessage(err)}`, err);
    }
  };
  try {
    // Owner only: a backup holds password and API key hashes, sessions and every event.
    await step('disk', `creating ${folder}`, () => mkdir(folder, { recursive: true, mode: 0o700 }));
    await step('files', 'copying the detection position', async () => {
      for (const name of PRE_CUT_FILES) {
        const from = join(deps.dataDir, name);
        if (existsSync(from)) await cp(from, join(folder, name));
      }
    });
    // The engine's part files are hashed while the engine copies them (see hashLiveParts); whatever the
    // backup holds besides is hashed after.
    // Without the listing every file is hashed after the engine: slower, as sure.
    const parts = await liveParts(deps.store, base, deps.existing).catch(() => ({ files: [], keys: [] }));
    const cutAt = Date.now();
    const prehash = hashFiles('/', parts.files, { skipFailed: true });
    // Awaited after the engine: a failure meanwhile must not count as an unhandled rejection.
    prehash.catch(() => {});
    await step(
      'engine',
      'the engine backup',
      () => flushWhile(folder, engineBackup(deps.store, id, base?.id)),
      'engine',
    );
    // The engine counts its backup (reading it) while the rest goes on: the SQL export, the files, the
    // wait for the part sums, the sums of what was not hashed yet and the flush. Measured with 500,000
    // Mordor events: the count (0.36 to 0.74 s) came after a wait for the part sums of 0.5 to 0.6 s.
    const counting = step('engine', 'counting the backup', () => engineContents(deps.store, id), 'count');
    // Awaited below: a failure meanwhile must not count as an unhandled rejection.
    counting.catch(() => {});
    const postgres = deps.db
      ? await step('postgres', 'the database export', () => exportDatabase(deps.db as Db, folder), 'postgres')
      : undefined;
    await step(
      'files',
      'copying the rules and ingest keys',
      async () => {
        for (const name of COPIED_FOLDERS) {
          const from = join(deps.dataDir, name);
          if (existsSync(from)) await cp(from, join(folder, name), { recursive: true });
        }
        const config = redactConfig(deps.config, deps.includeSecrets);
        await writeFileDurably(join(folder, CONFIG_FILE), stringify(config));
      },
      'files',
    );
    const known = new Map<string, HashedFile>();
    await step(
      'disk',
      'hashing the parts',
      async () => {
        for (const [i, f] of (await prehash).entries()) if (f) known.set(parts.keys[i], f);
      },
      'prehash_wait',
    );
    const [files] = await Promise.all([
      step('disk', 'computing checksums', () => checksumFiles(folder, { known }), 'checksums'),
      step('disk', 'flushing the files to disk', () => flushFolder(folder), 'flush'),
    ]);
    const engine = await counting;
    const finishedAt = Date.now();
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      id,
      kind: base ? 'incremental' : 'full',
      base: base?.id ?? null,
      chain: [...(base?.chain ?? []), id],
      node: deps.nodeId,
      vigil_version: VERSION,
      cut_at: new Date(cutAt).toISOString(),
      finished_at: new Date(finishedAt).toISOString(),
      duration_ms: finishedAt - startedAt,
      timings_ms: timings,
      schema: { events: SCHEMA_VERSION, postgres: postgres?.migrations ?? [] },
      engine,
      postgres: { kind: deps.db?.kind ?? 'none', tables: postgres?.tables ?? {} },
      files,
      size_bytes: files.reduce((n, f) => n + f.size, 0),
    };
    await step('disk', 'writing the manifest', () =>
      writeFileDurably(join(folder, MANIFEST_FILE), `${JSON.stringify(manifest, null, 1)}\n`),
    );
    return manifest;
  } catch (err) {
    await rm(folder, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
}

/**
 * The files of the engine's active parts (absolute paths) and where each lands in the backup's folder
 * (`engine/data/<database>/<table>/<part>/<file>`), for the parts the backup will copy: those of no backup of
 * its chain (an incremental copies only parts its bases lack). Why hash these and not the backup's copies:
 * a part's files never change once it is active, the engine copies them byte for byte, and hashing them
 * while the engine copies takes the checksums off the backup's critical path (measured below in
 * bench/backup.ts). The sums are of what the engine read; `verify` re-reads every file of the backup
 * against them, so a copy written wrong is found there. A part merged away meanwhile is hashed in vain, and
 * a file the backup holds that is not listed here (metadata, a part made meanwhile) is hashed from the
 * backup itself.
 */
async function liveParts(
  store: EventStore,
  base: Manifest | undefined,
  existing: readonly BackupEntry[],
): Promise<{ files: string[]; keys: string[] }> {
  const inChain = new Set<string>();
  if (base) {
    const byId = new Map(existing.map((e) => [e.id, e.manifest]));
    for (const id of base.chain) {
      for (const f of byId.get(id)?.files ?? []) inChain.add(f.path.split('/').slice(0, 5).join('/'));
    }
  }
  const rows = await store.query<{ table: string; name: string; path: string }>(
    'SELECT table, name, path FROM system.parts WHERE database = {db:String} AND active',
    { db: DATABASE },
  );
  const files: string[] = [];
  const keys: string[] = [];
  for (const r of rows) {
    const prefix = `${ENGINE_FOLDER}/data/${DATABASE}/${r.table}/${r.name}`;
    if (inChain.has(prefix)) continue;
    let entries: { name: string; isFile(): boolean }[];
    try {
      entries = await readdir(r.path, { withFileTypes: true });
    } catch {
      continue; // Merged away and removed since the listing.
    }
    for (const e of entries) {
      if (!e.isFile()) continue;
      files.push(join(r.path, e.name));
      keys.push(`${prefix}/${e.name}`);
    }
  }
  return { files, keys };
}

/** How often the backup's folder is flushed while the engine writes it. */
const FLUSH_WHILE_MS = 200;

/**
 * Flushes `folder` again and again until `work` ends, then returns its result: the disk writes out the
 * engine's copy while the engine makes it, so the flush before the manifest has only the last part left.
 * Measured with 500,000 Mordor events (271 MB) on a loaded 2-core machine: the final flush took 0.24 to
 * 1.2 s after the engine, as long as a third of the engine's copy.
 */
async function flushWhile<T>(folder: string, work: Promise<T>): Promise<T> {
  let done = false;
  let wake = () => {};
  const flushing = (async () => {
    while (!done) {
      await flushFolder(folder);
      if (done) break;
      // Woken as soon as the work ends: no wait on a timer after it.
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, FLUSH_WHILE_MS);
      });
    }
  })();
  try {
    return await work;
  } finally {
    done = true;
    wake();
    await flushing;
  }
}

/** Runs BACKUP DATABASE in the engine's background and waits for it (ids are checked, never user text). */
async function engineBackup(store: EventStore, id: string, base: string | undefined): Promise<void> {
  const settings = [`id = '${id}'`];
  if (base) settings.push(`base_backup = File('${base}/${ENGINE_FOLDER}')`);
  await store.exec(
    `BACKUP DATABASE ${DATABASE} TO File('${id}/${ENGINE_FOLDER}') SETTINGS ${settings.join(', ')} ASYNC`,
  );
  for (;;) {
    const [row] = await store.query<{ status: string; error: string }>(
      'SELECT status, error FROM system.backups WHERE id = {id:String}',
      { id },
    );
    if (row?.status === 'BACKUP_CREATED') return;
    if (row && row.status !== 'CREATING_BACKUP') {
      throw new Error(`the engine reports ${row.status}: ${row.error.split('\n')[0]}`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/**
 * What the engine's backup holds, read from the backup itself (a read-only Backup database over it), so
 * the counts are those of the backup and not of the live tables, which have moved on since the cut.
 */
async function engineContents(store: EventStore, id: string): Promise<Manifest['engine']> {
  const check = `${CHECK_DATABASE_PREFIX}${id.replace(/[^0-9a-zA-Z]/g, '_')}`;
  await store.exec(`CREATE DATABASE ${check} ENGINE = Backup('${DATABASE}', File('${id}/${ENGINE_FOLDER}'))`);
  try {
    const names = (
      await store.query<{ name: string }>('SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name', {
        db: check,
      })
    ).map((r) => r.name);
    const tables: Record<string, number> = {};
    for (const name of names) {
      const [row] = await store.query<{ n: string }>(`SELECT toString(count()) AS n FROM ${check}.\`${name}\``, {});
      tables[name] = Number(row.n);
    }
    let events: Manifest['engine']['events'] = { count: 0, first_ts: null, last_ts: null, id_sum: '0' };
    if (names.includes('events')) {
      const [row] = await store.query<{ n: string; first: string; last: string; id_sum: string }>(
        `SELECT toString(count()) AS n, toString(toUnixTimestamp64Milli(min(ts))) AS first,
                toString(toUnixTimestamp64Milli(max(ts))) AS last, toString(${EVENT_ID_SUM}) AS id_sum
           FROM ${check}.events FINAL`,
        {},
      );
      const n = Number(row.n);
      events = {
        count: n,
        first_ts: n > 0 ? new Date(Number(row.first)).toISOString() : null,
        last_ts: n > 0 ? new Date(Number(row.last)).toISOString() : null,
        id_sum: row.id_sum,
      };
    }
    const positions = names.includes('positions')
      ? (
          await store.query<{ stream: string; consumer: string; seq: string; ack_floor: string }>(
            `SELECT stream, consumer, toString(max(seq)) AS seq, toString(max(ack_floor)) AS ack_floor
               FROM ${check}.positions GROUP BY stream, consumer ORDER BY stream, consumer`,
            {},
          )
        ).map((p) => ({ stream: p.stream, consumer: p.consumer, seq: Number(p.seq), ack_floor: Number(p.ack_floor) }))
      : [];
    return { tables, events, positions };
  } finally {
    await store.exec(`DROP DATABASE IF EXISTS ${check}`);
  }
}

/**
 * The manifest's `id_sum`: the sum modulo 2^64 of the first 8 bytes, read little-endian, of
 * SHA-256(tenant + "\0" + event.id) over every event (as searches see them). Any client can compute it
 * from a search's answers (see {@link eventIdSum}); it is the same whatever the order of the events.
 */
const EVENT_ID_SUM = `sum(reinterpretAsUInt64(substring(SHA256(concat(tenant, '\\0', id)), 1, 8)))`;

/** `id_sum` (see the manifest) of events given as (tenant, event.id) pairs. */
export async function eventIdSum(events: Iterable<{ tenant: string; id: string }>): Promise<string> {
  const { createHash } = await import('node:crypto');
  let sum = 0n;
  for (const e of events) {
    const digest = createHash('sha256').update(`${e.tenant}\0${e.id}`).digest();
    sum = (sum + digest.readBigUInt64LE(0)) & 0xffff_ffff_ffff_ffffn;
  }
  return sum.toString();
}

/** Keys whose values are secrets wherever they appear in the configuration (`X-Api-Key`, `X-Custom-Auth`, ...). */
const SECRET_KEY =
  /(token|secret|password|passphrase|private[-_]?key|api[-_]?key|credentials?|auth|authorization|cookie)$/i;

/** Maps whose every value is redacted, whatever its key: HTTP headers of notify destinations carry credentials. */
const SECRET_MAP = /^headers$/i;

/** The configuration with secrets replaced by `redacted` and credentials cut out of URLs. */
export function redactConfig(config: unknown, includeSecrets: boolean): unknown {
  if (includeSecrets) return config;
  const walk = (value: unknown, key: string, secret: boolean): unknown => {
    if (typeof value === 'string') {
      if ((secret || SECRET_KEY.test(key)) && value !== '') return 'redacted';
      return /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? redactUrl(value) : value;
    }
    if (Array.isArray(value)) return value.map((v) => walk(v, key, secret));
    if (value && typeof value === 'object') {
      const inner = secret || SECRET_MAP.test(key);
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k, inner)]));
    }
    return value;
  };
  return walk(config, '', false);
}
