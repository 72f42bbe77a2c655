import { VigilError } from '../../lib/errors.ts';
import { COMPARED, type Compared, hourRange, idsOfHour, summarize } from '../../site/compare.ts';
import type { Site } from '../../site/index.ts';
import type { EventStore } from '../../store/index.ts';
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
 * (`{"confirm": true}` to act; without it, what would change), POST /admin/dr/failback (the same, refused
 * while the peer is unreachable or this site is behind it), POST /admin/dr/demote (`{"confirm": true}`).
 */
export function drRoutes(deps: { site: Site; store?: EventStore }): RouteGroup {
  const { site } = deps;
  const store = () => {
    if (deps.store) return deps.store;
    throw new VigilError('no_store', 'this node holds no event store: ask a node with the store role', {
      status: 503,
    });
  };
  return (app) => {
    // What `vigil dr compare` reads: per hour, counts and a hash of the ids of events and alerts here.
    app.get<{ Querystring: Record<string, string | undefined> }>('/admin/dr/summary', async (req) => {
      requireGlobalAdmin(principalOf(req), 'the site (dr) API');
      return summarize(store(), site.siteName, hourRange(req.query.from, req.query.to));
    });

    // The ids of one kind in one hour (`hour`: its start), for an hour whose digests differ.
    app.get<{ Querystring: Record<string, string | undefined> }>('/admin/dr/ids', async (req) => {
      requireGlobalAdmin(principalOf(req), 'the site (dr) API');
      const kind = req.query.kind as Compared;
      if (!COMPARED.includes(kind)) {
        throw new VigilError('bad_kind', `kind must be one of ${COMPARED.join(', ')}`, { status: 400 });
      }
      const { from } = hourRange(
        req.query.hour,
        req.query.hour === undefined ? undefined : String(Date.parse(req.query.hour) + 1),
      );
      return {
        site: site.siteName,
        kind,
        hour: new Date(from).toISOString(),
        ...(await idsOfHour(store(), kind, from)),
      };
    });

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

    app.post('/admin/dr/failback', async (req, reply) => {
      requireGlobalAdmin(principalOf(req), 'the site (dr) API');
      const plan = await site.failback({ confirm: confirmed(req.body) });
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
