import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { httpConfigSchema } from '../../src/api/config.ts';
import { incidentRoutes, notificationRoutes } from '../../src/api/routes/incidents.ts';
import { LOGIN_PATH, userRoutes } from '../../src/api/routes/users.ts';
import { type ApiServer, createApiServer, type RouteGroup } from '../../src/api/server.ts';
import type { Db } from '../../src/db/index.ts';
import { createIncidentService, incidentsConfigSchema } from '../../src/incidents/index.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import { createNotifier, notifyConfigSchema } from '../../src/notify/index.ts';
import {
  type AsyncAuthenticator,
  createAuditLog,
  createUserAuthenticator,
  createUserService,
  type Role,
  usersConfigSchema,
} from '../../src/users/index.ts';
import { readReply } from '../harness/http.ts';
import { backends } from '../harness/postgres.ts';

const ADMIN_TOKEN = 'bootstrap-admin-token-0123456789';

/** Moves the user service's clock forward (the login rate limit window) without waiting. */
let clockOffsetMs = 0;

/**
 * Until the server awaits an async authenticator (see the wiring notes), tests put the user authenticator
 * in an onRequest hook after the server's own, which is given a stand-in that accepts every request.
 */
function asyncAuth(auth: AsyncAuthenticator): RouteGroup {
  return (app) => {
    app.addHook('onRequest', async (req) => {
      const path = req.url.split('?')[0];
      if (path === LOGIN_PATH || path.startsWith('/health/') || path === '/metrics') {
        req.principal = undefined;
        return;
      }
      req.principal = await auth.authenticate(req.headers.authorization);
    });
  };
}

interface Api {
  server: ApiServer;
  db: Db;
  metrics: Registry;
  call(
    method: string,
    path: string,
    token?: string,
    body?: unknown,
  ): Promise<{ status: number; body: any; headers: Headers }>;
}

async function startApi(db: Db, tenants: string[]): Promise<Api> {
  const metrics = new Registry();
  const audit = createAuditLog(db);
  const users = createUserService(usersConfigSchema.parse({}), {
    db,
    audit,
    metrics,
    logger: silentLogger,
    now: () => Date.now() + clockOffsetMs,
  });
  const incidents = createIncidentService(incidentsConfigSchema.parse({}), {
    db,
    metrics,
    logger: silentLogger,
    audit,
  });
  const notifier = createNotifier(notifyConfigSchema.parse({ worker_enabled: false }), {
    db,
    metrics,
    logger: silentLogger,
    audit,
  });
  const auth = createUserAuthenticator(db, {
    adminToken: ADMIN_TOKEN,
    adminTenants: tenants,
    now: () => Date.now() + clockOffsetMs,
  });
  const server = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0' }), {
    auth: { authenticate: () => ({ name: 'pending', role: 'viewer', tenants: [] }) },
    metrics,
    logger: silentLogger,
    routes: [
      asyncAuth(auth),
      incidentRoutes({ incidents }),
      userRoutes({ users, audit }),
      notificationRoutes({ notifier }),
    ],
  });
  await incidents.start();
  await server.start();
  const { port } = server.address();
  return {
    server,
    db,
    metrics,
    async call(method, path, token, body) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        method,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { ...(await readReply(res)), headers: res.headers };
    },
  };
}

const PASSWORD = 'correct horse battery staple';

