import { createHash } from 'node:crypto';
import { VigilError } from '../lib/errors.ts';
import type { Db } from './types.ts';

/**
 * One schema change: an id that sorts in apply order within its component (`incidents/0001_init`) and
 * its statements, one SQL statement each (PGlite's extended protocol runs one statement per query).
 * An applied migration is never edited: add a new one instead (the checksum check refuses edits).
 */
export interface Migration {
  id: string;
  statements: readonly string[];
}

/** Arbitrary, fixed key of the advisory lock that serializes migrations across nodes. */
const MIGRATION_LOCK_KEY = 7_146_001;

function checksum(m: Migration): string {
  return createHash('sha256').update(m.statements.join('\n;\n')).digest('hex');
}

/**
 * Applies the migrations not applied yet, in the order given, in one transaction holding an advisory
 * lock, so two nodes starting together apply each migration once and either all of them land or none.
 * Returns the ids applied now. Refuses to start when an applied migration's text has changed.
 */
export async function migrate(db: Db, migrations: readonly Migration[]): Promise<string[]> {
  const ids = new Set<string>();
  for (const m of migrations) {
    if (ids.has(m.id)) throw new VigilError('migration_duplicate', `migration ${m.id} is listed twice`);
    ids.add(m.id);
  }
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await tx.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         id text PRIMARY KEY,
         checksum text NOT NULL,
         applied_at bigint NOT NULL
       )`,
    );
    const rows = await tx.query<{ id: string; checksum: string }>('SELECT id, checksum FROM schema_migrations');
    const applied = new Map(rows.map((r) => [r.id, r.checksum]));
    const done: string[] = [];
    for (const m of migrations) {
      const sum = checksum(m);
      const before = applied.get(m.id);
      if (before !== undefined) {
        if (before !== sum) {
          throw new VigilError(
            'migration_changed',
            `migration ${m.id} was applied with other statements than this version has; add a new migration instead of editing one`,
          );
        }
        continue;
      }
      for (const sql of m.statements) await tx.query(sql);
      await tx.query('INSERT INTO schema_migrations (id, checksum, applied_at) VALUES ($1, $2, $3)', [
        m.id,
        sum,
        Date.now(),
      ]);
      done.push(m.id);
    }
    return done;
  });
}
