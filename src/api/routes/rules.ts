import type { FastifyRequest } from 'fastify';
import type { CompiledRuleSet, Detector, RuleInfo } from '../../detect/index.ts';
import { GlobalScopeError } from '../../detect/rule-set.ts';
import { InputError, NotFoundError, VigilError } from '../../lib/errors.ts';
import { type AuditLog, isGlobalAdmin, type Principal, requireTenant, seesTenant } from '../../users/index.ts';
import { routeDocs } from '../schemas.ts';
import { principalOf, type RouteGroup } from '../server.ts';
import { parseJsonBody } from '../body.ts';

type Query = Record<string, string | undefined>;

/** The rules (and rejected documents) a principal may see: global ones and those of its tenants. */
export function visibleRules(set: CompiledRuleSet, p: Principal): Pick<CompiledRuleSet, 'rules' | 'rejected'> {
  return {
    rules: set.rules.filter((r) => seesTenant(p, r.tenant)),
    rejected: set.rejected.filter((r) => seesTenant(p, r.tenant)),
  };
}

/**
 * Rules at runtime: list, read, add (POST), replace (PUT), delete, enable/disable (PATCH). Bodies of
 * POST and PUT are Sigma YAML; every change bumps the rule set version and applies without restart.
 *
 * Scopes: a rule belongs to a tenant (`?tenant=`, by default the caller's only tenant) and runs on that
 * tenant's events only; a global rule (`?scope=global`, and every rule of a configured folder) runs on
 * every tenant's events, and only a global admin creates or changes one. A rule of another tenant answers
 * as one that does not exist.
 */