for (const backend of backends()) {
  describe(`incidents and users API on ${backend.name}`, () => {
    let api: Api;
    const tokens: Record<Role, string> = { viewer: '', analyst: '', admin: '' };
    const ids: Record<string, string> = {};
    let incidentId = '';
    const suffix = backend.name === 'PGlite' ? 'l' : 'p';
    const acme = `acme${suffix}`;
    const globex = `globex${suffix}`;

    before(async () => {
      api = await startApi(await backend.open(), [acme, globex]);
      for (const role of ['viewer', 'analyst', 'admin'] as const) {
        const created = await api.call('POST', '/api/v1/users', ADMIN_TOKEN, {
          username: `${role}-${suffix}`,
          password: PASSWORD,
          role,
          tenants: [acme],
        });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        ids[role] = created.body.id;
        const login = await api.call('POST', LOGIN_PATH, undefined, {
          username: `${role}-${suffix}`,
          password: PASSWORD,
        });
        assert.equal(login.status, 200, JSON.stringify(login.body));
        assert.match(login.body.token, /^vgs_/);
        tokens[role] = login.body.token;
      }
      const inc = await api.call('POST', '/api/v1/incidents', tokens.analyst, { title: 'Seed', severity: 'low' });
      assert.equal(inc.status, 201, JSON.stringify(inc.body));
      incidentId = inc.body.id;
    });
    after(async () => {
      await api?.server.stop(Date.now() + 1000);
    });

    let n = 0;
    const ROUTES: { name: string; min: Role; ok: number; req: () => [string, string, unknown?] }[] = [
      { name: 'list incidents', min: 'viewer', ok: 200, req: () => ['GET', '/api/v1/incidents'] },
      { name: 'read an incident', min: 'viewer', ok: 200, req: () => ['GET', `/api/v1/incidents/${incidentId}`] },
      {
        name: 'read a timeline',
        min: 'viewer',
        ok: 200,
        req: () => ['GET', `/api/v1/incidents/${incidentId}/timeline`],
      },
      { name: 'list rejected alerts', min: 'viewer', ok: 200, req: () => ['GET', '/api/v1/incidents/rejected-alerts'] },
      { name: 'see who it is', min: 'viewer', ok: 200, req: () => ['GET', '/api/v1/auth/me'] },
      { name: 'list its own keys', min: 'viewer', ok: 200, req: () => ['GET', '/api/v1/keys'] },
      {
        name: 'create an incident',
        min: 'analyst',
        ok: 201,
        req: () => ['POST', '/api/v1/incidents', { title: `manual ${++n}`, severity: 'high' }],
      },
      {
        name: 'change an incident',
        min: 'analyst',
        ok: 200,
        req: () => ['PATCH', `/api/v1/incidents/${incidentId}`, { assignee: `user${++n}` }],
      },
      {
        name: 'comment on an incident',
        min: 'analyst',
        ok: 201,
        req: () => ['POST', `/api/v1/incidents/${incidentId}/comments`, { body: 'looking' }],
      },
      {
        name: 'change incidents in bulk',
        min: 'analyst',
        ok: 200,
        req: () => ['POST', '/api/v1/incidents/bulk', { ids: [incidentId], tags: [`t${++n}`] }],
      },
      { name: 'list users', min: 'admin', ok: 200, req: () => ['GET', '/api/v1/users'] },
      {
        name: 'create a user',
        min: 'admin',
        ok: 201,
        req: () => ['POST', '/api/v1/users', { username: `new${++n}-${suffix}`, password: PASSWORD, role: 'viewer' }],
      },
      { name: 'read the audit log', min: 'admin', ok: 200, req: () => ['GET', '/api/v1/audit'] },
      { name: 'list dead letters', min: 'admin', ok: 200, req: () => ['GET', '/api/v1/notifications/dead-letters'] },
    ];
    const RANK: Record<Role, number> = { viewer: 0, analyst: 1, admin: 2 };

    describe('authorization by role', () => {
      for (const route of ROUTES) {
        for (const role of ['viewer', 'analyst', 'admin'] as const) {
          const allowed = RANK[role] >= RANK[route.min];
          test(`a ${role} ${allowed ? 'may' : 'may not'} ${route.name}`, async () => {
            const [method, path, body] = route.req();
            const res = await api.call(method, path, tokens[role], body);
            assert.equal(res.status, allowed ? route.ok : 403, JSON.stringify(res.body));
            if (!allowed) assert.equal(res.body.error.code, 'forbidden');
          });
        }
        test(`without a token nobody may ${route.name}`, async () => {
          const [method, path, body] = route.req();
          assert.equal((await api.call(method, path, undefined, body)).status, 401);
        });
      }
    });

    test('a principal sees and creates incidents only in its tenants', async () => {
      const theirs = await api.call('POST', '/api/v1/incidents', ADMIN_TOKEN, {
        tenant: globex,
        title: 'x',
        severity: 'low',
      });
      assert.equal(theirs.status, 201);
      assert.equal((await api.call('GET', `/api/v1/incidents/${theirs.body.id}`, tokens.admin)).status, 404);
      assert.equal(
        (await api.call('PATCH', `/api/v1/incidents/${theirs.body.id}`, tokens.analyst, { status: 'resolved' })).status,
        404,
      );
      const list = await api.call('GET', '/api/v1/incidents?limit=1000', tokens.viewer);
      assert.ok(list.body.incidents.every((i: any) => i.tenant === acme));
      const create = await api.call('POST', '/api/v1/incidents', tokens.analyst, {
        tenant: globex,
        title: 'x',
        severity: 'low',
      });
      assert.equal(create.status, 403);
      const grant = await api.call('POST', '/api/v1/users', tokens.admin, {
        username: `wider-${suffix}`,
        password: PASSWORD,
        role: 'viewer',
        tenants: [globex],
      });
      assert.equal(grant.status, 403, 'an admin grants only tenants it has');
    });

    test('an invalid transition answers 409 with the reason, an unknown field 400', async () => {
      const inc = await api.call('POST', '/api/v1/incidents', tokens.analyst, { title: 't', severity: 'low' });
      assert.equal(
        (await api.call('PATCH', `/api/v1/incidents/${inc.body.id}`, tokens.analyst, { status: 'resolved' })).status,
        200,
      );
      const back = await api.call('PATCH', `/api/v1/incidents/${inc.body.id}`, tokens.analyst, { status: 'new' });
      assert.equal(back.status, 409);
      assert.equal(back.body.error.code, 'invalid_transition');
      assert.match(back.body.error.message, /never goes back to new/);
      const typo = await api.call('PATCH', `/api/v1/incidents/${inc.body.id}`, tokens.analyst, { stauts: 'new' });
      assert.equal(typo.status, 400);
      const timeline = await api.call('GET', `/api/v1/incidents/${inc.body.id}/timeline`, tokens.viewer);
      assert.deepEqual(
        timeline.body.timeline.map((e: any) => e.action),
        ['created', 'status'],
      );
    });

    test('failed logins are limited per username and address: the sixth within a minute answers 429', async () => {
      const username = `analyst-${suffix}`;
      for (let i = 0; i < 5; i++) {
        const r = await api.call('POST', LOGIN_PATH, undefined, { username, password: 'wrong password!' });
        assert.equal(r.status, 401);
      }
      const limited = await api.call('POST', LOGIN_PATH, undefined, { username, password: PASSWORD });
      assert.equal(limited.status, 429, 'even the right password waits');
      assert.ok(Number(limited.headers.get('retry-after')) >= 1);
      const other = await api.call('POST', LOGIN_PATH, undefined, { username: `viewer-${suffix}`, password: PASSWORD });
      assert.equal(other.status, 200, 'another username is not limited');
      const unknown = await api.call('POST', LOGIN_PATH, undefined, { username: 'nobody', password: PASSWORD });
      assert.equal(unknown.status, 401);
      const text = await api.metrics.metrics();
      assert.match(text, /vigil_auth_login_failures_total\{reason="bad_credentials"\} [6-9]/);
      assert.match(text, /vigil_auth_login_failures_total\{reason="rate_limited"\} 1/);
      clockOffsetMs += 61_000;
      assert.equal((await api.call('POST', LOGIN_PATH, undefined, { username, password: PASSWORD })).status, 200);
    });

    test('an API key acts within its scopes, is shown once, and stops working when revoked or expired', async () => {
      const read = await api.call('POST', '/api/v1/keys', tokens.analyst, { name: 'ro', scopes: ['read'] });
      assert.equal(read.status, 201, JSON.stringify(read.body));
      assert.match(read.body.token, /^vgk_/);
      const write = await api.call('POST', '/api/v1/keys', tokens.analyst, { name: 'rw', scopes: ['read', 'write'] });
      const me = await api.call('GET', '/api/v1/auth/me', read.body.token);
      assert.deepEqual([me.body.role, me.body.via, me.body.scopes], ['viewer', 'api_key', ['read']]);
      assert.equal((await api.call('GET', '/api/v1/incidents', read.body.token)).status, 200);
      const patch = { assignee: 'someone' };
      assert.equal((await api.call('PATCH', `/api/v1/incidents/${incidentId}`, read.body.token, patch)).status, 403);
      assert.equal((await api.call('PATCH', `/api/v1/incidents/${incidentId}`, write.body.token, patch)).status, 200);
      const tooWide = await api.call('POST', '/api/v1/keys', tokens.viewer, { name: 'x', scopes: ['write'] });
      assert.equal(tooWide.status, 400);
      const adminKeyForAnalyst = await api.call('POST', '/api/v1/keys', tokens.analyst, {
        name: 'x',
        scopes: ['admin'],
      });
      assert.equal(adminKeyForAnalyst.status, 400);
      const listed = await api.call('GET', '/api/v1/keys', tokens.analyst);
      assert.ok(listed.body.keys.length >= 2);
      assert.ok(JSON.stringify(listed.body).indexOf(read.body.token) < 0, 'the secret is never listed');
      assert.equal((await api.call('DELETE', `/api/v1/keys/${read.body.id}`, tokens.viewer)).status, 403, 'not yours');
      assert.equal((await api.call('DELETE', `/api/v1/keys/${read.body.id}`, tokens.analyst)).status, 200);
      const revoked = await api.call('GET', '/api/v1/incidents', read.body.token);
      assert.equal(revoked.status, 401);
      assert.match(revoked.body.error.message, /revoked/);
      const brief = await api.call('POST', '/api/v1/keys', tokens.analyst, {
        name: 'brief',
        scopes: ['read'],
        expiresInDays: 1 / 86400,
      });
      assert.equal((await api.call('GET', '/api/v1/incidents', brief.body.token)).status, 200);
      await new Promise((r) => setTimeout(r, 1100));
      const expired = await api.call('GET', '/api/v1/incidents', brief.body.token);
      assert.equal(expired.status, 401);
      assert.match(expired.body.error.message, /expired/);
    });

    test('logout ends the session; disabling a user ends theirs; the bootstrap admin token keeps working', async () => {
      const username = `leaver-${suffix}`;
      const u = await api.call('POST', '/api/v1/users', tokens.admin, {
        username,
        password: PASSWORD,
        role: 'analyst',
      });
      assert.equal(u.status, 201);
      const s1 = (await api.call('POST', LOGIN_PATH, undefined, { username, password: PASSWORD })).body.token;
      const s2 = (await api.call('POST', LOGIN_PATH, undefined, { username, password: PASSWORD })).body.token;
      assert.equal((await api.call('POST', '/api/v1/auth/logout', s1)).status, 200);
      assert.equal((await api.call('GET', '/api/v1/auth/me', s1)).status, 401);
      assert.equal((await api.call('GET', '/api/v1/auth/me', s2)).status, 200);
      assert.equal(
        (await api.call('PATCH', `/api/v1/users/${u.body.id}`, tokens.admin, { disabled: true })).status,
        200,
      );
      assert.equal((await api.call('GET', '/api/v1/auth/me', s2)).status, 401);
      assert.equal((await api.call('POST', LOGIN_PATH, undefined, { username, password: PASSWORD })).status, 401);
      const me = await api.call('GET', '/api/v1/auth/me', ADMIN_TOKEN);
      assert.deepEqual([me.body.name, me.body.role, me.body.via], ['admin', 'admin', 'admin_token']);
    });

    test('user, key, login and incident changes are in the audit log, newest first, readable by admins', async () => {
      const res = await api.call('GET', '/api/v1/audit?limit=10000', tokens.admin);
      assert.equal(res.status, 200);
      const actions = new Set(res.body.entries.map((e: any) => e.action));
      for (const a of ['user.create', 'user.update', 'api_key.create', 'api_key.revoke', 'auth.login', 'auth.logout']) {
        assert.ok(actions.has(a), `${a} is audited`);
      }
      for (const a of ['incident.create', 'incident.update', 'incident.comment'])
        assert.ok(actions.has(a), `${a} is audited`);
      const ids = res.body.entries.map((e: any) => e.id);
      assert.deepEqual(
        ids,
        [...ids].sort((a: number, b: number) => b - a),
      );
      assert.ok(JSON.stringify(res.body).indexOf(PASSWORD) < 0, 'no password in the audit log');
      const byActor = await api.call(
        'GET',
        `/api/v1/audit?actor=analyst-${suffix}&action=incident.create`,
        tokens.admin,
      );
      assert.ok(byActor.body.entries.length >= 1);
      assert.ok(
        byActor.body.entries.every((e: any) => e.actor === `analyst-${suffix}` && e.action === 'incident.create'),
      );
    });
  });
}
