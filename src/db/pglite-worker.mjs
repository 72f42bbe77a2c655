// The PGlite thread: PostgreSQL compiled to WebAssembly runs here, off the main event loop. Its work is
// synchronous WebAssembly: creating a data folder (initdb) took 11 to 14.6 s of CPU on each node of the fault
// suite's cluster, during which the main thread of a node that ran it answered nothing and renewed no lease.
// Plain JavaScript: a worker thread does not inherit the tsx loader of the main thread (Node 20).
// Messages in: {id, op: 'init' | 'open' | 'query' | 'begin' | 'end' | 'close', ...}; out: {id, ok, rows | error}.

import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parentPort } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';

/**
 * PostgreSQL's settings for this embedded database. PGlite touches all of shared_buffers when it opens (128 MB
 * by default): 16 MB took 120 MB off the resident size of an open instance (289 -> 170 MB) and suits what it
 * holds (incidents, users, sessions); its files are read through the system's page cache beyond that. Given
 * on the command line: PGlite's `postgresqlconf` would replace the folder's postgresql.conf for good.
 */
const CONF = { startParams: [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB'] };

/** @type {PGlite | undefined} */
let pg;
/** Open transactions: tx id -> its PGlite transaction and how to end it. */
const txs = new Map();

/**
 * Creates a PGlite cluster in `<dataDir>.init` and renames it to `dataDir` once complete, so a process
 * killed during initdb leaves no half-made data folder that would never open.
 * @param {string} dataDir
 */
async function initPglite(dataDir) {
  const tmp = `${dataDir}.init`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(dirname(tmp), { recursive: true });
  const fresh = await PGlite.create(tmp, CONF);
  await fresh.close();
  rmSync(dataDir, { recursive: true, force: true });
  renameSync(tmp, dataDir);
}

/** @param {string | undefined} dataDir */
async function open(dataDir) {
  if (dataDir && !existsSync(join(dataDir, 'PG_VERSION'))) await initPglite(dataDir);
  pg = await PGlite.create(dataDir, CONF);
}

/** Rejects a transaction's callback so that PGlite rolls it back; not an error when `end` asked for it. */
const ROLLBACK = new Error('rollback');

/**
 * Starts a transaction that stays open until its `end` message. PGlite's own transaction() holds its lock
 * meanwhile, so queries outside it wait, as they would in the main thread.
 * @param {number} tx
 */
function begin(tx) {
  const db = /** @type {PGlite} */ (pg);
  return new Promise((resolve, reject) => {
    let opened = false;
    // Settles once PGlite has committed (resolved) or rolled back (rejected).
    const done = db.transaction(
      (t) =>
        new Promise((commit, rollback) => {
          opened = true;
          txs.set(tx, { t, commit, rollback, done });
          resolve([]);
        }),
    );
    done.catch((err) => {
      if (!opened) reject(err);
    });
  });
}

/**
 * Commits or rolls back transaction `tx`; resolves once PGlite has, rejects when the COMMIT failed.
 * @param {number} tx
 * @param {boolean} commit
 */
async function end(tx, commit) {
  const entry = txs.get(tx);
  if (!entry) throw new Error(`no open transaction ${tx}`);
  txs.delete(tx);
  if (commit) {
    entry.commit(undefined);
    await entry.done;
  } else {
    entry.rollback(ROLLBACK);
    await entry.done.catch((/** @type {unknown} */ err) => {
      if (err !== ROLLBACK) throw err;
    });
  }
  return [];
}

/** @param {{op: string, dataDir?: string, sql?: string, params?: unknown[], tx?: number, commit?: boolean}} m */
async function handle(m) {
  if (m.op === 'open') {
    await open(m.dataDir);
    return [];
  }
  if (m.op === 'init') {
    if (m.dataDir && !existsSync(join(m.dataDir, 'PG_VERSION'))) await initPglite(m.dataDir);
    return [];
  }
  if (!pg) throw new Error('the PGlite thread has no open database');
  switch (m.op) {
    case 'query': {
      const q = m.tx === undefined ? pg : txs.get(m.tx)?.t;
      if (!q) throw new Error(`no open transaction ${m.tx}`);
      return (await q.query(/** @type {string} */ (m.sql), m.params)).rows;
    }
    case 'begin':
      return begin(/** @type {number} */ (m.tx));
    case 'end':
      return end(/** @type {number} */ (m.tx), m.commit === true);
    case 'close':
      if (!pg.closed) await pg.close();
      return [];
    default:
      throw new Error(`unknown operation ${m.op}`);
  }
}

parentPort?.on('message', (m) => {
  handle(m).then(
    (rows) => parentPort?.postMessage({ id: m.id, ok: true, rows }),
    (err) =>
      parentPort?.postMessage({
        id: m.id,
        ok: false,
        error: { message: err?.message ?? String(err), code: typeof err?.code === 'string' ? err.code : undefined },
      }),
  );
});
