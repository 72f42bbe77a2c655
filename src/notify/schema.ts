import type { Migration } from '../db/index.ts';

/** The outbox of notifications (same SQL on PGlite and PostgreSQL). */
export const NOTIFY_MIGRATIONS: readonly Migration[] = [
  {
    id: 'notify/0001_init',
    statements: [
      // One row per (alert, destination), written before anything is sent; its id is the X-Vigil-Delivery.
      `CREATE TABLE deliveries (
         id text PRIMARY KEY,
         alert_id text NOT NULL,
         destination text NOT NULL,
         tenant text NOT NULL,
         payload jsonb NOT NULL,
         status text NOT NULL CHECK (status IN ('pending', 'sending', 'delivered', 'dead')),
         attempts integer NOT NULL DEFAULT 0,
         next_attempt_at bigint NOT NULL,
         lease_until bigint,
         last_error text,
         created_at bigint NOT NULL,
         updated_at bigint NOT NULL,
         delivered_at bigint,
         UNIQUE (alert_id, destination)
       )`,
      `CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending'`,
      `CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending'`,
      `CREATE INDEX deliveries_dead ON deliveries (tenant, updated_at) WHERE status = 'dead'`,
    ],
  },
  {
    id: 'notify/0002_claimed_by',
    statements: [
      // Who holds a 'sending' row: `<node id>:<incarnation>`, so a restarted node takes back its own dead claims
      // at once instead of waiting out their lease.
      'ALTER TABLE deliveries ADD COLUMN claimed_by text',
    ],
  },
];
