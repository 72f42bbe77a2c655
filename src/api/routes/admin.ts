import type { FastifyRequest } from 'fastify';
import type { Cluster, PartitionOwner } from '../../cluster/index.ts';
import { errorMessage } from '../../lib/errors.ts';
import { requireGlobalAdmin } from '../../users/index.ts';
import { principalOf, type RouteGroup } from '../server.ts';

/**
 * Sections that other components add to GET /admin/cluster/status (`replicas`, `streams`, ...): each
 * provider's answer is returned as it is under its name; a provider that throws shows `{"error": message}`.
 */
export type StatusProviders = Record<string, () => unknown | Promise<unknown>>;

/** Sections always present in the status answer (null until a component provides them). */
const STANDARD_SECTIONS = ['replicas', 'streams'] as const;

function requireAdmin(req: FastifyRequest): void {
  requireGlobalAdmin(principalOf(req), 'the cluster admin API');
}

/**
 * GET /admin/cluster/status, GET /admin/cluster/nodes, POST /admin/maintenance/enable,
 * GET /admin/maintenance/status, POST /admin/maintenance/disable. Admin role only; maintenance acts on the
 * node that answers.
 */
export function adminRoutes(deps: { cluster: Cluster; providers?: StatusProviders }): RouteGroup {
  const { cluster } = deps;
  return (app) => {
    app.get('/admin/cluster/status', async (req) => {
      requireAdmin(req);
      const nodes = cluster.membership.nodes();
      let partitions: Record<string, unknown>;
      try {
        const owners = await cluster.partitions.owners();
        const owned = new Set(owners.map((o) => o.partition));
        partitions = {
          count: cluster.partitions.count,
          owned_here: cluster.partitions.owned().size,
          unowned: Array.from({ length: cluster.partitions.count }, (_, p) => p).filter((p) => !owned.has(p)),
          owners: owners.map((o: PartitionOwner) => ({
            partition: o.partition,
            node: o.node,
            fencing_token: o.fencing_token,
            acquired_at: o.acquired_at,
          })),
        };
      } catch (err) {
        partitions = {
          count: cluster.partitions.count,
          owned_here: cluster.partitions.owned().size,
          error: `etcd unavailable: ${errorMessage(err)}`,
        };
      }
      const sections: Record<string, unknown> = {};
      for (const name of STANDARD_SECTIONS) sections[name] = null;
      for (const [name, provide] of Object.entries(deps.providers ?? {})) {
        try {
          sections[name] = (await provide()) ?? null;
        } catch (err) {
          sections[name] = { error: errorMessage(err) };
        }
      }
      return {
        node_id: cluster.nodeId,
        etcd: {
          connected: cluster.session.connected(),
          lease_remaining_ms: Math.round(cluster.session.remainingMs()),
        },
        maintenance: cluster.maintenance.status(),
        nodes: {
          total: nodes.length,
          alive: nodes.filter((n) => n.state === 'Alive').length,
          suspect: nodes.filter((n) => n.state === 'Suspect').length,
          dead: nodes.filter((n) => n.state === 'Dead').length,
        },
        partitions,
        ...sections,
      };
    });

    app.get('/admin/cluster/nodes', async (req) => {
      requireAdmin(req);
      return { nodes: cluster.membership.nodes() };
    });

    app.post('/admin/maintenance/enable', async (req, reply) => {
      requireAdmin(req);
      const status = await cluster.maintenance.enable();
      return reply.status(status.status === 'drained' ? 200 : 202).send(status);
    });

    app.get('/admin/maintenance/status', async (req) => {
      requireAdmin(req);
      return cluster.maintenance.status();
    });

    app.post('/admin/maintenance/disable', async (req) => {
      requireAdmin(req);
      return cluster.maintenance.disable();
    });
  };
}
