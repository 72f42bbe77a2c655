import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

/** One file hashed by {@link hashFiles}: its size and SHA-256 (hex). */
export interface HashedFile {
  path: string;
  size: number;
  sha256: string;
}

/** Options of {@link hashFiles}. */
export interface HashFilesOptions {
  /** Worker threads (each reads and hashes one file at a time); the cores of the machine, at most 4, by default. */
  threads?: number;
  /** Flush each file to disk after it is read, then each folder given in `folders` (a backup before its manifest). */
  sync?: boolean;
  /** Folders (relative to the root) to flush after their files, so that the files' names are durable too. */
  folders?: readonly string[];
  /**
   * Sums already known (by path): such a file is not read again when its size is the one given, only
   * flushed (with `sync`). A file of another size is hashed.
   */
  known?: ReadonlyMap<string, { size: number; sha256: string }>;
  /** Leave out a file that cannot be read (gone meanwhile) instead of failing: its entry is undefined. */
  skipFailed?: boolean;
}

/** Bytes to hash below which no thread is started. */
const INLINE_BYTES = 8 << 20;

interface Job {
  id: number;
  path: string;
  directory?: boolean;
  hash: boolean;
  sync?: boolean;
  /** Write what is read to this new file (copy and sum in one read). */
  copyTo?: string;
}

interface Answer {
  id: number;
  size?: number;
  sha256?: string;
  error?: string;
}

/**
 * Size and SHA-256 of each file of `paths` (relative to `root`), in the order given, read and hashed on worker
 * threads. Why threads: Node hashes on the thread that calls `update`, so streams in parallel still hashed one
 * file at a time on the main thread; measured on a 2-core machine with 500,000 Mordor events (271 MB, 897
 * files) the backup's checksums took 2.0 to 4.3 s there, beside the engine's count on the same cores.
 * Largest files go first, so that the threads end together. Rejects naming the first file that failed.
 */
export async function hashFiles(
  root: string,
  paths: readonly string[],
  opts: HashFilesOptions = {},
): Promise<(HashedFile | undefined)[]> {
  const sizes = await Promise.all(
    paths.map((p) =>
      stat(join(root, p)).then(
        (s) => s.size,
        (err: unknown) => {
          if (opts.skipFailed) return -1;
          throw err;
        },
      ),
    ),
  );
  const order = paths.map((_, i) => i).sort((a, b) => sizes[b] - sizes[a]);
  const out: (HashedFile | undefined)[] = new Array(paths.length);
  const jobs: Job[] = [];
  for (const i of order) {
    if (sizes[i] < 0) continue;
    const known = opts.known?.get(paths[i]);
    if (known && known.size === sizes[i]) {
      out[i] = { path: paths[i], size: known.size, sha256: known.sha256 };
      if (opts.sync) jobs.push({ id: i, path: join(root, paths[i]), hash: false, sync: true });
    } else jobs.push({ id: i, path: join(root, paths[i]), hash: true, sync: opts.sync });
  }
  if (opts.sync) {
    for (const [i, folder] of (opts.folders ?? []).entries()) {
      jobs.push({ id: paths.length + i, path: join(root, folder), directory: true, hash: false, sync: true });
    }
  }
  // A few small files (a backup's metadata) are hashed here: starting threads would cost more.
  const bytes = jobs.reduce((n, j) => (j.hash ? n + sizes[j.id] : n), 0);
  if (!opts.sync && bytes <= INLINE_BYTES) {
    for (const job of jobs) {
      try {
        const data = await readFile(job.path);
        out[job.id] = {
          path: paths[job.id],
          size: data.length,
          sha256: createHash('sha256').update(data).digest('hex'),
        };
      } catch (err) {
        if (!opts.skipFailed) throw err;
      }
    }
    return out;
  }
  await runJobs(jobs, opts.threads, !opts.skipFailed, (job, answer) => {
    if (answer.error !== undefined) {
      if (opts.skipFailed) return;
      throw new Error(answer.error);
    }
    if (job.directory) return;
    const known = out[job.id];
    if (known && answer.size !== known.size) {
      throw new Error(`${job.path} is ${answer.size} bytes, not the ${known.size} bytes its sum was taken over`);
    }
    if (job.hash) {
      out[job.id] = { path: paths[job.id], size: answer.size as number, sha256: answer.sha256 as string };
    }
  });
  return out;
}

/** One file for {@link copyFiles}: read from `from` (absolute), written to `to` (absolute, new). */
export interface CopyJob {
  from: string;
  to: string;
  /** The name the sum is listed under (the copy's path in the backup). */
  path: string;
  /** Bytes, when known (largest files go first, so that the threads end together). */
  size?: number;
}

/**
 * Copies each file into a new file (its folder must exist) and returns the size and SHA-256 of what was
 * written, in the order given: one read of the source on a worker thread serves both, in 4 MiB turns, several
 * files at once (see {@link hashFiles} for why threads); files of 1 MiB or more are written past the page
 * cache (O_DIRECT, see hash-worker.mjs). The copies are not flushed: the caller flushes the whole folder once
 * (one syncfs, see manifest.ts). Rejects naming the first file that failed; the threads start no file after it.
 * Threads: one more than the cores (at most 4) by default, since a direct write waits for the disk
 * (measured on the 2-core machine over 3.5 GB: 4.9 to 7.0 s with 3 threads, 8.0 to 10 s with 2).
 */
