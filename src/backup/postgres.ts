import { createReadStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Db, Queryable } from '../db/index.ts';

/** The export of Vigil's SQL state inside a backup: one JSON-lines file per table, and the sequences. */
export const POSTGRES_FOLDER = 'postgres';
const SEQUENCES_FILE = 'sequences.json';
/** Rows sent in one INSERT at restore. */
const LOAD_ROWS = 1000;

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** What an export holds: rows per table and the applied migrations (the schema version). */
export interface PostgresExport {
  tables: Record<string, number>;
  migrations: string[];
}

/**
 * Exports every table of Vigil's schema, in one REPEATABLE READ transaction (one snapshot: an incident and
 * its alerts, a user and their API keys are seen together), as `row_to_json` lines: PostgreSQL's own text of
 * each value, read back at restore by `json_populate_recordset`, so every type round-trips. Works the same
 * on PGlite and on PostgreSQL. Sequences are not transactional; their values are read in the same pass.
 */
export async function exportDatabase(db: Db, folder: string): Promise<PostgresExport> {
  const out = join(folder, POSTGRES_FOLDER);
  await mkdir(out, { recursive: true });
  return db.transaction(async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const tables = await tx.query<{ name: string }>(
      `SELECT table_name AS name FROM information_schema.tables
        WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`,
    );
    const counts: Record<string, number> = {};
    for (const { name } of tables) {
      const rows = await tx.query<{ j: string }>(`SELECT row_to_json(t)::text AS j FROM ${quote(name)} t`);
      await writeFile(join(out, `${name}.jsonl`), rows.map((r) => `${r.j}\n`).join(''));
      counts[name] = rows.length;
    }
    const sequences = await readSequences(tx);
    await writeFile(join(out, SEQUENCES_FILE), `${JSON.stringify(sequences, null, 1)}\n`);
    const migrations = tables.some((t) => t.name === 'schema_migrations')
      ? (await tx.query<{ id: string }>('SELECT id FROM schema_migrations ORDER BY id')).map((r) => r.id)
      : [];
    return { tables: counts, migrations };
  });
}

interface SequenceValue {
  name: string;
  last_value: number;
  is_called: boolean;
}

async function readSequences(tx: Queryable): Promise<SequenceValue[]> {
  const names = await tx.query<{ name: string }>(
    `SELECT sequence_name AS name FROM information_schema.sequences WHERE sequence_schema = current_schema() ORDER BY 1`,
  );
  const out: SequenceValue[] = [];
  for (const { name } of names) {
    const [row] = await tx.query<{ last_value: number; is_called: boolean }>(
      `SELECT last_value, is_called FROM ${quote(name)}`,
    );
    out.push({ name, last_value: Number(row.last_value), is_called: row.is_called });
  }
  return out;
}

/**
 * Loads an export into `db`, whose schema is already migrated to the export's migrations and holds no
 * rows of Vigil's (a new database). Foreign keys are not checked while loading
 * (session_replication_role = replica), since the tables come in name order; the export is one snapshot,
 * so they hold once it is in. Returns the rows loaded per table.
 */
export async function importDatabase(
  db: Db,
  folder: string,
  tables: readonly string[],
): Promise<Record<string, number>> {
  const from = join(folder, POSTGRES_FOLDER);
  const sequences = JSON.parse(await readFile(join(from, SEQUENCES_FILE), 'utf8')) as SequenceValue[];
  return db.transaction(async (tx) => {
    await tx.query('SET LOCAL session_replication_role = replica');
    const counts: Record<string, number> = {};
    for (const name of tables) {
      // Made again by the migrations with the same ids and checksums: the backup's own rows replace them.
      if (name === 'schema_migrations') await tx.query('DELETE FROM schema_migrations');
      let batch: string[] = [];
      let n = 0;
      const flush = async () => {
        if (batch.length === 0) return;
        await tx.query(
          `INSERT INTO ${quote(name)} SELECT * FROM json_populate_recordset(NULL::${quote(name)}, $1::json)`,
          [`[${batch.join(',')}]`],
        );
        n += batch.length;
        batch = [];
      };
      const lines = createInterface({ input: createReadStream(join(from, `${name}.jsonl`)), crlfDelay: Infinity });
      for await (const line of lines) {
        if (line === '') continue;
        batch.push(line);
        if (batch.length >= LOAD_ROWS) await flush();
      }
      await flush();
      counts[name] = n;
    }
    for (const s of sequences) {
      await tx.query('SELECT setval($1, $2, $3)', [quote(s.name), s.last_value, s.is_called]);
    }
    return counts;
  });
}

/** Rows of every table of Vigil's schema in `db`: what a restore compares with the manifest. */
export async function countRows(db: Queryable, tables: readonly string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of tables) {
    const [row] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quote(t)}`);
    out[t] = Number(row.n);
  }
  return out;
}
