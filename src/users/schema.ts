import type { Migration } from '../db/index.ts';

/** Tables of users, API keys, sessions and the audit log (same SQL on PGlite and PostgreSQL). */
export const USER_MIGRATIONS: readonly Migration[] = [
  {
    id: 'users/0001_init',
    statements: [
      `CREATE TABLE users (
         id text PRIMARY KEY,
         username text NOT NULL UNIQUE,
         password_hash text NOT NULL,
         role text NOT NULL CHECK (role IN ('admin', 'analyst', 'viewer')),
         tenants text[] NOT NULL,
         disabled boolean NOT NULL DEFAULT false,
         created_at bigint NOT NULL,
         updated_at bigint NOT NULL
       )`,
      `CREATE TABLE api_keys (
         id text PRIMARY KEY,
         user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
         name text NOT NULL,
         key_hash text NOT NULL UNIQUE,
         scopes text[] NOT NULL,
         created_at bigint NOT NULL,
         expires_at bigint NOT NULL,
         revoked_at bigint,
         last_used_at bigint
       )`,
      'CREATE INDEX api_keys_by_user ON api_keys (user_id)',
      `CREATE TABLE sessions (
         token_hash text PRIMARY KEY,
         user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
         created_at bigint NOT NULL,
         expires_at bigint NOT NULL
       )`,
      'CREATE INDEX sessions_by_expiry ON sessions (expires_at)',
      `CREATE TABLE audit_log (
         id bigserial PRIMARY KEY,
         at bigint NOT NULL,
         actor text NOT NULL,
         action text NOT NULL,
         target text NOT NULL,
         tenant text,
         details jsonb
       )`,
      'CREATE INDEX audit_log_by_at ON audit_log (at)',
      // Append-only in the database itself (a statement trigger: even an UPDATE matching no row fails), for every role (the owner included), on PGlite and PostgreSQL
      // alike: a REVOKE would not bind the table's owner, which is the role Vigil migrates with.
      `CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP USING ERRCODE = '42501';
       END
       $$`,
      `CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
         FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()`,
    ],
  },
  {
    // Entries about users, keys and logins name every tenant of the user concerned, so that each of those
    // tenants' admins sees them and no other tenant's does. Entries written before keep `tenants` NULL: with
    // no `tenant` either, only a global admin sees them (the table is append-only: no backfill).
    id: 'users/0002_audit_tenants',
    statements: ['ALTER TABLE audit_log ADD COLUMN tenants text[]'],
  },
];
