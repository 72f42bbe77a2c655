import { InputError, NotFoundError, VigilError } from '../../lib/errors.ts';
import {
  type Actor,
  type AuditLog,
  bearerToken,
  isGlobalAdmin,
  LoginRateLimitedError,
  type Principal,
  type Role,
  requireRole,
  type Scope,
  seesTenant,
  type User,
  type UserPrincipal,
  type UserService,
  userPrincipal,
} from '../../users/index.ts';
import { onlyKeys, parseJsonBody } from '../body.ts';
import { routeDocs } from '../schemas.ts';
import { principalOf, type RouteGroup } from '../server.ts';
import { parseTimeParam } from '../time.ts';
import { intParam } from './incidents.ts';

type Query = Record<string, string | undefined>;

/** The path of the login route, which the server must serve without a token. */
export const LOGIN_PATH = '/api/v1/auth/login';

const actorOf = (p: Principal): Actor => ({
  name: p.name,
  role: p.role,
  tenants: p.tenants,
  global: isGlobalAdmin(p),
});
const forbidden = (message: string) => new VigilError('forbidden', message, { status: 403 });

/** An admin manages a user only when every tenant of the user is one of the admin's. */
function requireManages(p: Principal, user: User | undefined, id: string): User {
  if (!user?.tenants.some((t) => seesTenant(p, t))) {
    throw new VigilError('not_found', `no user ${id}`, { status: 404 });
  }
  if (!user.tenants.every((t) => seesTenant(p, t))) {
    throw forbidden(`user ${user.username} has tenants that are not yours`);
  }
  return user;
}

/**
 * Users and access: POST /api/v1/auth/login (open), POST /api/v1/auth/logout, GET /api/v1/auth/me;
 * users CRUD under /api/v1/users (admins); API keys under /api/v1/keys (your own, or anyone's for an
 * admin); GET /api/v1/audit (admins).
 */
