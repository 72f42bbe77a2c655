/**
 * The data directory holds every tenant's events, password hashes, session and API key hashes, the admin
 * token and the rules: on a shared host nobody but Vigil's user may read it. Vigil creates everything with a
 * umask of 077 (files 0600, folders 0700) and keeps the data directory itself at 0700.
 */
import { chmodSync, lstatSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from './logger.ts';

/** The umask of every Vigil process: new files are 0600 and new folders 0700 (PGlite asks for 0666, chdb 0644). */
const PRIVATE_UMASK = 0o077;

/** What securing the data directory did. */
export interface DataDirResult {
  /** The directory did not exist and was created 0700. */
  readonly created: boolean;
  /** The permission bits it had before it was tightened to 0700, when it allowed group or others anything. */
  readonly previousMode?: number;
}

/** Sets the process umask to PRIVATE_UMASK; answers the previous one. */
export function usePrivateUmask(): number {
  return process.umask(PRIVATE_UMASK);
}

/**
 * Creates `dir` 0700, or tightens an existing one that group or others may enter or read to 0700 with a
 * warning (the files already inside keep their modes, but nobody else can reach them through it).
 */
export function secureDataDir(dir: string, logger?: Pick<Logger, 'warn'>): DataDirResult {
  let mode: number;
  try {
    mode = statSync(dir).mode & 0o7777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // mkdir applies the umask: an explicit chmod holds whatever umask the caller has.
    chmodSync(dir, 0o700);
    return { created: true };
  }
  if ((mode & 0o077) === 0) return { created: false };
  chmodSync(dir, 0o700);
  logger?.warn(
    { dir, previous_mode: `0${mode.toString(8)}`, mode: '0700' },
    'The data directory was open to other users of this host; it is now 0700.',
  );
  return { created: false, previousMode: mode };
}

/**
 * Takes group and other permissions off every file and folder under `dir` (and `dir` itself); symbolic
 * links are left alone. For what a library writes with modes of its own: PGlite's file system (Emscripten's
 * NODEFS) sets the modes of its in-memory files on disk, 0666 whatever the umask. Answers how many it changed.
 */
export function makePrivate(dir: string): number {
  let changed = 0;
  const visit = (p: string): void => {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) return;
    const mode = st.mode & 0o7777;
    if (mode & 0o077) {
      chmodSync(p, mode & 0o700);
      changed++;
    }
    if (st.isDirectory()) for (const name of readdirSync(p)) visit(join(p, name));
  };
  visit(dir);
  return changed;
}
