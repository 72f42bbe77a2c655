import { existsSync } from 'node:fs';
import { cp, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { stringify } from 'yaml';
import type { Db } from '../db/index.ts';
import { errorMessage, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter } from '../lib/metrics.ts';
import { redactUrl } from '../lib/redact.ts';
import { VERSION } from '../lib/version.ts';
import { type EventStore, SCHEMA_VERSION } from '../store/index.ts';
import {
  copyFrozenParts,
  countFrozen,
  type FrozenCount,
  type FrozenEngine,
  freezeEngine,
  releaseFrozen,
} from './frozen.ts';
import type { HashedFile } from './hash-files.ts';
import {
  type BackupEntry,
  checksumFiles,
  FROZEN_PARTS_FORMAT,
  flushFolder,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  type Manifest,
  newBackupId,
  writeFileDurably,
} from './manifest.ts';
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

/**
 * Work after a backup's outcome is decided that can fail on its own, as counted in
 * vigil_backup_cleanup_failures_total{step}: the count of a backup that had already failed (`count`), the
 * removal of a failed backup's folder (`remove_partial`), the removal of the freeze's hard links
 * (`release_freeze`).
 */
export type CleanupStep = 'count' | 'remove_partial' | 'release_freeze';

/** vigil_backup_cleanup_failures_total{step} (see {@link CleanupStep}). */
export function cleanupFailuresCounter(registry: Registry) {
  return counter(
    registry,
    'vigil_backup_cleanup_failures_total',
    "Work after a backup's outcome that failed on its own (a failed backup's count or folder, a freeze left on disk), by step.",
    ['step'],
  );
}

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
  /** Where a failed cleanup is told (the backup's own failure is the caller's to report: it is thrown). */
  logger: Logger;
  /** Where vigil_backup_cleanup_failures_total is counted. */
  metrics: Registry;
}

/**
 * The base of the next backup: the newest complete backup of this node whose chain is shorter than
 * `maxChain + 1`, or none (a full backup). A backup of format 1 (the engine's BACKUP) is no base: its
 * parts are not listed, so the next backup is a full one.
 */
export function chooseBase(existing: readonly BackupEntry[], nodeId: string, maxChain: number): Manifest | undefined {
  for (let i = existing.length - 1; i >= 0; i--) {
    const m = existing[i].manifest;
    if (!m || m.node !== nodeId || m.schema.events !== SCHEMA_VERSION) continue;
    if (m.format < FROZEN_PARTS_FORMAT || !m.parts) return undefined;
    return m.chain.length <= maxChain ? m : undefined;
  }
  return undefined;
}

