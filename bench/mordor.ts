/**
 * The Mordor Windows datasets as benchmark input: the zips of /work/shared/datasets/mordor-windows unpacked
 * once under `.bench/mordor/`, then read back as JSON lines in a stable order (sorted paths, file order).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { BENCH_DIR, progress, ROOT } from './common.ts';

/** Where the zips are: beside the checkout, or beside a worktree's parent; `VIGIL_BENCH_MORDOR` overrides it. */
export const MORDOR_ZIPS =
  process.env.VIGIL_BENCH_MORDOR ??
  [join(ROOT, '../shared/datasets/mordor-windows'), join(ROOT, '../../shared/datasets/mordor-windows')].find((d) =>
    existsSync(d),
  ) ??
  join(ROOT, '../shared/datasets/mordor-windows');

/** Where they are unpacked: one folder per zip, marked complete by a `.unpacked` file. */
export const MORDOR_DIR = join(BENCH_DIR, 'mordor');

function walk(dir: string, keep: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== '__MACOSX') out.push(...walk(p, keep));
    } else if (keep(name)) out.push(p);
  }
  return out;
}

/** Unpacks every zip not unpacked yet (with `unzip`); returns the JSON files in reading order. */
export function unpackMordor(): string[] {
  const zips = walk(MORDOR_ZIPS, (n) => n.endsWith('.zip'));
  if (zips.length === 0) throw new Error(`no Mordor zips under ${MORDOR_ZIPS}`);
  let unpacked = 0;
  for (const zip of zips) {
    const dest = join(MORDOR_DIR, relative(MORDOR_ZIPS, zip).replace(/\.zip$/, ''));
    const marker = join(dest, '.unpacked');
    if (existsSync(marker)) continue;
    rmSync(dest, { recursive: true, force: true });
    mkdirSync(dest, { recursive: true });
    if (statSync(zip).size > 0) {
      try {
        execFileSync('unzip', ['-q', '-o', zip, '-x', '__MACOSX/*', '-d', dest], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
      } catch (err) {
        // A damaged archive contributes what unzip could extract; the benchmark counts events, not zips.
        progress(`unzip ${zip} failed, using what it extracted: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    writeFileSync(marker, '');
    unpacked++;
  }
  if (unpacked > 0) progress(`unpacked ${unpacked} Mordor zips into ${MORDOR_DIR}`);
  return walk(MORDOR_DIR, (n) => n.endsWith('.json') && !n.startsWith('._'));
}

/**
 * The events as JSON lines (Buffers sliced from each file, no trailing CR), at most `limit` of them. Lines
 * that are not a whole JSON object at a glance (a truncated last line in a few archives) are skipped.
 */
export function* mordorLines(limit = Number.POSITIVE_INFINITY): Generator<Buffer> {
  let n = 0;
  for (const file of unpackMordor()) {
    const data = readFileSync(file);
    let start = 0;
    while (start < data.length) {
      let end = data.indexOf(0x0a, start);
      if (end < 0) end = data.length;
      let stop = end;
      if (stop > start && data[stop - 1] === 0x0d) stop--;
      if (stop > start && data[start] === 0x7b && data[stop - 1] === 0x7d) {
        yield data.subarray(start, stop);
        if (++n >= limit) return;
      }
      start = end + 1;
    }
  }
}
