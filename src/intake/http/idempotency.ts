import type { EventStore } from '../../store/index.ts';

/** How long an Idempotency-Key is remembered: a retry later than this is a new request. */
export const IDEMPOTENCY_TTL_HOURS = 24;
const CACHE_SIZE = 10000;

/**
 * Remembers when each Idempotency-Key was first received. A retry reuses that receipt time, so events
 * without a timestamp of their own get the same @timestamp, and with the seeded ids, the same rows.
 * The key is committed before the events are, so a crash between the two still finds it on retry.
 */
export interface IdempotencyKeys {
  start(): Promise<void>;
  /** The first receipt time of (tenant, key): `now` if it is new (and it is recorded). */
  firstReceipt(tenant: string, key: string, now: number): Promise<number>;
}

/**
 * Creates the key registry on the event store's engine. A node without a store (an ingest-only cluster
 * node) remembers keys in memory only: a retry that reaches another node, or comes after a restart,
 * gets a new receipt time.
 */
export function createIdempotencyKeys(store: EventStore | undefined): IdempotencyKeys {
  const cache = new Map<string, number>();
  return {
    async start() {
      if (!store) return;
      await store.exec(`CREATE TABLE IF NOT EXISTS vigil.ingest_keys (
        tenant LowCardinality(String), key String, received_at DateTime64(3, 'UTC')
      ) ENGINE = ReplacingMergeTree ORDER BY (tenant, key)
      TTL toDateTime(received_at) + INTERVAL ${IDEMPOTENCY_TTL_HOURS} HOUR`);
    },
    async firstReceipt(tenant, key, now) {
      const id = `${tenant}\u0000${key}`;
      const cached = cache.get(id);
      if (cached !== undefined) return cached;
      if (!store) {
        cache.set(id, now);
        if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value as string);
        return now;
      }
      const rows = await store.query<{ t: string | number }>(
        `SELECT toUnixTimestamp64Milli(min(received_at)) AS t, count() AS n FROM vigil.ingest_keys
         WHERE tenant = {tenant:String} AND key = {key:String} HAVING n > 0`,
        { tenant, key },
      );
      let at = now;
      if (rows.length > 0) at = Number(rows[0].t);
      else await store.insertRows('ingest_keys', Buffer.from(JSON.stringify({ tenant, key, received_at: now })));
      cache.set(id, at);
      if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value as string);
      return at;
    },
  };
}
