import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { EventStore } from '../store/index.ts';
import { freezeEngine, removeLeftoverFreezes } from './frozen.ts';

const root = mkdtempSync(join(tmpdir(), 'vigil-frozen-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** An engine that lists `tables` (in that order) and records each statement with the time it ran. */
function fakeStore(tables: string[]) {
  const ran: { sql: string; at: number }[] = [];
  const store = {
    query: async (sql: string) => {
      if (sql.includes('system.disks')) return [{ path: `${root}/` }];
      if (sql.includes('system.tables')) {
        return tables.map((name) => ({ name, engine: 'ReplacingMergeTree', data_paths: [`${root}/store/${name}/`] }));
      }
      return [{ statement: `CREATE TABLE ${sql.split(' ').at(-1)}` }];
    },
    exec: async (sql: string) => {
      ran.push({ sql, at: Date.now() });
      await new Promise((r) => setTimeout(r, 5));
    },
  } as unknown as EventStore;
  return { store, ran };
}

test('the events table is frozen last, after the cut; every table that speaks of events before it', async () => {
  const { store, ran } = fakeStore(['alert_fences', 'alerts', 'events', 'positions', 'stream_batches']);
  const frozen = await freezeEngine(store, '20261206T120000000Z-00aa');
  const order = ran.map((r) => /ALTER TABLE vigil\.`(\w+)` FREEZE WITH NAME 'vigil_backup_\w+'/.exec(r.sql)?.[1]);
  assert.equal(order.at(-1), 'events');
  assert.deepEqual(order.slice(0, -1).sort(), ['alert_fences', 'alerts', 'positions', 'stream_batches']);
  // Fences after alerts: a fence is written before its alerts, so the backup holds the fence of every alert.
  assert.ok(order.indexOf('alerts') < order.indexOf('alert_fences'));
  const eventsAt = ran.at(-1)?.at ?? 0;
  assert.ok(frozen.cutAt <= eventsAt, 'the cut is read before the events are frozen');
  assert.ok(frozen.cutAt >= (ran.at(-2)?.at ?? 0), 'and after every other table is');
  assert.deepEqual(
    frozen.tables.map((t) => t.parts),
    [[], [], [], [], []],
    'tables without parts freeze to nothing',
  );
});

test('leftover freezes of backups are removed, and nothing else under shadow/', async () => {
  const { store } = fakeStore([]);
  mkdirSync(join(root, 'shadow', 'vigil_backup_20261206T120000000Z_00bb', 'store'), { recursive: true });
  mkdirSync(join(root, 'shadow', 'someone_else'), { recursive: true });
  writeFileSync(join(root, 'shadow', 'increment.txt'), '1');
  assert.deepEqual(await removeLeftoverFreezes(store), ['vigil_backup_20261206T120000000Z_00bb']);
  assert.equal(existsSync(join(root, 'shadow', 'vigil_backup_20261206T120000000Z_00bb')), false);
  assert.ok(existsSync(join(root, 'shadow', 'someone_else')));
});
