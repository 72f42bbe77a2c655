import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { exportDatabase, importDatabase } from '../../src/backup/postgres.ts';
import { type Db, type Migration, migrate, openPglite, openPostgres } from '../../src/db/index.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import { type PostgresServer, startPostgres } from '../harness/postgres.ts';

/** Tables with the types Vigil's state uses and some it may: a foreign key, sequences, NULLs. */
const SCHEMA: Migration = {
  id: 'backuptest/0001_init',
  statements: [
    `CREATE TABLE parent (
       id bigserial PRIMARY KEY, name text NOT NULL, data jsonb, blob bytea, tags text[],
       at timestamptz, amount numeric(20, 6), flag boolean, big bigint
     )`,
    // "child" sorts before "parent": the load must not check the foreign key row by row.
    'CREATE TABLE child (id bigserial PRIMARY KEY, parent_id bigint NOT NULL REFERENCES parent(id), note text)',
  ],
};

async function fill(db: Db): Promise<void> {
  await migrate(db, [SCHEMA]);
  for (let i = 0; i < 30; i++) {
    await db.query(
      `INSERT INTO parent (name, data, blob, tags, at, amount, flag, big) VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8)`,
      [
        `p'${i}"\\ \u00e9 \u{1F600}`,
        JSON.stringify({ i, nested: { list: [1, 'two', null] }, text: 'line\nbreak' }),
        i % 3 === 0 ? null : Buffer.from([0, 1, 2, 255, i]),
        i % 2 === 0 ? ['a', 'b,c', 'd"e'] : null,
        new Date(Date.UTC(2026, 11, 6, 3, i, 7, 123)),
        `${i}.000123`,
        i % 2 === 0,
        2 ** 52 + i,
      ],
    );
  }
  for (let i = 1; i <= 30; i += 3) await db.query('INSERT INTO child (parent_id, note) VALUES ($1, $2)', [i, `c${i}`]);
  // A deleted row leaves a gap: the restored sequence must continue after the gap, not after max(id).
  await db.query(`DELETE FROM parent WHERE id = 30`);
}

async function dump(db: Db): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const t of ['parent', 'child']) {
    out[t] = (await db.query<{ j: string }>(`SELECT row_to_json(x)::text AS j FROM ${t} x ORDER BY id`)).map(
      (r) => r.j,
    );
  }
  return out;
}

let server: PostgresServer;
const folders: string[] = [];
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
  for (const f of folders) rmSync(f, { recursive: true, force: true });
});

const pg = async () =>
  openPostgres(
    { url: await server.createDatabase(), poolMax: 2, connectTimeoutMs: 5000, statementTimeoutMs: 10000 },
    silentLogger,
  );

for (const [from, to] of [
  ['PostgreSQL', 'PGlite'],
  ['PGlite', 'PostgreSQL'],
  ['PostgreSQL', 'PostgreSQL'],
] as const) {
  test(`the SQL export of ${from} loads into ${to} equal, row by row and sequence by sequence`, {
    timeout: 60_000,
  }, async () => {
    const source = from === 'PGlite' ? await openPglite(undefined) : await pg();
    const target = to === 'PGlite' ? await openPglite(undefined) : await pg();
    const folder = mkdtempSync(join(tmpdir(), 'vigil-backup-sql-'));
    folders.push(folder);
    try {
      await fill(source);
      const exported = await exportDatabase(source, folder);
      assert.deepEqual(exported.tables, { child: 10, parent: 29, schema_migrations: 1 });
      assert.deepEqual(exported.migrations, [SCHEMA.id]);
      await migrate(target, [SCHEMA]);
      const loaded = await importDatabase(target, folder, Object.keys(exported.tables).sort());
      assert.deepEqual(loaded, exported.tables);
      assert.deepEqual(await dump(target), await dump(source));
      for (const db of [source, target]) {
        const [row] = await db.query<{ id: number }>(`INSERT INTO parent (name) VALUES ('next') RETURNING id`);
        assert.equal(Number(row.id), 31, `${db === source ? from : to}: the sequence continues after the gap`);
      }
    } finally {
      await source.close();
      await target.close();
    }
  });
}
