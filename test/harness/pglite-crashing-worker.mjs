// PGlite's thread, as a test sees it die: the real worker, which exits (as a thread killed by an out-of-memory
// or a WebAssembly abort would) when asked to run `SELECT 'crash'`.
import { parentPort } from 'node:worker_threads';
import '../../src/db/pglite-worker.mjs';

parentPort?.on('message', (m) => {
  if (m.op === 'query' && m.sql === "SELECT 'crash'") process.exit(70);
});