export function ruleRoutes(deps: { detector: Detector; audit?: AuditLog }): RouteGroup {
  const { detector } = deps;
  const audit = (
    req: FastifyRequest,
    action: string,
    rule: RuleInfo | { id: string; tenant: string | null },
    details: Record<string, unknown> = {},
  ) =>
    deps.audit?.record(principalOf(req).name, action, `rule:${rule.id}`, details, { tenant: rule.tenant ?? undefined });
  const mustEdit = (role: string) => {
    if (role === 'viewer') throw new VigilError('forbidden', 'viewers cannot change rules', { status: 403 });
  };
  /** The one rule `id` the principal sees (narrowed by ?tenant= or ?scope=global), else 404. */
  const find = (p: Principal, id: string, q: Query) => {
    const scope = q.scope === 'global' ? null : q.tenant;
    const found = detector
      .ruleSet()
      .rules.filter((r) => r.id === id && seesTenant(p, r.tenant) && (scope === undefined || r.tenant === scope));
    if (found.length === 0) throw new NotFoundError('rule', id);
    if (found.length > 1) {
      const scopes = found.map((r) => r.tenant ?? 'global');
      throw new VigilError('ambiguous_rule', `rule ${id} is in ${scopes.join(', ')}: say which with ?tenant=`, {
        status: 409,
        details: { scopes },
      });
    }
    return found[0];
  };
  /** Global rules are a global admin's to change. */
  const mustChange = (p: Principal, info: RuleInfo) => {
    if (info.tenant === null && !isGlobalAdmin(p)) {
      throw new GlobalScopeError(`rule ${info.id} is a global rule: only a global admin changes it`);
    }
  };
  /** The scope a new rule goes to: ?scope=global (global admins), ?tenant=, or the caller's only tenant. */
  const newScope = (p: Principal, q: Query): string | null => {
    if (q.scope !== undefined && q.scope !== 'global') throw new InputError('bad_scope', 'scope must be global');
    if (q.scope === 'global') {
      if (!isGlobalAdmin(p)) throw new GlobalScopeError('only a global admin adds global rules');
      return null;
    }
    const tenant = q.tenant ?? (p.tenants.length === 1 ? p.tenants[0] : undefined);
    if (tenant === undefined) {
      throw new InputError('bad_tenant', `tenant is needed: ?tenant= one of ${p.tenants.join(', ')}`);
    }
    requireTenant(p, tenant);
    return tenant;
  };
  return (app) => {
    app.addContentTypeParser(
      ['application/yaml', 'application/x-yaml', 'text/yaml'],
      { parseAs: 'string' },
      (_req, body, done) => done(null, body),
    );
    app.get('/api/v1/rules', routeDocs.rules, async (req) => {
      const set = detector.ruleSet();
      const { rules, rejected } = visibleRules(set, principalOf(req));
      return { version: set.version, total: rules.length, rules, rejected };
    });
    app.get<{ Params: { id: string }; Querystring: Query }>(
      '/api/v1/rules/:id',
      routeDocs.ruleSource,
      async (req, reply) => {
        const info = find(principalOf(req), req.params.id, req.query);
        reply.header('Content-Type', 'application/yaml');
        return detector.repository.source(info.file);
      },
    );
    app.post<{ Body: unknown; Querystring: Query }>('/api/v1/rules', routeDocs.ruleCreate, async (req, reply) => {
      const p = principalOf(req);
      mustEdit(p.role);
      const tenant = newScope(p, req.query);
      const yaml = String(req.body ?? '');
      const saved = detector.repository.save(yaml, {
        create: true,
        tenant,
        // One id per tenant's view: a tenant rule may not take a global rule's id, nor a global rule a tenant's
        // (the alert id is made of rule id, tenant and event). Both are visible to whoever is refused here.
        check: ({ id }) => {
          const clash = detector
            .ruleSet()
            .rules.find((r) => r.id === id && r.tenant !== tenant && (tenant === null || r.tenant === null));
          if (clash) {
            throw new VigilError('conflict', `rule ${id} exists in ${clash.tenant ?? 'the global scope'}`, {
              status: 409,
            });
          }
        },
      });
      const set = detector.reload();
      await audit(req, 'rule.create', { id: saved.id, tenant }, { version: set.version });
      return reply.status(201).send({ ...saved, tenant, version: set.version });
    });
    app.put<{ Params: { id: string }; Body: unknown; Querystring: Query }>(
      '/api/v1/rules/:id',
      routeDocs.ruleReplace,
      async (req) => {
        const p = principalOf(req);
        mustEdit(p.role);
        const info = find(p, req.params.id, req.query);
        mustChange(p, info);
        const saved = detector.repository.save(String(req.body ?? ''), {
          create: false,
          expectedId: req.params.id,
          tenant: info.tenant,
        });
        const version = detector.reload().version;
        await audit(req, 'rule.update', info, { version });
        return { ...saved, tenant: info.tenant, version };
      },
    );
    app.delete<{ Params: { id: string }; Querystring: Query }>(
      '/api/v1/rules/:id',
      routeDocs.ruleDelete,
      async (req) => {
        const p = principalOf(req);
        mustEdit(p.role);
        const info = find(p, req.params.id, req.query);
        mustChange(p, info);
        detector.repository.remove(req.params.id, info.tenant);
        const version = detector.reload().version;
        await audit(req, 'rule.delete', info, { version });
        return { id: req.params.id, tenant: info.tenant, deleted: true, version };
      },
    );
    app.patch<{ Params: { id: string }; Body: unknown; Querystring: Query }>(
      '/api/v1/rules/:id',
      routeDocs.rulePatch,
      async (req) => {
        const p = principalOf(req);
        mustEdit(p.role);
        const info = find(p, req.params.id, req.query);
        mustChange(p, info);
        const body = parseJsonBody(req.body);
        if (typeof body.enabled !== 'boolean') {
          throw new VigilError('bad_request', 'expected {"enabled": true|false}', { status: 400 });
        }
        detector.repository.setEnabled(req.params.id, body.enabled, info.tenant);
        const version = detector.reload().version;
        await audit(req, body.enabled ? 'rule.enable' : 'rule.disable', info, { version });
        return { id: req.params.id, tenant: info.tenant, enabled: body.enabled, version };
      },
    );
  };
}