export async function copyFiles(files: readonly CopyJob[], opts: { threads?: number } = {}): Promise<HashedFile[]> {
  const order = files.map((_, i) => i).sort((a, b) => (files[b].size ?? 0) - (files[a].size ?? 0));
  const jobs: Job[] = order.map((i) => ({ id: i, path: files[i].from, hash: true, copyTo: files[i].to }));
  const out: HashedFile[] = new Array(files.length);
  const threads = opts.threads ?? Math.min(4, availableParallelism() + 1);
  await runJobs(jobs, threads, true, (job, answer) => {
    if (answer.error !== undefined) throw new Error(`copying ${job.path} to ${job.copyTo}: ${answer.error}`);
    out[job.id] = { path: files[job.id].path, size: answer.size as number, sha256: answer.sha256 as string };
  });
  return out;
}

/** Idle worker threads, kept for the next call: starting one took 0.2 to 1 s on a loaded 2-core machine. */
const idle: Worker[] = [];
/** How long idle threads are kept after the last call. */
const IDLE_MS = 30_000;
let idleTimer: NodeJS.Timeout | undefined;

/** An idle thread, or a new one (plain JavaScript; unref'd: an idle thread never keeps the process alive). */
function takeWorker(): Worker {
  const kept = idle.pop();
  if (kept) return kept;
  // No execArgv: the worker is plain JavaScript, and a loader inherited from the parent (tsx) cost 3 s
  // before the first answer and 4 ms per answer after it on a loaded 2-core machine (0.24 s and 0.15 ms
  // without).
  const worker = new Worker(new URL('./hash-worker.mjs', import.meta.url), { execArgv: [] });
  worker.unref();
  return worker;
}

/** Puts threads back for the next call; they stop after IDLE_MS without one. */
function keepWorkers(workers: Worker[]): void {
  idle.push(...workers);
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    for (const w of idle.splice(0)) void w.terminate();
  }, IDLE_MS);
  idleTimer.unref();
}

/**
 * Runs `jobs` on a pool of worker threads (the cores, at most 4, by default), each answer to `onAnswer`; the
 * first error (an answer that `onAnswer` throws on, or a thread that stops) ends the call once every thread
 * has finished the file it is on. With `stopOnError`, a thread whose job fails stops the others itself: no
 * job is started after it is answered. Each thread takes the next job itself from a shared counter and answers
 * a few files per message, never waiting for this thread between files. Why: a job per message made each
 * thread wait for the main thread after every file, and a backup of the 10M-event data set copies 14,000
 * files, most small: measured on the shared 2-core machine (load 7 to 11), the copy took 22.8 to 30.6 s
 * this way, 10.9 to 13.3 s with groups of files per message, for the same CPU time.
 */
async function runJobs(
  jobs: readonly Job[],
  threadsAsked: number | undefined,
  stopOnError: boolean,
  onAnswer: (job: Job, answer: Answer) => void,
): Promise<void> {
  if (jobs.length === 0) return;
  const threads = Math.max(1, Math.min(threadsAsked ?? Math.min(4, availableParallelism()), jobs.length));
  // The index of the next job to take, shared by the threads; set past the end to stop them.
  const next = new Int32Array(new SharedArrayBuffer(4));
  let failure: { err: unknown } | undefined;
  const stop = (err: unknown) => {
    failure ??= { err };
    Atomics.store(next, 0, jobs.length);
  };
  const healthy: Worker[] = [];
  const broken: Worker[] = [];
  await Promise.all(
    Array.from({ length: threads }, async () => {
      const worker = takeWorker();
      try {
        await work(worker, { jobs, next, stopOnError }, (answer) => {
          if (failure) return;
          try {
            onAnswer(jobs[answer.at], answer);
          } catch (err) {
            stop(err);
          }
        });
        healthy.push(worker);
      } catch (err) {
        // Not kept: it may be mid-job.
        broken.push(worker);
        stop(err);
      }
    }),
  );
  keepWorkers(healthy);
  await Promise.all(broken.map((w) => w.terminate()));
  if (failure) throw failure.err;
}

/** What a thread sends back: answers to some jobs (by their index in the list), and whether it took its last. */
interface Answers {
  answers: (Answer & { at: number })[];
  done: boolean;
}

/** What a thread is given: the jobs, the counter it takes them by, and whether a failed job stops every thread. */
interface Work {
  jobs: readonly Job[];
  next: Int32Array;
  stopOnError: boolean;
}

/** Gives the work to a thread; resolves when it takes no more jobs (or rejects when it stops). */
function work(worker: Worker, given: Work, onAnswer: (answer: Answer & { at: number }) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: Answers) => {
      for (const answer of message.answers) onAnswer(answer);
      if (!message.done) return;
      off();
      resolve();
    };
    const onError = (err: Error) => {
      off();
      reject(err);
    };
    const onExit = (code: number) => {
      off();
      reject(new Error(`a hashing thread stopped (exit code ${code}) with files left to read`));
    };
    const off = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.once('error', onError);
    worker.once('exit', onExit);
    worker.postMessage(given);
  });
}
