import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { VigilError } from '../lib/errors.ts';
import { partPath } from './frozen.ts';
import { hashFiles } from './hash-files.ts';
import { filesUnder, type Manifest, readManifest } from './manifest.ts';

/** What `verify` found wrong with one file of a backup. */
export interface VerifyProblem {
  backup: string;
  /** The file's path (absolute), or the backup's folder for a problem with the chain. */
  file: string;
  problem: 'missing' | 'size' | 'checksum' | 'unexpected' | 'chain';
  detail: string;
}

/** The result of verifying a backup and every backup it is incremental on. */
export interface VerifyResult {
  id: string;
  /** The backups read, the full one first. */
  chain: string[];
  files: number;
  bytes: number;
  problems: VerifyProblem[];
}

/**
 * Re-reads every file of backup `id` and of each backup in its chain against their manifests' sizes and
 * SHA-256 sums. Throws (`backup_partial`, not_found) when a manifest of the chain is missing; every other
 * difference is a problem in the result, each naming its file.
 */
export async function verifyBackup(dir: string, id: string): Promise<VerifyResult> {
  const chain: Manifest[] = [];
  for (let at: string | null = id; at !== null; ) {
    const m = readManifest(dir, at);
    if (m.id !== at) {
      throw new VigilError('backup_corrupt', `backup ${at}: its manifest names another backup (${m.id})`, {
        status: 409,
      });
    }
    chain.unshift(m);
    if (chain.length > 10_000) throw new VigilError('backup_corrupt', `backup ${id}: its chain of bases loops`);
    at = m.base;
  }
  const result: VerifyResult = { id, chain: chain.map((m) => m.id), files: 0, bytes: 0, problems: [] };
  const expectedChain = result.chain;
  const own = chain[chain.length - 1];
  if (own.chain.join(',') !== expectedChain.join(',')) {
    result.problems.push({
      backup: id,
      file: join(dir, id),
      problem: 'chain',
      detail: `the manifest lists the chain ${own.chain.join(' <- ')}, the bases found are ${expectedChain.join(' <- ')}`,
    });
  }
  // Every part the backup lists must be in the folder of the backup it names (format 2): a manifest that
  // places a part in a base which does not hold it could not be restored, however sound each file is.
  const byId = new Map(chain.map((m) => [m.id, new Set(m.files.map((f) => f.path))]));
  for (const [table, parts] of Object.entries(own.parts ?? {})) {
    for (const p of parts) {
      const sums = `${partPath(table, p.name)}/checksums.txt`;
      if (!byId.get(p.backup)?.has(sums)) {
        result.problems.push({
          backup: id,
          file: join(dir, p.backup, sums),
          problem: 'chain',
          detail: `the part ${table}/${p.name} is not in the files of backup ${p.backup}, where the manifest places it`,
        });
      }
    }
  }
  // Files present with the listed size are hashed together, on worker threads (see hash-files.ts); the
  // problems are listed in the order of the chain and of each manifest, the first one named by restore.
  const found: (VerifyProblem | { backup: string; path: string; sha256: string; size: number })[] = [];
  for (const m of chain) {
    const folder = join(dir, m.id);
    const listed = new Set(m.files.map((f) => f.path));
    for (const f of m.files) {
      const path = join(folder, f.path);
      if (!existsSync(path)) {
        found.push({ backup: m.id, file: path, problem: 'missing', detail: 'the file is missing' });
        continue;
      }
      const size = (await stat(path)).size;
      if (size !== f.size) {
        found.push({
          backup: m.id,
          file: path,
          problem: 'size',
          detail: `${size} bytes where the manifest says ${f.size}`,
        });
        continue;
      }
      found.push({ backup: m.id, path: `${m.id}/${f.path}`, sha256: f.sha256, size });
    }
    for (const f of await filesUnder(folder)) {
      if (!listed.has(f)) {
        found.push({
          backup: m.id,
          file: join(folder, f),
          problem: 'unexpected',
          detail: 'a file the manifest does not list',
        });
      }
    }
  }
  const toHash = found.filter((f) => 'path' in f);
  const sums = new Map(
    (
      await hashFiles(
        dir,
        toHash.map((f) => f.path),
      )
    ).map((s, i) => [toHash[i].path, s?.sha256]),
  );
  for (const f of found) {
    if (!('path' in f)) {
      result.problems.push(f);
      continue;
    }
    const sum = sums.get(f.path);
    if (sum !== f.sha256) {
      result.problems.push({
        backup: f.backup,
        file: join(dir, f.path),
        problem: 'checksum',
        detail: `SHA-256 ${sum} where the manifest says ${f.sha256}`,
      });
      continue;
    }
    result.files++;
    result.bytes += f.size;
  }
  return result;
}

/** Throws `backup_corrupt` naming the first bad file when `result` has problems. */
export function assertVerified(result: VerifyResult): void {
  const first = result.problems[0];
  if (!first) return;
  const more = result.problems.length > 1 ? ` (and ${result.problems.length - 1} more problems)` : '';
  throw new VigilError(
    'backup_corrupt',
    `backup ${result.id} is damaged: ${first.file}: ${first.detail}${more}; restore an older backup, or verify it for the full list`,
    { status: 409, details: { problems: result.problems.slice(0, 20) } },
  );
}
