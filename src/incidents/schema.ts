import type { Migration } from '../db/index.ts';

/** Tables of incidents, applied in order by the database component (same SQL on PGlite and PostgreSQL). */
export const INCIDENT_MIGRATIONS: readonly Migration[] = [
  {
    id: 'incidents/0001_init',
    statements: [
      `CREATE TABLE incidents (
         id text PRIMARY KEY,
         tenant text NOT NULL,
         title text NOT NULL,
         severity text NOT NULL CHECK (severity IN ('informational', 'low', 'medium', 'high', 'critical')),
         severity_rank smallint NOT NULL,
         status text NOT NULL CHECK (status IN ('new', 'acknowledged', 'in_progress', 'resolved', 'false_positive')),
         assignee text,
         tags text[] NOT NULL DEFAULT '{}',
         group_key text,
         rule_id text,
         host text,
         window_start bigint,
         window_end bigint,
         first_alert_at bigint,
         last_alert_at bigint,
         alert_count integer NOT NULL DEFAULT 0,
         created_by text NOT NULL,
         created_at bigint NOT NULL,
         updated_at bigint NOT NULL
       )`,
      `CREATE INDEX incidents_open_by_key ON incidents (tenant, group_key, window_start)
         WHERE status IN ('new', 'acknowledged', 'in_progress')`,
      'CREATE INDEX incidents_by_created ON incidents (tenant, created_at, id)',
      'CREATE INDEX incidents_by_status ON incidents (tenant, status)',
      `CREATE TABLE incident_alerts (
         alert_id text PRIMARY KEY,
         incident_id text NOT NULL REFERENCES incidents (id),
         tenant text NOT NULL,
         rule_id text NOT NULL,
         level text NOT NULL,
         partition text NOT NULL,
         fencing_token bigint NOT NULL,
         alert_at bigint NOT NULL,
         linked_at bigint NOT NULL
       )`,
      'CREATE INDEX incident_alerts_by_incident ON incident_alerts (incident_id)',
      `CREATE TABLE incident_events (
         incident_id text NOT NULL REFERENCES incidents (id),
         event_id text NOT NULL,
         PRIMARY KEY (incident_id, event_id)
       )`,
      `CREATE TABLE incident_comments (
         id bigserial PRIMARY KEY,
         incident_id text NOT NULL REFERENCES incidents (id),
         author text NOT NULL,
         body text NOT NULL,
         created_at bigint NOT NULL
       )`,
      'CREATE INDEX incident_comments_by_incident ON incident_comments (incident_id, id)',
      `CREATE TABLE incident_timeline (
         id bigserial PRIMARY KEY,
         incident_id text NOT NULL REFERENCES incidents (id),
         at bigint NOT NULL,
         actor text NOT NULL,
         action text NOT NULL,
         from_value text,
         to_value text,
         details jsonb
       )`,
      'CREATE INDEX incident_timeline_by_incident ON incident_timeline (incident_id, id)',
      // The highest fencing token that wrote alerts of each correlation partition: a writer with a lower
      // one is a stale owner (it lost its lease) and its alerts are refused.
      `CREATE TABLE partition_tokens (
         partition text PRIMARY KEY,
         token bigint NOT NULL,
         updated_at bigint NOT NULL
       )`,
      `CREATE TABLE rejected_alerts (
         alert_id text NOT NULL,
         partition text NOT NULL,
         fencing_token bigint NOT NULL,
         highest_token bigint NOT NULL,
         reason text NOT NULL,
         tenant text NOT NULL,
         rejected_at bigint NOT NULL,
         PRIMARY KEY (alert_id, fencing_token)
       )`,
    ],
  },
  {
    // An alert id is unique within its tenant only. Keyed by the id alone, a manual incident of one tenant
    // could hold another tenant's alert id: its answer (409 naming the incident) told that the alert
    // existed, and the alert, once raised, was taken for a duplicate and never grouped in its own tenant.
    id: 'incidents/0002_alert_key_per_tenant',
    statements: [
      'ALTER TABLE incident_alerts DROP CONSTRAINT incident_alerts_pkey',
      'ALTER TABLE incident_alerts ADD PRIMARY KEY (tenant, alert_id)',
    ],
  },
  {
    // The same for refusals: keyed without the tenant, one tenant's refusal of an alert id (ON CONFLICT DO
    // NOTHING) hid another tenant's refusal of the same id and token from that tenant's list.
    id: 'incidents/0003_rejected_alert_key_per_tenant',
    statements: [
      'ALTER TABLE rejected_alerts DROP CONSTRAINT rejected_alerts_pkey',
      'ALTER TABLE rejected_alerts ADD PRIMARY KEY (tenant, alert_id, fencing_token)',
    ],
  },
];
