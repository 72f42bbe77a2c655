import type { Db, Queryable } from '../db/index.ts';

/** One audit entry: who did what to which object, when, with what (never secrets). */
export interface AuditEntry {
  id: number;
  at: number;
  actor: string;
  action: string;
  target: string;
  tenant: string | null;
  details: Record<string, unknown> | null;
}

/** Filters of GET /api/v1/audit; entries come newest first, `before` pages by id. */
export interface AuditFilter {
  /** Entries of these tenants only; entries with no tenant are global (see `all`). */
  tenants: string[];
  /** Every entry, of every tenant and global ones (a global admin). */
  all?: boolean;
  actor?: string;
  action?: string;
  target?: string;
  from?: number;
  to?: number;
  before?: number;
  limit: number;
}

/**
 * The append-only audit log of every change (incidents, users, API keys, rules). The code has no update
 * or delete path, and the table refuses UPDATE, DELETE and TRUNCATE itself (a trigger).
 */
export interface AuditLog {
  /**
   * Appends an entry. Pass `opts.tx` to write it in the same transaction as the change it records;
   * `opts.tenant` (or `opts.tenants`, for a user of several tenants) makes it visible to those tenants'
   * admins; with neither, the entry is global and only a global admin sees it.
   */
  record(
    actor: string,
    action: string,
    target: string,
    details?: Record<string, unknown>,
    opts?: { tenant?: string; tenants?: readonly string[]; tx?: Queryable },
  ): Promise<void>;
  list(filter: AuditFilter): Promise<AuditEntry[]>;
}

interface AuditRow {
  id: number;
  at: number;
  actor: string;
  action: string;
  target: string;
  tenant: string | null;
  details: Record<string, unknown> | null;
}

/** Creates the audit log on `db`. */
export function createAuditLog(db: Db): AuditLog {
  return {
    async record(actor, action, target, details, opts = {}) {
      await (opts.tx ?? db).query(
        `INSERT INTO audit_log (at, actor, action, target, tenant, tenants, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)`,
        [
          Date.now(),
          actor,
          action,
          target,
          opts.tenant ?? (opts.tenants?.length === 1 ? opts.tenants[0] : null),
          opts.tenants ? [...new Set([...(opts.tenant ? [opts.tenant] : []), ...opts.tenants])] : null,
          details === undefined ? null : JSON.stringify(details),
        ],
      );
    },
    async list(f) {
      // Global entries (no tenant) are a global admin's only: logins, users and keys name their tenants.
      const where = [f.all ? '$1::text[] IS NOT NULL' : '(tenant = ANY($1::text[]) OR tenants && $1::text[])'];
      const params: unknown[] = [f.tenants];
      const add = (clause: string, value: unknown) => {
        params.push(value);
        where.push(clause.replace('?', `$${params.length}`));
      };
      if (f.actor !== undefined) add('actor = ?', f.actor);
      if (f.action !== undefined) add('action = ?', f.action);
      if (f.target !== undefined) add('target = ?', f.target);
      if (f.from !== undefined) add('at >= ?', f.from);
      if (f.to !== undefined) add('at < ?', f.to);
      if (f.before !== undefined) add('id < ?', f.before);
      params.push(f.limit);
      const rows = await db.query<AuditRow>(
        `SELECT id, at, actor, action, target, tenant, details FROM audit_log
         WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT $${params.length}`,
        params,
      );
      return rows.map((r) => ({ ...r, id: Number(r.id), at: Number(r.at) }));
    },
  };
}
