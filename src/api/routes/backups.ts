import type { FastifyRequest } from 'fastify';
import type { Backups } from '../../backup/index.ts';
import { InputError, VigilError } from '../../lib/errors.ts';
import { requireGlobalAdmin } from '../../users/index.ts';
import { principalOf, type RouteGroup } from '../server.ts';

function requireAdmin(req: FastifyRequest): void {
  requireGlobalAdmin(principalOf(req), 'a backup');
}

/**
 * POST /admin/backups (`{"full": true}` forces a full backup; answers 201 with the manifest's summary once
 * the backup is complete) and GET /admin/backups (every backup in backup.dir, oldest first). Admin only.
 */
export function backupRoutes(deps: { backups: Backups }): RouteGroup {
  return (app) => {
    app.post('/admin/backups', async (req, reply) => {
      requireAdmin(req);
      // Bodies reach routes as text (see server.ts); an empty one means the defaults.
      const text = typeof req.body === 'string' ? req.body.trim() : '';
      let body: unknown = {};
      if (text !== '') {
        try {
          body = JSON.parse(text);
        } catch {
          throw new InputError('backup_request', 'the body is not JSON: send {} or {"full": true}');
        }
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new InputError('backup_request', 'the body must be a JSON object such as {"full": true}');
      }
      const { full, ...rest } = body as Record<string, unknown>;
      const unknown = Object.keys(rest);
      if (unknown.length > 0)
        throw new InputError('backup_request', `unknown field ${unknown[0]} (only "full" is accepted)`);
      if (full !== undefined && typeof full !== 'boolean') {
        throw new InputError('backup_request', 'full must be true or false');
      }
      const m = await deps.backups.create({ full: full === true });
      return reply.status(201).send({
        id: m.id,
        kind: m.kind,
        base: m.base,
        cut_at: m.cut_at,
        duration_ms: m.duration_ms,
        size_bytes: m.size_bytes,
        events: m.engine.events,
        tables: m.engine.tables,
        postgres: m.postgres.tables,
      });
    });
    app.get('/admin/backups', async (req) => {
      requireAdmin(req);
      return { backups: deps.backups.list() };
    });
  };
}
