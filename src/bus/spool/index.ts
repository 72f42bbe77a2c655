import { mkdirSync, openSync, closeSync, fsyncSync } from 'node:fs';
import { type FileHandle, open, readdir, readFile, rename, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { errorMessage, OverloadError, VigilError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge } from '../../lib/metrics.ts';
import type { SpoolConfig } from './config.ts';
import {
  crc32,
  decodePayload,
  encodeRecord,
  HEADER_BYTES,
  readHeader,
  type SpooledEntry,
  type SpoolEntry,
} from './format.ts';

export { type SpoolConfig, spoolConfigSchema } from './config.ts';
export type { SpooledEntry, SpoolEntry } from './format.ts';

/** What the spool holds right now. */
export interface SpoolStats {
  /** Unforwarded bytes (records with their framing). */
  bytes: number;
  /** Unforwarded batches. */
  batches: number;
  /** Unforwarded events. */
  events: number;
  /** When the oldest unforwarded batch was appended (epoch ms), if any. */
  oldestAt?: number;
}

/**
 * A bounded, append-only disk queue of batches: what the JetStream bus acknowledges while NATS cannot take
 * a publish. `append` resolves once the records are written and fdatasync'ed; the forwarder reads them back
 * in append order with `peek` and drops each with `commit` once JetStream has acknowledged it. Only one
 * process may open a folder at a time.
 */
export interface Spool {
  /** Opens the folder: checks every record, cuts a torn tail, and queues what was not forwarded. */
  open(): Promise<void>;
  /** Durably appends the entries, in order; rejects with OverloadError when the spool is full or too old. */
  append(entries: readonly SpoolEntry[]): Promise<void>;
  /** The oldest unforwarded entry, read from disk; undefined when the spool is empty. */
  peek(): Promise<SpooledEntry | undefined>;
  /** Marks the oldest entry as forwarded; its segment is deleted once every record of it is. */
  commit(): Promise<void>;
  /** True when nothing waits to be forwarded and no append is in progress. */
  isEmpty(): boolean;
  stats(): SpoolStats;
  /** Resolves once something waits to be forwarded (at once if it does), or on close. */
  appended(signal?: AbortSignal): Promise<void>;
  /** Finishes pending appends and closes the files. */
  close(): Promise<void>;
}

interface RecordRef {
  segment: number;
  offset: number;
  /** Framed length (header included). */
  length: number;
  createdAt: number;
  events: number;
}

interface Segment {
  no: number;
  path: string;
  /** Records of this segment not yet forwarded. */
  unforwarded: number;
}

interface PendingAppend {
  buffers: Buffer[];
  refs: Omit<RecordRef, 'segment' | 'offset'>[];
  bytes: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const SEGMENT_RE = /^seg-(\d{16})\.log$/;
const CURSOR_FILE = 'cursor.json';

function segmentName(no: number): string {
  return `seg-${String(no).padStart(16, '0')}.log`;
}

function spoolError(message: string, cause?: unknown): VigilError {
  return new VigilError('spool_io_failed', message, { status: 503, retryable: true, cause });
}

/** Creates a spool over `dir`; nothing is opened until `open()`. */
export function createSpool(config: SpoolConfig, deps: { dir: string; metrics: Registry; logger: Logger }): Spool {
  const dir = deps.dir;
  const segments = new Map<number, Segment>();
  const queue: RecordRef[] = [];
  let head = 0;
  let bytes = 0;
  let events = 0;
  let pendingBytes = 0;
  let nextSegment = 1;
  let active: { no: number; fh: FileHandle; size: number } | undefined;
  let reader: { no: number; fh: FileHandle } | undefined;
  const appends: PendingAppend[] = [];
  let writing: Promise<void> | undefined;
  let opened = false;
  let closed = false;
  const waiters = new Set<() => void>();
  let ageTimer: NodeJS.Timeout | undefined;

  const bytesGauge = gauge(
    deps.metrics,
    'vigil_spool_bytes',
    'Bytes in the local spool not yet forwarded to JetStream.',
  );
  const batchesGauge = gauge(deps.metrics, 'vigil_spool_batches', 'Batches in the local spool not yet forwarded.');
  const ageGauge = gauge(
    deps.metrics,
    'vigil_spool_oldest_age_seconds',
    'Age of the oldest batch in the local spool (0 when empty).',
  );
  const tornRecords = counter(
    deps.metrics,
    'vigil_spool_torn_records_total',
    'Unacknowledged records cut from a torn spool tail, or unreadable records skipped.',
  );

  function pending(): number {
    return queue.length - head;
  }

  function updateGauges(): void {
    bytesGauge.set(bytes);
    batchesGauge.set(pending());
    ageGauge.set(pending() > 0 ? Math.max(0, (Date.now() - queue[head].createdAt) / 1000) : 0);
  }

  function fsyncDir(): void {
    if (!config.fsync) return;
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  async function saveCursor(segment: number, offset: number): Promise<void> {
    // Not fsynced: a cursor lost in a crash only makes the forwarder send again what the stream de-duplicates.
    const tmp = join(dir, `${CURSOR_FILE}.tmp`);
    await writeFile(tmp, JSON.stringify({ segment, offset }));
    await rename(tmp, join(dir, CURSOR_FILE));
  }

  async function loadCursor(): Promise<{ segment: number; offset: number }> {
    try {
      const c = JSON.parse(await readFile(join(dir, CURSOR_FILE), 'utf8')) as { segment: number; offset: number };
      if (Number.isSafeInteger(c.segment) && Number.isSafeInteger(c.offset)) return c;
    } catch {
      // no cursor yet, or a torn one: start from the first record kept on disk
    }
    return { segment: 0, offset: 0 };
  }

  /** Scans one segment; returns its valid records and where the valid part ends. */
  function scan(no: number, data: Buffer): { refs: RecordRef[]; end: number } {
    const refs: RecordRef[] = [];
    let o = 0;
    while (o + HEADER_BYTES <= data.length) {
      const { length, crc } = readHeader(data.subarray(o, o + HEADER_BYTES));
      const end = o + HEADER_BYTES + length;
      if (length === 0 || end > data.length) break;
      const payload = data.subarray(o + HEADER_BYTES, end);
      if (crc32(payload) !== crc) break;
      let entry: SpooledEntry;
      try {
        entry = decodePayload(payload);
      } catch {
        break;
      }
      refs.push({ segment: no, offset: o, length: end - o, createdAt: entry.createdAt, events: entry.events });
      o = end;
    }
    return { refs, end: o };
  }

  async function removeSegment(no: number): Promise<void> {
    segments.delete(no);
    if (reader?.no === no) {
      await reader.fh.close();
      reader = undefined;
    }
    await unlink(join(dir, segmentName(no))).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  async function rotate(): Promise<void> {
    if (active) {
      await active.fh.close();
      active = undefined;
    }
    const no = nextSegment++;
    const path = join(dir, segmentName(no));
    const fh = await open(path, 'a');
    // The new file's directory entry must survive a crash as well as its records.
    fsyncDir();
    segments.set(no, { no, path, unforwarded: 0 });
    active = { no, fh, size: 0 };
  }

  async function writeBatch(batch: PendingAppend[]): Promise<void> {
    const buffers = batch.flatMap((p) => p.buffers);
    const total = buffers.reduce((n, b) => n + b.length, 0);
    if (!active || (active.size > 0 && active.size + total > config.segment_bytes)) await rotate();
    const seg = active!;
    const start = seg.size;
    try {
      let written = 0;
      let rest = buffers;
      while (written < total) {
        const { bytesWritten } = await seg.fh.writev(rest);
        written += bytesWritten;
        if (written < total) rest = [Buffer.concat(buffers).subarray(written)];
      }
      if (config.fsync) await seg.fh.datasync();
    } catch (err) {
      // A partial write must not sit between acknowledged records: cut it, and write on in a new segment.
      // Best effort, after the failure that is thrown below: an uncut tail is skipped as torn when read.
      await truncate(segments.get(seg.no)!.path, start).catch((e: unknown) =>
        deps.logger.warn(
          { segment: seg.no, err: errorMessage(e) },
          'A partial spool write could not be cut; it is skipped as a torn tail when read.',
        ),
      );
      await seg.fh
        .close()
        .catch((e: unknown) =>
          deps.logger.debug({ segment: seg.no, err: errorMessage(e) }, 'Closing a failed spool segment failed.'),
        );
      if (active === seg) active = undefined;
      throw spoolError(`the spool could not write to ${dir}: ${errorMessage(err)}`, err);
    }
    let offset = start;
    const segment = segments.get(seg.no)!;
    for (const p of batch) {
      p.refs.forEach((r, i) => {
        queue.push({ ...r, segment: seg.no, offset });
        offset += p.buffers[i].length;
        bytes += r.length;
        events += r.events;
        segment.unforwarded++;
      });
    }
    seg.size = offset;
  }

  async function drainAppends(): Promise<void> {
    while (appends.length > 0) {
      // One group commit per write, no bigger than a segment, so that segments rotate near their size.
      let take = 1;
      let size = appends[0].bytes;
      while (take < appends.length && size + appends[take].bytes <= config.segment_bytes) size += appends[take++].bytes;
      const batch = appends.splice(0, take);
      try {
        await writeBatch(batch);
        pendingBytes -= size;
        for (const p of batch) p.resolve();
      } catch (err) {
        pendingBytes -= size;
        for (const p of batch) p.reject(err);
      }
      updateGauges();
      for (const wake of [...waiters]) wake();
    }
    writing = undefined;
  }

  async function commit(): Promise<void> {
    if (pending() === 0) return;
    const ref = queue[head++];
    bytes -= ref.length;
    events -= ref.events;
    if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
    const seg = segments.get(ref.segment);
    if (seg) seg.unforwarded--;
    if (pending() > 0) {
      const next = queue[head];
      await saveCursor(next.segment, next.offset);
    } else {
      await saveCursor(ref.segment, ref.offset + ref.length);
    }
    // A segment goes once all of it is forwarded and nothing more will be written to it.
    if (seg && seg.unforwarded === 0 && active?.no !== seg.no) await removeSegment(seg.no);
    else if (seg && seg.unforwarded === 0 && !writing && appends.length === 0 && active) {
      // Cleared before the await, so that an append arriving meanwhile starts a new segment.
      const fh = active.fh;
      active = undefined;
      await fh.close();
      await removeSegment(seg.no);
    }
    updateGauges();
  }

  return {
    async open() {
      mkdirSync(dir, { recursive: true });
      const cursor = await loadCursor();
      const names = (await readdir(dir)).filter((n) => SEGMENT_RE.test(n)).sort();
      let cut = 0;
      for (const name of names) {
        const no = Number(SEGMENT_RE.exec(name)![1]);
        nextSegment = Math.max(nextSegment, no + 1);
        const path = join(dir, name);
        if (no < cursor.segment) {
          await unlink(path);
          continue;
        }
        const data = await readFile(path);
        const { refs, end } = scan(no, data);
        if (end < data.length) {
          // Only an unacknowledged write can be torn: appends are fdatasync'ed before they resolve.
          cut++;
          tornRecords.inc();
          deps.logger.warn(
            { file: path, offset: end, bytes: data.length - end },
            'The spool cut a torn record at the end of a segment; it was never acknowledged.',
          );
          await truncate(path, end);
        }
        const kept = refs.filter((r) => no > cursor.segment || r.offset >= cursor.offset);
        if (kept.length === 0) {
          await unlink(path);
          continue;
        }
        segments.set(no, { no, path, unforwarded: kept.length });
        for (const r of kept) {
          queue.push(r);
          bytes += r.length;
          events += r.events;
        }
      }
      nextSegment = Math.max(nextSegment, cursor.segment + 1);
      opened = true;
      updateGauges();
      ageTimer = setInterval(updateGauges, 1000);
      ageTimer.unref();
      if (pending() > 0 || cut > 0) {
        deps.logger.info(
          { dir, batches: pending(), events, bytes, torn: cut },
          'The spool was reopened with batches still to forward.',
        );
      }
    },

    append(entries) {
      if (!opened || closed) return Promise.reject(spoolError('the spool is not open'));
      if (entries.length === 0) return Promise.resolve();
      const now = Date.now();
      if (pending() > 0 && now - queue[head].createdAt > config.max_age_seconds * 1000) {
        return Promise.reject(
          new OverloadError(
            `the local spool holds batches older than ${config.max_age_seconds} s: JetStream has been unreachable too long`,
            5,
          ),
        );
      }
      const buffers = entries.map((e) => encodeRecord(e, now));
      const size = buffers.reduce((n, b) => n + b.length, 0);
      if (bytes + pendingBytes + size > config.max_bytes) {
        return Promise.reject(
          new OverloadError(`the local spool is full (${bytes + pendingBytes} of ${config.max_bytes} bytes)`, 5),
        );
      }
      pendingBytes += size;
      return new Promise<void>((resolve, reject) => {
        appends.push({
          buffers,
          refs: buffers.map((b, i) => ({ length: b.length, createdAt: now, events: entries[i].events })),
          bytes: size,
          resolve,
          reject,
        });
        writing ??= drainAppends();
      });
    },

    async peek() {
      while (pending() > 0) {
        const ref = queue[head];
        if (reader?.no !== ref.segment) {
          await reader?.fh.close();
          reader = { no: ref.segment, fh: await open(join(dir, segmentName(ref.segment)), 'r') };
        }
        const buf = Buffer.allocUnsafe(ref.length);
        const { bytesRead } = await reader.fh.read(buf, 0, ref.length, ref.offset);
        const { length, crc } = readHeader(buf);
        if (bytesRead === ref.length && length === ref.length - HEADER_BYTES) {
          const payload = buf.subarray(HEADER_BYTES);
          if (crc32(payload) === crc) return decodePayload(payload);
        }
        // Verified when written and when opened; a mismatch now is the disk going bad. Say so, and go on.
        tornRecords.inc();
        deps.logger.error(
          { segment: ref.segment, offset: ref.offset },
          'A spooled batch no longer matches its checksum; it is skipped.',
        );
        await commit();
      }
      return undefined;
    },

    commit,

    isEmpty: () => pending() === 0 && appends.length === 0 && writing === undefined,

    stats: () => ({
      bytes,
      batches: pending(),
      events,
      oldestAt: pending() > 0 ? queue[head].createdAt : undefined,
    }),

    appended(signal) {
      if (pending() > 0 || closed || signal?.aborted) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener('abort', done);
          waiters.delete(done);
          resolve();
        };
        waiters.add(done);
        signal?.addEventListener('abort', done);
      });
    },

    async close() {
      closed = true;
      if (ageTimer) clearInterval(ageTimer);
      await writing;
      await active?.fh.close();
      await reader?.fh.close();
      active = undefined;
      reader = undefined;
      for (const wake of [...waiters]) wake();
    },
  };
}

/** Bytes the spool folder takes on disk (segments and cursor), for tests and the admin API. */
export async function spoolDiskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) total += (await stat(join(dir, name))).size;
  return total;
}
