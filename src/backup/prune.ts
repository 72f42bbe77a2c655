import type { BackupEntry } from './manifest.ts';

/** What retention keeps and removes, and why each kept backup stays. */
export interface PrunePlan {
  keep: { id: string; why: 'keep_last' | 'keep_days' | 'base of a kept backup' | 'in progress' }[];
  remove: string[];
}

/**
 * Chooses the backups to remove: a complete backup stays when it is among the newest `keepLast`, or was cut
 * within `keepDays` days (0: no age rule), or is in the chain of one that stays (removing it would break that
 * incremental's restore). A partial folder (no manifest) is removed unless it is `inProgress`.
 */
export function planPrune(
  entries: readonly BackupEntry[],
  opts: { keepLast: number; keepDays: number; now: number; inProgress?: string },
): PrunePlan {
  const complete = entries.filter((e) => e.manifest);
  const why = new Map<string, PrunePlan['keep'][number]['why']>();
  for (const e of complete.slice(-opts.keepLast)) why.set(e.id, 'keep_last');
  if (opts.keepDays > 0) {
    const since = opts.now - opts.keepDays * 86_400_000;
    for (const e of complete) {
      if (!why.has(e.id) && Date.parse(e.manifest!.cut_at) >= since) why.set(e.id, 'keep_days');
    }
  }
  for (const e of complete) {
    if (!why.has(e.id)) continue;
    for (const base of e.manifest!.chain) if (!why.has(base)) why.set(base, 'base of a kept backup');
  }
  if (opts.inProgress) why.set(opts.inProgress, 'in progress');
  const keep: PrunePlan['keep'] = [];
  const remove: string[] = [];
  for (const e of entries) {
    const w = why.get(e.id);
    if (w) keep.push({ id: e.id, why: w });
    else remove.push(e.id);
  }
  return { keep, remove };
}
