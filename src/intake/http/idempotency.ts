import { mkdirSync, readdirSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { errorMessage, VigilError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge } from '../../lib/metrics.ts';
import type { EventStore } from '../../store/index.ts';

/** How long an Idempotency-Key is remembered: a retry later than this is a new request. */
export const IDEMPOTENCY_TTL_HOURS = 24;
const TTL_MS = IDEMPOTENCY_TTL_HOURS * 3600_000;
/** Keys are appended to one file per hour of receipt; a file is deleted once all of its keys expired. */
const FILE_SPAN_MS = 3600_000;
const FILE = /^keys-(\d+)\.ndjson$/;
/** Where older versions kept the keys (a table of the event store); read once at start, then dropped. */
const LEGACY_TABLE = 'vigil.ingest_keys';

/**
 * Remembers when each Idempotency-Key was first received. A retry reuses that receipt time, so events
 * without a timestamp of their own get the same @timestamp, and with the seeded ids, the same rows.
 * The key is durable (fsynced) before the answer, so a crash between the two still finds it on retry.
 */
export interface IdempotencyKeys {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The first receipt time of (tenant, key): `now` if it is new (and it is recorded). */
  firstReceipt(tenant: string, key: string, now: number): Promise<number>;
}

interface Entry {
  at: number;
  /** Settles once the key is on disk; a second request with the key waits for it too. */
  durable: Promise<void>;
}

/**
 * Creates the key registry: every key in memory, and an append-only log under `dir` (one NDJSON file per
 * hour, group-committed with one fdatasync per write) that start() reads back. It used to be a table of the
 * event store, which put an embedded-engine query and insert in front of every ingest answer; that engine
 * runs one query at a time, so a large store write or merge held up intake for seconds.
 * At most `maxKeys` are kept (the oldest go first, counted): a retry of an evicted key is a new request.
 */
export function createIdempotencyKeys(deps: {
  dir: string;
  maxKeys: number;
  metrics: Registry;
  logger: Logger;
  /** The event store, whose table of keys (older versions) is taken over at start. */
  store?: EventStore;
}): IdempotencyKeys {
  const log = deps.logger.child({ component: 'idempotency-keys' });
  const keys = new Map<string, Entry>();
  const evicted = counter(
    deps.metrics,
    'vigil_ingest_idempotency_keys_evicted_total',
    'Idempotency keys forgotten before their 24 hours because more than the configured most were kept.',
  );
  const held = gauge(deps.metrics, 'vigil_ingest_idempotency_keys', 'Idempotency keys remembered.');
  let file: { handle: FileHandle; span: number } | undefined;
  let pending: { line: string; done: () => void; fail: (err: unknown) => void }[] = [];
  let writing: Promise<void> | undefined;

  const idOf = (tenant: string, key: string) => `${tenant}\u0000${key}`;

  const remember = (id: string, entry: Entry) => {
    keys.delete(id);
    keys.set(id, entry);
    while (keys.size > deps.maxKeys) {
      keys.delete(keys.keys().next().value as string);
      evicted.inc();
    }
    held.set(keys.size);
  };

  /** Drops expired keys (the map is in receipt order) and the files that hold only expired keys. */
  const expire = (now: number) => {
    for (const [id, e] of keys) {
      if (e.at > now - TTL_MS) break;
      keys.delete(id);
    }
    held.set(keys.size);
    for (const name of readdirSync(deps.dir)) {
      const m = FILE.exec(name);
      if (m && (Number(m[1]) + 1) * FILE_SPAN_MS <= now - TTL_MS) rmSync(join(deps.dir, name), { force: true });
    }
  };

  const handleFor = async (now: number): Promise<FileHandle> => {
    const span = Math.floor(now / FILE_SPAN_MS);
    if (file?.span === span) return file.handle;
    await file?.handle.close();
    file = { handle: await open(join(deps.dir, `keys-${span}.ndjson`), 'a'), span };
    expire(now);
    return file.handle;
  };

  /** Writes everything pending in one append and one fdatasync; requests arriving meanwhile go next. */
  const flush = async () => {
    while (pending.length > 0) {
      const batch = pending;
      pending = [];
      try {
        const handle = await handleFor(Date.now());
        await handle.write(batch.map((p) => p.line).join(''));
        await handle.datasync();
        for (const p of batch) p.done();
      } catch (err) {
        for (const p of batch) p.fail(err);
      }
    }
    writing = undefined;
  };

  const append = (line: string) =>
    new Promise<void>((done, fail) => {
      pending.push({ line, done, fail });
      writing ??= flush();
    });

  const load = () => {
    const now = Date.now();
    const names = readdirSync(deps.dir)
      .map((n) => FILE.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .sort((a, b) => Number(a[1]) - Number(b[1]));
    let torn = 0;
    for (const m of names) {
      const path = join(deps.dir, m[0]);
      const text = readFileSync(path, 'utf8');
      // A line cut by a crash (its request was never answered) is cut from the file too: the next key
      // appended to this hour's file would otherwise be glued to it and lost on the next read.
      const end = text.lastIndexOf('\n') + 1;
      if (end < text.length) {
        truncateSync(path, Buffer.byteLength(text.slice(0, end)));
        torn++;
      }
      for (const line of text.slice(0, end).split('\n')) {
        if (line === '') continue;
        try {
          const [tenant, key, at] = JSON.parse(line) as [string, string, number];
          const id = idOf(tenant, key);
          if (at > now - TTL_MS && !keys.has(id)) remember(id, { at, durable: Promise.resolve() });
        } catch {
          // Not written by this log (edited by hand?): skipped, counted in the warning below.
          torn++;
        }
      }
    }
    if (torn > 0) log.warn({ lines: torn }, 'Skipped unreadable lines of the idempotency key log.');
  };

  /** Keys of the table older versions kept in the event store, written to the log once. */
  const takeOverLegacyTable = async () => {
    const store = deps.store;
    if (!store) return;
    const exists = await store.query<{ n: number }>(
      "SELECT count() AS n FROM system.tables WHERE database = 'vigil' AND name = 'ingest_keys'",
      {},
    );
    if (Number(exists[0]?.n ?? 0) === 0) return;
    const rows = await store.query<{ tenant: string; key: string; t: string | number }>(
      `SELECT tenant, key, toUnixTimestamp64Milli(min(received_at)) AS t FROM ${LEGACY_TABLE}
       WHERE received_at > now64(3) - INTERVAL ${IDEMPOTENCY_TTL_HOURS} HOUR GROUP BY tenant, key ORDER BY t`,
      {},
    );
    const lines: Promise<void>[] = [];
    for (const r of rows) {
      const id = idOf(r.tenant, r.key);
      if (keys.has(id)) continue;
      const at = Number(r.t);
      const durable = append(`${JSON.stringify([r.tenant, r.key, at])}\n`);
      remember(id, { at, durable });
      lines.push(durable);
    }
    await Promise.all(lines);
    await store.exec(`DROP TABLE ${LEGACY_TABLE} SYNC`);
    log.info({ keys: rows.length }, 'Moved the idempotency keys out of the event store.');
  };

  /** Waits until a key is on disk; a failed write forgets it, so that a retry records it again. */
  const recorded = async (id: string, durable: Promise<void>) => {
    try {
      await durable;
    } catch (err) {
      if (keys.get(id)?.durable === durable) keys.delete(id);
      throw new VigilError(
        'idempotency_key_not_recorded',
        `the Idempotency-Key could not be recorded: ${errorMessage(err)}`,
        {
          status: 503,
          retryable: true,
        },
      );
    }
  };

  return {
    async start() {
      mkdirSync(deps.dir, { recursive: true, mode: 0o700 });
      load();
      await takeOverLegacyTable();
    },
    async stop() {
      await writing;
      await file?.handle.close().catch((err) => log.warn({ err: errorMessage(err) }, 'Closing the key log failed.'));
      file = undefined;
    },
    async firstReceipt(tenant, key, now) {
      const id = idOf(tenant, key);
      const known = keys.get(id);
      if (known && known.at > now - TTL_MS) {
        await recorded(id, known.durable);
        return known.at;
      }
      const durable = append(`${JSON.stringify([tenant, key, now])}\n`);
      remember(id, { at: now, durable });
      await recorded(id, durable);
      return now;
    },
  };
}
