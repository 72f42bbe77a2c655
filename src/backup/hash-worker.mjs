// A worker thread of hash-files.ts: reads each file it is sent, hashes it (SHA-256) and, when asked, writes
// what it read to a new file (`copyTo`: one read serves the copy and its sum) or flushes it to disk with the
// descriptor it read through (folders and files of known sum are only flushed). Plain JavaScript: it runs
// without the TypeScript loader.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

// 4 MiB reads: one syscall per 4 MiB, and few enough turns that hashing, not reading, takes the time.
const buffer = Buffer.allocUnsafe(4 << 20);

parentPort.on('message', (job) => {
  let fd;
  let out;
  try {
    fd = openSync(job.path, 'r');
    if (!job.hash) {
      // A folder, or a file whose sum is known: only flushed.
      const size = fstatSync(fd).size;
      if (job.sync) fsyncSync(fd);
      parentPort.postMessage({ id: job.id, size });
      return;
    }
    // 'wx': a copy never overwrites a file; owner only, as the backup's folder.
    if (job.copyTo) out = openSync(job.copyTo, 'wx', 0o600);
    const hash = createHash('sha256');
    let size = 0;
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      const chunk = buffer.subarray(0, n);
      hash.update(chunk);
      if (out !== undefined) {
        for (let at = 0; at < n; ) at += writeSync(out, chunk, at, n - at);
      }
      size += n;
    }
    if (size !== fstatSync(fd).size) throw new Error(`${job.path} changed size while it was read`);
    if (job.sync) fsyncSync(out ?? fd);
    parentPort.postMessage({ id: job.id, size, sha256: hash.digest('hex') });
  } catch (err) {
    parentPort.postMessage({ id: job.id, error: err instanceof Error ? err.message : String(err) });
  } finally {
    if (fd !== undefined) closeSync(fd);
    if (out !== undefined) closeSync(out);
  }
});
