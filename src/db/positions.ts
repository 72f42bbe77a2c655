import type { Migration } from './migrate.ts';
import type { Db } from './types.ts';

/** Where each consumer of the local alert log stands (one row per consumer: incidents, notify). */
export const POSITION_MIGRATIONS: readonly Migration[] = [
  {
    id: 'positions/0001_alert_consumers',
    statements: [
      `CREATE TABLE alert_consumer_positions (
         consumer text PRIMARY KEY,
         created bigint NOT NULL,
         ts bigint NOT NULL,
         alert_id text NOT NULL,
         updated_at bigint NOT NULL
       )`,
    ],
  },
];

/**
 * A place in the alert log of a single node: alerts are read back in (created, ts, id) order, the order of
 * storing and, within one insert, of the alerts' own times (incidents open their windows in that order).
 */
export interface AlertPosition {
  created: number;
  ts: number;
  id: string;
}

/** A consumer's committed position in the alert log, kept in the database. */
export interface PositionStore {
  load(): Promise<AlertPosition | undefined>;
  /** Commits the position; called only after what came before it is committed. */
  save(position: AlertPosition): Promise<void>;
}

/** The position of consumer `name` in table alert_consumer_positions of `db`. */
export function dbPositionStore(db: Db, name: string): PositionStore {
  return {
    async load() {
      const [row] = await db.query<{ created: number; ts: number; alert_id: string }>(
        'SELECT created, ts, alert_id FROM alert_consumer_positions WHERE consumer = $1',
        [name],
      );
      return row ? { created: Number(row.created), ts: Number(row.ts), id: row.alert_id } : undefined;
    },
    async save(p) {
      await db.query(
        `INSERT INTO alert_consumer_positions (consumer, created, ts, alert_id, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (consumer) DO UPDATE SET created = EXCLUDED.created, ts = EXCLUDED.ts, alert_id = EXCLUDED.alert_id,
           updated_at = EXCLUDED.updated_at`,
        [name, p.created, p.ts, p.id, Date.now()],
      );
    },
  };
}
