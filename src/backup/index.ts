import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Registry } from 'prom-client';
import type { Db } from '../db/index.ts';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge } from '../lib/metrics.ts';
import type { EventStore } from '../store/index.ts';
import type { BackupConfig } from './config.ts';
import { BackupError, cleanupFailuresCounter, createBackup } from './create.ts';
import { CHECK_DATABASE_PREFIX, removeLeftoverFreezes } from './frozen.ts';
import { type BackupEntry, listBackups, type Manifest } from './manifest.ts';
import { planPrune } from './prune.ts';
import { parseSchedule, type Schedule } from './schedule.ts';
import { settleBy } from '../lib/deadline.ts';

export { type BackupConfig, backupConfigSchema } from './config.ts';
export { eventIdSum, redactConfig } from './create.ts';
export { checkBackupId, type Manifest, listBackups, readManifest } from './manifest.ts';
export { planPrune } from './prune.ts';
export { engineBackupArgs, RESTORED_MARKER, restoreBackup } from './restore.ts';
export { parseSchedule } from './schedule.ts';
export { assertVerified, verifyBackup } from './verify.ts';

/** A backup as `GET /admin/backups` and `vigil backup list` show it. */
export interface BackupSummary {
  id: string;
  state: 'complete' | 'partial';
  kind?: 'full' | 'incremental';
  base?: string | null;
  size_bytes?: number;
  cut_at?: string;
  duration_ms?: number;
  events?: number;
  tables?: Record<string, number>;
  postgres?: Record<string, number>;
  verified?: BackupEntry['verified'] | null;
}

/** Backups of the running node: on request and on backup.schedule, each followed by retention. */
export interface Backups extends Component {
  /** Takes a backup now (one at a time: another request meanwhile answers 409 `backup_running`). */
  create(opts?: { full?: boolean }): Promise<Manifest>;
  list(): BackupSummary[];
}

/** One line of a listing. */
export function summarize(e: BackupEntry): BackupSummary {
  const m = e.manifest;
  if (!m) return { id: e.id, state: 'partial', verified: e.verified ?? null };
  return {
    id: e.id,
    state: 'complete',
    kind: m.kind,
    base: m.base,
    size_bytes: m.size_bytes,
    cut_at: m.cut_at,
    duration_ms: m.duration_ms,
    events: m.engine.events.count,
    tables: m.engine.tables,
    postgres: m.postgres.tables,
    verified: e.verified ?? null,
  };
}

/**
 * Creates the backup component over `config.dir` (resolved from the working folder, as data_dir is).
 * Nothing runs until start(), which starts the schedule when backup.schedule is set.
 */
