// A worker thread of hash-files.ts. Each message gives it a list of jobs and a counter shared with the
// other threads: it takes the job the counter points at, adding one, until the counter is past the end, and
// answers a few jobs per message (the last one says it is done). A failed job is answered at once; when it
// stops the work (stopOnError) the thread moves the counter past the end, otherwise the others go on.
// For each job it reads the file, hashes it (SHA-256) and, when asked, writes what it read to a new file
// (`copyTo`: one read serves the copy and its sum) or flushes it to disk with the descriptor it read
// through (folders and files of known sum are only flushed). Plain JavaScript: it runs without the
// TypeScript loader.
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

// 4 MiB reads: one syscall per 4 MiB, and few enough turns that hashing, not reading, takes the time. The
// memory of a WebAssembly.Memory (64 pages of 64 KiB): V8 maps it from the OS, so it starts on a page, as
// O_DIRECT writes need (a Buffer's memory comes from malloc, 16 bytes past a page: EINVAL).
const buffer = Buffer.from(new WebAssembly.Memory({ initial: 64 }).buffer);

/**
 * Copies of files from this size on are written with O_DIRECT: from the buffer to the disk, past the page
 * cache. Why: the copy into the page cache was the largest cost of a backup (16% of its CPU samples, more
 * than SHA-256, perf over the 10M-event data set), and a backup's copy is not read back; measured on the
 * 3.5 GB of 40 parts of that data set (2-core machine, load 5 to 7): 4.3 to 6.9 CPU-s and 4.9 to 10 s with
 * O_DIRECT from 1 MiB on, 14 to 17 CPU-s and 12.6 to 16 s through the page cache, cp 8 CPU-s and 10.3 to
 * 10.9 s. Smaller files go through the page cache: a direct write waits for the disk, once per file.
 * Durability is unchanged: the backup flushes its folder (syncfs: the disk's cache, the files' sizes and
 * extents) before it writes its manifest.
 */
const DIRECT_MIN_BYTES = 1 << 20;
/** O_DIRECT writes go by whole blocks of this size (a multiple of any disk's logical block); the copy's end is cut with ftruncate. */
const DIRECT_BLOCK = 4096;
/** Cleared when the file system of the copies refuses O_DIRECT (tmpfs): the thread stops trying. */
let directWorks = true;

/** Answers kept before they are sent (an error is sent at once, so that the others stop early). */
const ANSWERS_PER_MESSAGE = 64;

parentPort.on('message', ({ jobs, next, stopOnError }) => {
  let answers = [];
  for (;;) {
    const at = Atomics.add(next, 0, 1);
    if (at >= jobs.length) break;
    const answer = run(jobs[at]);
    answers.push({ ...answer, at });
    // Past the end: no thread takes another job.
    if (answer.error !== undefined && stopOnError) Atomics.store(next, 0, jobs.length);
    if (answer.error !== undefined || answers.length >= ANSWERS_PER_MESSAGE) {
      parentPort.postMessage({ answers, done: false });
      answers = [];
    }
  }
  parentPort.postMessage({ answers, done: true });
});

function run(job) {
  let fd;
  let out;
  try {
    fd = openSync(job.path, 'r');
    if (!job.hash) {
      // A folder, or a file whose sum is known: only flushed.
      const size = fstatSync(fd).size;
      if (job.sync) fsyncSync(fd);
      return { id: job.id, size };
    }
    const expected = fstatSync(fd).size;
    let direct = job.copyTo !== undefined && directWorks && expected >= DIRECT_MIN_BYTES;
    // A copy never overwrites a file (O_EXCL, 'wx'); owner only, as the backup's folder.
    if (direct) {
      try {
        out = openSync(
          job.copyTo,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT,
          0o600,
        );
      } catch (err) {
        if (err.code !== 'EINVAL') throw err;
        directWorks = false;
        direct = false;
        // Some file systems (tmpfs before Linux 6.6) create the file, then refuse the flag: the file is ours
        // (one that was there already answers EEXIST first), opened again without the flag.
        out = openSync(job.copyTo, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
      }
    }
    if (job.copyTo && out === undefined) out = openSync(job.copyTo, 'wx', 0o600);
    let copied = copy(fd, out, direct);
    if (copied.refused) {
      // The file system took the flag but not the writes: the copy again, through the page cache.
      directWorks = false;
      closeSync(out);
      out = undefined;
      out = openSync(job.copyTo, 'w', 0o600);
      copied = copy(fd, out, false);
    }
    if (copied.size !== expected || copied.size !== fstatSync(fd).size) {
      throw new Error(`${job.path} changed size while it was read`);
    }
    if (job.sync) fsyncSync(out ?? fd);
    // Closed here, not only below: an error closing the copy is the job's.
    if (out !== undefined) closeSync(out);
    out = undefined;
    return { id: job.id, size: copied.size, sha256: copied.sha256 };
  } catch (err) {
    return { id: job.id, error: err instanceof Error ? err.message : String(err) };
  } finally {
    closeAfter(fd);
    closeAfter(out);
  }
}

/**
 * Reads `fd` from its start, hashing it and writing it to `out` when given (with `direct`, by whole blocks,
 * the end cut after). Returns the size and sum, or `refused` when the first direct write failed with EINVAL.
 */
function copy(fd, out, direct) {
  const hash = createHash('sha256');
  let size = 0;
  for (;;) {
    // The buffer filled whole before it is written (a short read, on NFS or FUSE, would leave the next direct
    // write off a block boundary): only the file's end is a partial buffer.
    let n = 0;
    for (let got = -1; got !== 0 && n < buffer.length; n += got) {
      got = readSync(fd, buffer, n, buffer.length - n, size + n);
    }
    if (n === 0) break;
    hash.update(buffer.subarray(0, n));
    if (out !== undefined) {
      // Past `n`, the block's padding: cut by the ftruncate below (the buffer is a whole number of blocks).
      const length = direct ? Math.ceil(n / DIRECT_BLOCK) * DIRECT_BLOCK : n;
      try {
        for (let at = 0; at < length; ) at += writeSync(out, buffer, at, length - at, size + at);
      } catch (err) {
        if (direct && size === 0 && err.code === 'EINVAL') return { refused: true };
        throw err;
      }
    }
    size += n;
  }
  if (direct) ftruncateSync(out, size);
  return { size, sha256: hash.digest('hex') };
}

/** Closes a descriptor the job is done with; a failure there is not the job's (it read or failed already). */
function closeAfter(fd) {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch (err) {
    // Told on stderr rather than thrown: a throw here would stop the thread and every job of its message.
    process.stderr.write(`backup hashing thread: closing a descriptor failed: ${err}\n`);
  }
}