/**
 * Takes a backup of the running node into `<dir>/<id>`. The engine freezes its tables (hard links of the
 * committed parts, at once, while intake and searches go on; see frozen.ts for the order and the cut), and
 * Vigil copies the parts its base lacks, hashing each file in the read that copies it, while the engine
 * counts the frozen snapshot. The manifest is written last: a folder without one is a partial backup that
 * nothing restores. On failure the folder is removed; the freeze's hard links are removed in every case.
 * A failure of that cleanup does not change the outcome: it is logged and counted (see {@link CleanupStep}).
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
  const cleanupFailures = cleanupFailuresCounter(deps.metrics);
  /**
   * Runs work whose failure does not change the backup's outcome (decided by then, and reported by the
   * caller), and reports that failure here: logged with what it leaves behind, and counted.
   */
  const cleanup = async (what: CleanupStep, leaves: string, work: () => Promise<unknown>): Promise<void> => {
    try {
      await work();
    } catch (err) {
      cleanupFailures.inc({ step: what });
      deps.logger.error({ backup: id, step: what, err: errorMessage(err) }, `A backup's cleanup failed: ${leaves}.`);
    }
  };
  let frozen: FrozenEngine | undefined;
  /** The count's outcome, settled (never rejected): the count runs beside the copy, and either may fail first. */
  let counting: Promise<{ ok: true; value: FrozenCount } | { ok: false; err: unknown }> | undefined;
  /** Whether the count was awaited where the backup needs it (its failure is then the backup's). */
  let countAwaited = false;
  try {
    // Owner only: a backup holds password and API key hashes, sessions and every event.
    await step('disk', `creating ${folder}`, () => mkdir(folder, { recursive: true, mode: 0o700 }));
    await step('files', 'copying the detection position', async () => {
      for (const name of PRE_CUT_FILES) {
        const from = join(deps.dataDir, name);
        if (existsSync(from)) await cp(from, join(folder, name));
      }
    });
    frozen = await step('engine', 'freezing the engine tables', () => freezeEngine(deps.store, id), 'freeze');
    const snapshot = frozen;
    // The engine counts the snapshot while the parts are copied (the count reads the frozen parts, the copy
    // the same files: one read from disk serves both while they are in the page cache).
    // Settled into a value at once, so that a failure while the copy runs is no unhandled rejection: it is
    // thrown below, or, when the backup fails first, reported by the cleanup in `finally`.
    counting = step('engine', 'counting the backup', () => countFrozen(deps.store, snapshot, id), 'count').then(
      (value) => ({ ok: true as const, value }),
      (err: unknown) => ({ ok: false as const, err }),
    );
    const copied = await step(
      'disk',
      'copying the frozen parts',
      () => flushWhile(folder, copyFrozenParts(snapshot, folder, id, base)),
      'copy',
    );
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
    const known = new Map<string, HashedFile>(copied.files.map((f) => [f.path, f]));
    const [files] = await Promise.all([
      step('disk', 'computing checksums', () => checksumFiles(folder, { known }), 'checksums'),
      step('disk', 'flushing the files to disk', () => flushFolder(folder), 'flush'),
    ]);
    countAwaited = true;
    const counted = await counting;
    if (!counted.ok) throw counted.err;
    const { engine, copied: countedFromCopy } = counted.value;
    if (Object.keys(countedFromCopy).length > 0) {
      deps.logger.info(
        { backup: id, parts: countedFromCopy },
        'Merges replaced frozen parts before the backup read them: their partitions were read from a copy of the freeze.',
      );
    }
    const finishedAt = Date.now();
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      id,
      kind: base ? 'incremental' : 'full',
      base: base?.id ?? null,
      chain: [...(base?.chain ?? []), id],
      node: deps.nodeId,
      vigil_version: VERSION,
      cut_at: new Date(snapshot.cutAt).toISOString(),
      finished_at: new Date(finishedAt).toISOString(),
      duration_ms: finishedAt - startedAt,
      timings_ms: timings,
      schema: { events: SCHEMA_VERSION, postgres: postgres?.migrations ?? [] },
      engine,
      postgres: { kind: deps.db?.kind ?? 'none', tables: postgres?.tables ?? {} },
      parts: copied.parts,
      files,
      size_bytes: files.reduce((n, f) => n + f.size, 0),
    };
    await step('disk', 'writing the manifest', () =>
      writeFileDurably(join(folder, MANIFEST_FILE), `${JSON.stringify(manifest, null, 1)}\n`),
    );
    return manifest;
  } catch (err) {
    await cleanup(
      'remove_partial',
      `the partial folder ${folder} stays (it has no manifest: nothing restores it)`,
      () => rm(folder, { recursive: true, force: true }),
    );
    throw err;
  } finally {
    // The count may read the frozen files: it ends (and drops any database it made) before they are
    // removed. Not awaited yet means the backup failed before it: its own failure is logged and counted.
    const count = counting;
    if (count && !countAwaited) {
      await cleanup('count', 'nothing (the backup had failed already)', async () => {
        const counted = await count;
        if (!counted.ok) throw counted.err;
      });
    }
    const snapshot = frozen;
    if (snapshot) {
      await cleanup(
        'release_freeze',
        `the frozen parts under ${snapshot.shadowRoot} stay on disk until the node starts again`,
        () => releaseFrozen(snapshot),
      );
    }
  }
}

/** How often the backup's folder is flushed while its files are written. */
const FLUSH_WHILE_MS = 200;

/**
 * Flushes `folder` again and again until `work` ends, then returns its result: the disk writes out the
 * copy while it is made, so the flush before the manifest has only the last part left. Measured with
 * 500,000 Mordor events (271 MB) on a loaded 2-core machine: the final flush took 0.24 to 1.2 s after the
 * engine's BACKUP (format 1), as long as a third of its copy.
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
