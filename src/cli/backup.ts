import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type BackupSummary, checkBackupId, restoreBackup, verifyBackup } from '../backup/index.ts';
import { listBackups } from '../backup/manifest.ts';
import { summarize } from '../backup/index.ts';
import { VERIFIED_FILE } from '../backup/manifest.ts';
import { SQL_MIGRATIONS } from '../app/migrations.ts';
import { loadConfig } from '../config/load.ts';
import { errorMessage, VigilError } from '../lib/errors.ts';
import { apiTarget } from './client.ts';

export const BACKUP_USAGE = `Usage: vigil backup <create|list|verify|restore> [options]

  create [--full] [--url URL] [--token T]
      asks the running node for a backup into its backup.dir (POST /admin/backups) and prints its id;
      incremental on the last one unless --full (or backup.max_chain is reached)
  list [--json] [--dir DIR] [--config FILE]
      the backups in backup.dir (offline): id, kind, base, size, cut time, events, verified
  verify <id> [--dir DIR] [--config FILE]
      re-reads every file of the backup and of its bases against the manifests (offline);
      exits 1 naming each bad file
  restore <id> --data-dir FOLDER [--force] [--postgres-url URL] [--dir DIR] [--config FILE]
      rebuilds a node's data folder from the backup (offline, Vigil stopped); the folder must be new or
      empty unless --force, which replaces the events, database, rules and ingest keys in it;
      --postgres-url (or VIGIL_RESTORE_POSTGRES_URL) loads the SQL state into that empty PostgreSQL
      database instead of the folder's PGlite

backup.dir comes from --dir, else VIGIL_BACKUP__DIR or the configuration file (--config or VIGIL_CONFIG).
`;

/** Flags of `vigil backup`. */
export interface BackupFlags {
  full?: boolean;
  json?: boolean;
  force?: boolean;
  dir?: string;
  config?: string;
  'data-dir'?: string;
  'postgres-url'?: string;
  url?: string;
  token?: string;
}

function backupDir(flags: BackupFlags): string {
  if (flags.dir) return resolve(flags.dir);
  return resolve(loadConfig({ file: flags.config }).backup.dir);
}

/** `vigil backup ...`: returns the exit code. */
export async function backupCommand(args: string[], flags: BackupFlags): Promise<number> {
  const [sub, id, ...extra] = args;
  const fail = (message: string, code = 2) => {
    process.stderr.write(`vigil backup: ${message}\n`);
    return code;
  };
  if (extra.length > 0) return fail(`unexpected argument '${extra[0]}'\n\n${BACKUP_USAGE}`);
  try {
    switch (sub) {
      case 'create':
        return await create(flags);
      case 'list':
        return list(backupDir(flags), flags.json ?? false);
      case 'verify':
        return await verify(backupDir(flags), checkBackupId(id));
      case 'restore': {
        const backupId = checkBackupId(id);
        if (!flags['data-dir']) return fail('restore needs --data-dir FOLDER (the data folder to rebuild)');
        const r = await restoreBackup(backupDir(flags), backupId, flags['data-dir'], {
          force: flags.force,
          migrations: SQL_MIGRATIONS,
          postgresUrl: flags['postgres-url'] ?? process.env.VIGIL_RESTORE_POSTGRES_URL,
        });
        process.stdout.write(
          `restored ${r.id} into ${r.dataDir}: ${r.events} events, ${Object.keys(r.postgres).length} database tables, in ${r.duration_ms} ms\n`,
        );
        return 0;
      }
      default:
        return fail(sub ? `unknown subcommand '${sub}'\n\n${BACKUP_USAGE}` : BACKUP_USAGE);
    }
  } catch (err) {
    const code = err instanceof VigilError ? ` (${err.code})` : '';
    return fail(`${errorMessage(err)}${code}`, 1);
  }
}

async function create(flags: BackupFlags): Promise<number> {
  const target = apiTarget(flags);
  let res: Response;
  try {
    res = await fetch(`${target.url}/admin/backups`, {
      method: 'POST',
      headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ full: flags.full ?? false }),
    });
  } catch (err) {
    throw new Error(
      `cannot reach Vigil at ${target.url} (${errorMessage(err)}): is it running? set --url or VIGIL_URL`,
    );
  }
  const body = (await res.json()) as Record<string, unknown> & { error?: { message: string; code: string } };
  if (!res.ok) throw new Error(`${res.status}: ${body.error?.message ?? 'the backup failed'} (${body.error?.code})`);
  if (flags.json) process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
  else {
    const events = body.events as { count: number };
    process.stderr.write(
      `${body.kind} backup${body.base ? ` on ${body.base}` : ''}: ${events.count} events, ${body.size_bytes} bytes, ${body.duration_ms} ms\n`,
    );
    process.stdout.write(`${body.id}\n`);
  }
  return 0;
}

function list(dir: string, json: boolean): number {
  const rows: BackupSummary[] = listBackups(dir).map(summarize);
  if (json) {
    process.stdout.write(`${JSON.stringify({ dir, backups: rows }, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(
    'ID                          KIND         BASE                        SIZE        CUT                       EVENTS     VERIFIED\n',
  );
  for (const r of rows) {
    const verified = r.verified ? (r.verified.ok ? `ok ${r.verified.at}` : 'FAILED') : 'no';
    process.stdout.write(
      [
        r.id.padEnd(27),
        (r.kind ?? r.state).padEnd(12),
        (r.base ?? '-').padEnd(27),
        String(r.size_bytes ?? '-').padEnd(11),
        (r.cut_at ?? '-').padEnd(25),
        String(r.events ?? '-').padEnd(10),
        verified,
      ].join(' ') + '\n',
    );
  }
  return 0;
}

async function verify(dir: string, id: string): Promise<number> {
  const result = await verifyBackup(dir, id);
  const ok = result.problems.length === 0;
  const record = {
    at: new Date().toISOString(),
    ok,
    problem: ok ? undefined : `${result.problems[0].file}: ${result.problems[0].detail}`,
  };
  try {
    writeFileSync(join(dir, id, VERIFIED_FILE), `${JSON.stringify(record)}\n`);
  } catch {
    // A read-only backup folder can be verified all the same.
  }
  for (const p of result.problems) process.stderr.write(`BAD ${p.problem} ${p.file}: ${p.detail}\n`);
  if (!ok) {
    process.stderr.write(`backup ${id} is damaged: ${result.problems.length} problems\n`);
    return 1;
  }
  process.stdout.write(
    `backup ${id} is whole: ${result.files} files, ${result.bytes} bytes, chain ${result.chain.join(' <- ')}\n`,
  );
  return 0;
}
