import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackupEntry, Manifest } from './manifest.ts';
import { planPrune } from './prune.ts';

const DAY = 86_400_000;
const NOW = Date.parse('2026-12-06T00:00:00Z');

/** Backups given as [id, base or null, age in days]; ids sort in time order as real ones do. */
function entries(list: [string, string | null, number][], partial: string[] = []): BackupEntry[] {
  const byId = new Map<string, Manifest>();
  const out: BackupEntry[] = [];
  for (const [id, base, ageDays] of list) {
    const chain = base ? [...byId.get(base)!.chain, id] : [id];
    const manifest = { id, base, chain, cut_at: new Date(NOW - ageDays * DAY).toISOString() } as Manifest;
    byId.set(id, manifest);
    out.push({ id, manifest });
  }
  for (const id of partial) out.push({ id });
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

const cases: {
  name: string;
  list: [string, string | null, number][];
  partial?: string[];
  keepLast: number;
  keepDays: number;
  remove: string[];
}[] = [
  {
    name: 'keep_last 2 on a chain of incrementals keeps the whole chain',
    list: [
      ['a', null, 4],
      ['b', 'a', 3],
      ['c', 'b', 2],
      ['d', 'c', 1],
    ],
    keepLast: 2,
    keepDays: 0,
    remove: [],
  },
  {
    name: 'a new full backup frees the old chain once it is out of keep_last',
    list: [
      ['a', null, 5],
      ['b', 'a', 4],
      ['c', 'b', 3],
      ['d', null, 2],
      ['e', 'd', 1],
    ],
    keepLast: 2,
    keepDays: 0,
    remove: ['a', 'b', 'c'],
  },
  {
    name: 'keep_days keeps a recent chain beyond keep_last, with its bases',
    list: [
      ['a', null, 10],
      ['b', 'a', 3],
      ['c', null, 2],
      ['d', null, 1],
    ],
    keepLast: 1,
    keepDays: 4,
    remove: [],
  },
  {
    name: 'old full backups without dependants go',
    list: [
      ['a', null, 10],
      ['b', null, 9],
      ['c', null, 1],
    ],
    keepLast: 1,
    keepDays: 0,
    remove: ['a', 'b'],
  },
  {
    name: 'a partial folder goes',
    list: [['a', null, 1]],
    partial: ['b'],
    keepLast: 5,
    keepDays: 0,
    remove: ['b'],
  },
];

for (const c of cases) {
  test(`retention: ${c.name}`, () => {
    const plan = planPrune(entries(c.list, c.partial), { keepLast: c.keepLast, keepDays: c.keepDays, now: NOW });
    assert.deepEqual(plan.remove, c.remove);
    // Every kept backup's chain is kept.
    const kept = new Set(plan.keep.map((k) => k.id));
    for (const e of entries(c.list)) {
      if (kept.has(e.id)) for (const id of e.manifest!.chain) assert.ok(kept.has(id), `${id} needed by ${e.id}`);
    }
  });
}
