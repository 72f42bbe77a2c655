import { routeDocs } from '../schemas.ts';
import type { FastifyRequest } from 'fastify';
import type { Backups } from '../../backup/index.ts';
import { InputError } from '../../lib/errors.ts';
import { requireGlobalAdmin } from '../../users/index.ts';
import { onlyKeys, parseJsonBody } from '../body.ts';
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
    app.post('/admin/backups', routeDocs.backupCreate, async (req, reply) => {
      requireAdmin(req);
      // An empty body means the defaults.
      const body = parseJsonBody(req.body, { emptyIsObject: true });
      onlyKeys(body, ['full']);
      if (body.full !== undefined && typeof body.full !== 'boolean') {
        throw new InputError('backup_request', 'full must be true or false');
      }
      const m = await deps.backups.create({ full: body.full === true });
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
    app.get('/admin/backups', routeDocs.backupList, async (req) => {
      requireAdmin(req);
      return { backups: deps.backups.list() };
    });
  };
}