export function createBackups(
  config: BackupConfig,
  deps: {
    dataDir: string;
    nodeId: string;
    store: EventStore;
    /** The SQL state (incidents, users...), when this node runs the postgres module. */
    db?: Db;
    /** The node's whole configuration, kept in each backup (config/ cannot be imported: it imports backup/). */
    vigilConfig: Readonly<object>;
    metrics: Registry;
    logger: Logger;
  },
): Backups {
  const dir = resolve(config.dir);
  const log = deps.logger.child({ component: 'backup' });
  const schedule: Schedule | undefined = config.schedule ? parseSchedule(config.schedule) : undefined;
  const lastSuccess = gauge(
    deps.metrics,
    'vigil_backup_last_success_timestamp_seconds',
    'Cut time of the newest complete backup in backup.dir (0: none).',
  );
  const lastSize = gauge(deps.metrics, 'vigil_backup_last_size_bytes', 'Bytes of the last backup this node took.');
  const lastDuration = gauge(
    deps.metrics,
    'vigil_backup_last_duration_seconds',
    'How long the last backup this node took lasted.',
  );
  const failures = counter(deps.metrics, 'vigil_backup_failures_total', 'Backups that failed, by reason.', ['reason']);
  const pruned = counter(deps.metrics, 'vigil_backup_pruned_total', 'Backups removed by retention.');
  // Registered now (counted by createBackup) so that the series exists before the first backup.
  cleanupFailuresCounter(deps.metrics);
  let running: Promise<Manifest> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let nextAt: number | undefined;
  let lastGoodAt = 0;
  let startedAt = 0;
  let lastFailure: string | undefined;
  let stopped = true;

  const refreshLastGood = () => {
    const complete = listBackups(dir).filter((e) => e.manifest);
    const last = complete[complete.length - 1]?.manifest;
    lastGoodAt = last ? Date.parse(last.cut_at) : 0;
    lastSuccess.set(lastGoodAt / 1000);
  };

  /**
   * Drops the databases a backup opens over its freeze to count it (see frozen.ts), left behind when the
   * process stopped during a count (the engine keeps them in its metadata across starts), and the freezes
   * of backups that did not end.
   */
  async function dropLeftoverChecks(): Promise<void> {
    try {
      const rows = await deps.store.query<{ name: string }>(
        `SELECT name FROM system.databases WHERE startsWith(name, {prefix:String})`,
        { prefix: CHECK_DATABASE_PREFIX },
      );
      for (const { name } of rows) await deps.store.exec(`DROP DATABASE IF EXISTS \`${name}\` SYNC`);
      const freezes = await removeLeftoverFreezes(deps.store);
      if (freezes.length > 0) log.info({ freezes }, 'Removed the frozen parts left by an interrupted backup.');
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'Could not remove what an interrupted backup left.');
    }
  }

  async function prune(): Promise<void> {
    const plan = planPrune(listBackups(dir), {
      keepLast: config.keep_last,
      keepDays: config.keep_days,
      now: Date.now(),
    });
    for (const id of plan.remove) {
      await rm(join(dir, id), { recursive: true, force: true });
      pruned.inc();
      log.info({ backup: id }, 'Retention removed a backup.');
    }
  }

  async function run(full: boolean): Promise<Manifest> {
    try {
      const manifest = await createBackup(
        {
          dir,
          dataDir: deps.dataDir,
          nodeId: deps.nodeId,
          store: deps.store,
          db: deps.db,
          config: deps.vigilConfig,
          includeSecrets: config.include_secrets,
          maxChain: config.max_chain,
          existing: listBackups(dir),
          logger: log,
          metrics: deps.metrics,
        },
        { full },
      );
      lastFailure = undefined;
      lastSize.set(manifest.size_bytes);
      lastDuration.set(manifest.duration_ms / 1000);
      refreshLastGood();
      log.info(
        {
          backup: manifest.id,
          kind: manifest.kind,
          base: manifest.base,
          events: manifest.engine.events.count,
          bytes: manifest.size_bytes,
          ms: manifest.duration_ms,
        },
        'Backup complete.',
      );
      await prune().catch((err: unknown) => {
        failures.inc({ reason: 'prune' });
        log.error({ err: errorMessage(err) }, 'Retention failed to remove a backup.');
      });
      return manifest;
    } catch (err) {
      failures.inc({ reason: err instanceof BackupError ? err.reason : 'other' });
      lastFailure = errorMessage(err);
      log.error({ err: lastFailure }, 'Backup failed.');
      throw err;
    }
  }

  function create(opts: { full?: boolean } = {}): Promise<Manifest> {
    if (stopped)
      return Promise.reject(new VigilError('backup_stopped', 'backups are not running on this node', { status: 503 }));
    if (running) {
      return Promise.reject(
        new VigilError('backup_running', 'a backup is already running on this node; try again when it ends', {
          status: 409,
          retryable: true,
        }),
      );
    }
    running = run(opts.full ?? false).finally(() => {
      running = undefined;
    });
    return running;
  }

  function arm(): void {
    if (!schedule || stopped) return;
    nextAt = schedule.next(Date.now());
    timer = setTimeout(
      () => {
        create().catch(() => {
          // Counted and logged by run(); the next run comes on schedule.
        });
        arm();
      },
      Math.max(0, Math.min(nextAt - Date.now(), 2 ** 31 - 1)),
    );
    timer.unref();
  }

  return {
    name: 'backup',
    async start() {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      stopped = false;
      startedAt = Date.now();
      refreshLastGood();
      await dropLeftoverChecks();
      arm();
      if (schedule)
        log.info({ dir, schedule: schedule.text, next: new Date(nextAt ?? 0).toISOString() }, 'Backups are scheduled.');
    },
    async stop(deadline) {
      stopped = true;
      if (timer) clearTimeout(timer);
      const pending = running;
      if (pending) {
        // Only waited for: a failure of the running backup is counted and logged by run(), and answered to its caller.
        await settleBy(
          pending.then(
            () => undefined,
            () => undefined,
          ),
          deadline,
        );
      }
    },
    health(): ComponentHealth {
      // Readiness never depends on backups; an old last backup is a warning in the detail.
      if (lastFailure) return { ok: true, detail: `warning: the last backup failed: ${lastFailure}` };
      if (schedule) {
        const period = schedule.periodMs(Date.now());
        // A node that never took one is overdue two periods after its start, not at once.
        const age = Date.now() - (lastGoodAt || startedAt);
        if (age > 2 * period) {
          const last = lastGoodAt ? new Date(lastGoodAt).toISOString() : 'never';
          return {
            ok: true,
            detail: `warning: the last good backup (${last}) is older than twice the schedule (${schedule.text})`,
          };
        }
      }
      return { ok: true };
    },
    create,
    list: () => listBackups(dir).map(summarize),
  };
}