export function userRoutes(deps: { users: UserService; audit: AuditLog }): RouteGroup {
  const { users, audit } = deps;
  return (app) => {
    app.post<{ Body: unknown }>(LOGIN_PATH, routeDocs.login, async (req, reply) => {
      const body = parseJsonBody(req.body);
      onlyKeys(body, ['username', 'password']);
      if (typeof body.username !== 'string' || typeof body.password !== 'string') {
        throw new InputError('bad_login', 'expected {"username": "...", "password": "..."}');
      }
      try {
        const s = await users.login(body.username, body.password, req.ip);
        return reply.send({ token: s.token, expiresAt: s.expiresAt, user: s.user });
      } catch (err) {
        if (err instanceof LoginRateLimitedError) reply.header('Retry-After', String(err.retryAfterSeconds));
        throw err;
      }
    });

    app.post('/api/v1/auth/logout', routeDocs.logout, async (req) => {
      const p = principalOf(req);
      if (userPrincipal(p)?.via !== 'session') {
        throw new InputError('not_a_session', 'logout ends a console session; this request did not use one');
      }
      await users.logout(bearerToken(req.headers.authorization), actorOf(p));
      return { loggedOut: true };
    });

    app.get('/api/v1/auth/me', routeDocs.me, async (req) => {
      const p = principalOf(req);
      const u = userPrincipal(p);
      return {
        name: p.name,
        role: p.role,
        tenants: p.tenants,
        via: u?.via,
        userId: u?.userId,
        keyId: u?.keyId,
        scopes: u?.scopes,
      };
    });

    app.get('/api/v1/users', routeDocs.users, async (req) => {
      const p = principalOf(req);
      requireRole(p, 'admin');
      const visible = (await users.list()).filter((u) => u.tenants.some((t) => seesTenant(p, t)));
      return { total: visible.length, users: visible };
    });

    app.post<{ Body: unknown }>('/api/v1/users', routeDocs.userCreate, async (req, reply) => {
      const p = principalOf(req);
      requireRole(p, 'admin');
      const body = parseJsonBody(req.body);
      onlyKeys(body, ['username', 'password', 'role', 'tenants']);
      if (typeof body.password !== 'string') throw new InputError('bad_password', 'password: a string');
      const user = await users.create(
        {
          username: body.username as string,
          password: body.password,
          role: body.role as Role,
          tenants: (body.tenants ?? p.tenants) as string[],
        },
        actorOf(p),
      );
      return reply.status(201).send(user);
    });

    app.get<{ Params: { id: string } }>('/api/v1/users/:id', routeDocs.user, async (req) => {
      const p = principalOf(req);
      requireRole(p, 'admin');
      const user = await users.get(req.params.id);
      if (!user?.tenants.some((t) => seesTenant(p, t))) {
        throw new VigilError('not_found', `no user ${req.params.id}`, { status: 404 });
      }
      return user;
    });

    app.patch<{ Params: { id: string }; Body: unknown }>('/api/v1/users/:id', routeDocs.userPatch, async (req) => {
      const p = principalOf(req);
      requireRole(p, 'admin');
      requireManages(p, await users.get(req.params.id), req.params.id);
      const body = parseJsonBody(req.body);
      onlyKeys(body, ['password', 'role', 'tenants', 'disabled']);
      return users.update(
        req.params.id,
        {
          password: body.password as string | undefined,
          role: body.role as Role | undefined,
          tenants: body.tenants as string[] | undefined,
          disabled: body.disabled as boolean | undefined,
        },
        actorOf(p),
      );
    });

    app.delete<{ Params: { id: string } }>('/api/v1/users/:id', routeDocs.userDelete, async (req) => {
      const p = principalOf(req);
      requireRole(p, 'admin');
      const user = requireManages(p, await users.get(req.params.id), req.params.id);
      if (userPrincipal(p)?.userId === user.id) throw new InputError('self_delete', 'you cannot delete yourself');
      await users.remove(req.params.id, actorOf(p));
      return { id: req.params.id, deleted: true };
    });

    app.post<{ Body: unknown }>('/api/v1/keys', routeDocs.keyCreate, async (req, reply) => {
      const p = principalOf(req);
      const up = userPrincipal(p);
      // A key may mint keys only with the admin scope; sessions and the admin token may always.
      if (up?.via === 'api_key') requireRole(p, 'admin');
      const body = parseJsonBody(req.body);
      onlyKeys(body, ['name', 'scopes', 'expiresInDays', 'userId']);
      const userId = (body.userId ?? up?.userId) as string | undefined;
      if (typeof userId !== 'string') throw new InputError('bad_user', 'userId is needed: the admin token is no user');
      if (userId !== up?.userId) {
        requireRole(p, 'admin');
        requireManages(p, await users.get(userId), userId);
      }
      const created = await users.createApiKey(
        userId,
        {
          name: body.name as string,
          scopes: body.scopes as Scope[],
          expiresInDays: body.expiresInDays as number | undefined,
        },
        actorOf(p),
      );
      // The only time the key's secret is shown.
      return reply.status(201).send({ ...created.key, token: created.token });
    });

    app.get<{ Querystring: Query }>('/api/v1/keys', routeDocs.keys, async (req) => {
      const p = principalOf(req);
      const own = userPrincipal(p)?.userId;
      let userId = req.query.userId ?? own;
      if (userId !== own || userId === undefined) {
        requireRole(p, 'admin');
        if (userId !== undefined) requireManages(p, await users.get(userId), userId);
        userId = req.query.userId;
      }
      let keys = await users.listApiKeys(userId);
      if (userId === undefined) {
        const managed = new Set(
          (await users.list()).filter((u) => u.tenants.every((t) => seesTenant(p, t))).map((u) => u.id),
        );
        keys = keys.filter((k) => managed.has(k.userId));
      }
      return { total: keys.length, keys };
    });

    app.delete<{ Params: { id: string } }>('/api/v1/keys/:id', routeDocs.keyRevoke, async (req) => {
      const p = principalOf(req);
      const key = await users.getApiKey(req.params.id);
      const own = key !== undefined && key.userId === (userPrincipal(p) as UserPrincipal | undefined)?.userId;
      // A key of a user who shares no tenant with the caller answers as a key that does not exist.
      const owner = key && !own ? await users.get(key.userId) : undefined;
      if (!key || (!own && !owner?.tenants.some((t) => seesTenant(p, t)))) {
        throw new NotFoundError('API key', req.params.id);
      }
      if (!own) {
        requireRole(p, 'admin');
        requireManages(p, owner, key.userId);
      }
      return users.revokeApiKey(req.params.id, actorOf(p));
    });

    app.get<{ Querystring: Query }>('/api/v1/audit', routeDocs.audit, async (req) => {
      const p = principalOf(req);
      requireRole(p, 'admin');
      const q = req.query;
      const entries = await audit.list({
        tenants: p.tenants,
        all: isGlobalAdmin(p),
        actor: q.actor,
        action: q.action,
        target: q.target,
        from: q.from === undefined ? undefined : parseTimeParam(q.from, 'from'),
        to: q.to === undefined ? undefined : parseTimeParam(q.to, 'to'),
        before: q.before === undefined ? undefined : intParam(q, 'before', 0, 1, Number.MAX_SAFE_INTEGER),
        limit: intParam(q, 'limit', 100, 1, 10000),
      });
      return {
        total: entries.length,
        entries,
        nextBefore: entries.length > 0 ? entries[entries.length - 1].id : null,
      };
    });
  };
}
