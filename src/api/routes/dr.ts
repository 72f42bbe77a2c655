import { VigilError } from '../../lib/errors.ts';
import type { Site } from '../../site/index.ts';
import { requireGlobalAdmin } from '../../users/index.ts';
import { parseJsonBody } from '../body.ts';
import { principalOf, type RouteGroup } from '../server.ts';

/** A POST body's `confirm` flag: only a JSON `true` confirms; no body is a dry run. */
function confirmed(body: unknown): boolean {
  if (body === undefined || body === null || body === '') return false;
  return parseJsonBody(body).confirm === true;
}

/**
 * The site routes of a two-site deployment, global admin only: GET /admin/dr/status, POST /admin/dr/activate
 * (`{"confirm": true}` to act; without it, what would change), POST /admin/dr/demote (`{"confirm": true}`).
 */
export function drRoutes(deps: { site: Site }): RouteGroup {
  const { site } = deps;
  return (app) => {
    app.get('/admin/dr/status', async (req) => {
      requireGlobalAdmin(principalOf(req), 'the site (dr) API');
      return site.status();
    });

    app.post('/admin/dr/activate', async (req, reply) => {
      requireGlobalAdmin(principalOf(req), 'the site (dr) API');
      const plan = await site.activate({ confirm: confirmed(req.body) });
      if (plan.refused && !plan.dry_run) {
        throw new VigilError('dr_refused', plan.refused, { status: 409, details: { plan } });
      }
      return reply.send(plan);
    });

    app.post('/admin/dr/demote', async (req) => {
      requireGlobalAdmin(principalOf(req), 'the site (dr) API');
      if (!confirmed(req.body)) {
        throw new VigilError(
          'dr_not_confirmed',
          'demoting a site needs {"confirm": true} (vigil dr demote --confirm)',
          {
            status: 400,
          },
        );
      }
      const record = await site.demote();
      return { site: record.site, role: record.role, epoch: record.epoch };
    });
  };
}
