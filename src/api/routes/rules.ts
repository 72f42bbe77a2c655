import type { FastifyRequest } from 'fastify';
import type { Detector } from '../../detect/index.ts';
import type { AuditLog } from '../../users/index.ts';
import { VigilError } from '../../lib/errors.ts';
import { principalOf, type RouteGroup } from '../server.ts';
import { parseJsonBody } from './alerts.ts';

/**
 * Rules at runtime: list, read, add (POST), replace (PUT), delete, enable/disable (PATCH). Bodies of
 * POST and PUT are Sigma YAML; every change bumps the rule set version and applies without restart.
 */
export function ruleRoutes(deps: { detector: Detector; audit?: AuditLog }): RouteGroup {
  const { detector } = deps;
  const audit = (req: FastifyRequest, action: string, id: string, details: Record<string, unknown> = {}) =>
    deps.audit?.record(principalOf(req).name, action, `rule:${id}`, details);
  const mustEdit = (role: string) => {
    if (role === 'viewer') throw new VigilError('forbidden', 'viewers cannot change rules', { status: 403 });
  };
  const find = (id: string) => {
    const info = detector.ruleSet().rules.find((r) => r.id === id);
    if (!info) throw new VigilError('not_found', `no rule ${id}`, { status: 404 });
    return info;
  };
  return (app) => {
    app.addContentTypeParser(
      ['application/yaml', 'application/x-yaml', 'text/yaml'],
      { parseAs: 'string' },
      (_req, body, done) => done(null, body),
    );
    app.get('/api/v1/rules', async () => {
      const set = detector.ruleSet();
      return { version: set.version, total: set.rules.length, rules: set.rules, rejected: set.rejected };
    });
    app.get<{ Params: { id: string } }>('/api/v1/rules/:id', async (req, reply) => {
      const info = find(req.params.id);
      reply.header('Content-Type', 'application/yaml');
      return detector.repository.source(info.file);
    });
    app.post<{ Body: unknown }>('/api/v1/rules', async (req, reply) => {
      mustEdit(principalOf(req).role);
      const saved = detector.repository.save(String(req.body ?? ''), { create: true });
      const set = detector.reload();
      await audit(req, 'rule.create', saved.id, { version: set.version });
      return reply.status(201).send({ ...saved, version: set.version });
    });
    app.put<{ Params: { id: string }; Body: unknown }>('/api/v1/rules/:id', async (req) => {
      mustEdit(principalOf(req).role);
      const saved = detector.repository.save(String(req.body ?? ''), { create: false, expectedId: req.params.id });
      const version = detector.reload().version;
      await audit(req, 'rule.update', req.params.id, { version });
      return { ...saved, version };
    });
    app.delete<{ Params: { id: string } }>('/api/v1/rules/:id', async (req) => {
      mustEdit(principalOf(req).role);
      detector.repository.remove(req.params.id);
      const version = detector.reload().version;
      await audit(req, 'rule.delete', req.params.id, { version });
      return { id: req.params.id, deleted: true, version };
    });
    app.patch<{ Params: { id: string }; Body: unknown }>('/api/v1/rules/:id', async (req) => {
      mustEdit(principalOf(req).role);
      find(req.params.id);
      const body = parseJsonBody(req.body);
      if (typeof body.enabled !== 'boolean') {
        throw new VigilError('bad_request', 'expected {"enabled": true|false}', { status: 400 });
      }
      detector.repository.setEnabled(req.params.id, body.enabled);
      const version = detector.reload().version;
      await audit(req, body.enabled ? 'rule.enable' : 'rule.disable', req.params.id, { version });
      return { id: req.params.id, enabled: body.enabled, version };
    });
  };
}
