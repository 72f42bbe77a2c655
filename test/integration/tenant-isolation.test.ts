import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { httpConfigSchema } from '../../src/api/config.ts';
import { incidentRoutes } from '../../src/api/routes/incidents.ts';
import { ruleRoutes } from '../../src/api/routes/rules.ts';
import { LOGIN_PATH, userRoutes } from '../../src/api/routes/users.ts';
import { type ApiServer, createApiServer } from '../../src/api/server.ts';
import { type Alert, createDetector, type Detector, detectConfigSchema } from '../../src/detect/index.ts';
import { type Db, migrate } from '../../src/db/index.ts';
import { createIncidentService, type IncidentComponent, incidentsConfigSchema } from '../../src/incidents/index.ts';
import type { NormalizedEvent } from '../../src/lib/event.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import {
  createAuditLog,
  createUserAuthenticator,
  createUserService,
  type Role,
  usersConfigSchema,
} from '../../src/users/index.ts';
import { type Reply, readReply } from '../harness/http.ts';
import { failedLogonRule, memoryAlertStore } from '../harness/planted-rules.ts';
import { ALL_MIGRATIONS, makeAlert, openPgliteFromTemplate } from '../harness/postgres.ts';

// Two tenants on one node: everything one tenant's principals do to the other's rules, audit entries, alerts
// and keys must answer exactly as for an id that does not exist, and detection keeps their rules apart.

const ADMIN_TOKEN = 'bootstrap-admin-token-tenant-isolation';
const PASSWORD = 'tenant isolation passphrase 7';
const TENANTS = ['acme', 'globex'] as const;
type Tenant = (typeof TENANTS)[number];

const failedLogon = (tenant: string, n: number): NormalizedEvent => ({
  id: `${tenant}-event-${n}`,
  timestamp: Date.now(),
  ingested: Date.now(),
  tenant,
  source: 'http',
  layout: 'windows',
  logsource: { product: 'windows', service: 'security' },
  raw: '',
  fields: { EventID: 4625, Channel: 'Security', 'host.name': `${tenant}-dc` },
});

/** The answer with `id` replaced by a marker: two answers about different ids compare equal when only the id differs. */
const shape = (r: Reply, id: string) => ({ status: r.status, body: JSON.stringify(r.body).replaceAll(id, '<id>') });

describe('tenants are isolated: rules, detection, audit, alert and key ids', () => {
  const root = mkdtempSync(join(tmpdir(), 'vigil-tenants-'));
  const saved: Alert[] = [];
  let server: ApiServer;
  let detector: Detector;
  let incidents: IncidentComponent;
  let db: Db;
  let url = '';
  const tokens = {} as Record<Tenant, Record<Role, string>>;
  const userIds = {} as Record<Tenant, Record<Role, string>>;

  const call = async (method: string, path: string, token: string, body?: unknown, type = 'application/json') => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': type }),
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return readReply(res);
  };
  const yaml = (method: string, path: string, token: string, text: string) =>
    call(method, path, token, text, 'application/yaml');

  before(async () => {
    db = await openPgliteFromTemplate();
    await migrate(db, ALL_MIGRATIONS);
    const metrics = new Registry();
    const audit = createAuditLog(db);
    const users = createUserService(usersConfigSchema.parse({ scrypt_log_n: 10 }), {
      db,
      audit,
      metrics,
      logger: silentLogger,
    });
    incidents = createIncidentService(incidentsConfigSchema.parse({}), { db, metrics, logger: silentLogger, audit });
    // Alerts are kept in memory: the alert store is not what these tests are about.
    const alerts = memoryAlertStore(saved);
    detector = createDetector(detectConfigSchema.parse({ starter_rules: false }), {
      dataDir: join(root, 'data'),
      alerts,
      metrics,
      logger: silentLogger,
    });
    await detector.start();
    const auth = createUserAuthenticator(db, { adminToken: ADMIN_TOKEN, adminTenants: [...TENANTS] });
    server = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0' }), {
      auth,
      metrics,
      logger: silentLogger,
      routes: [incidentRoutes({ incidents }), userRoutes({ users, audit }), ruleRoutes({ detector, audit })],
    });
    await incidents.start();
    await server.start();
    url = `http://127.0.0.1:${server.address().port}`;
    for (const tenant of TENANTS) {
      tokens[tenant] = {} as Record<Role, string>;
      userIds[tenant] = {} as Record<Role, string>;
      for (const role of ['viewer', 'analyst', 'admin'] as const) {
        const username = `${role}-${tenant}`;
        const created = await call('POST', '/api/v1/users', ADMIN_TOKEN, {
          username,
          password: PASSWORD,
          role,
          tenants: [tenant],
        });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        userIds[tenant][role] = created.body.id;
        const login = await fetch(`${url}${LOGIN_PATH}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username, password: PASSWORD }),
        });
        assert.equal(login.status, 200);
        tokens[tenant][role] = ((await login.json()) as { token: string }).token;
      }
    }
  });
  after(async () => {
    await server?.stop(Date.now() + 1000);
    await incidents?.stop(Date.now() + 1000);
    await detector?.stop(Date.now() + 1000);
    await db?.close();
    rmSync(root, { recursive: true, force: true });
  });

  test("another tenant's rule answers as a rule that does not exist, to read, list, disable, change or delete", async () => {
    const id = 'acme-failed-logon';
    const created = await yaml('POST', '/api/v1/rules', tokens.acme.analyst, failedLogonRule(id, 'Acme failed logon'));
    assert.equal(created.status, 201, JSON.stringify(created.body));

    const missing = 'no-such-rule';
    const g = tokens.globex;
    const pairs: [string, string, string, unknown?][] = [
      ['GET', '/api/v1/rules/', g.viewer],
      ['PATCH', '/api/v1/rules/', g.analyst, { enabled: false }],
      ['DELETE', '/api/v1/rules/', g.analyst],
    ];
    for (const [method, path, token, body] of pairs) {
      const foreign = await call(method, `${path}${id}`, token, body);
      const absent = await call(method, `${path}${missing}`, token, body);
      assert.equal(foreign.status, 404, `${method} of another tenant's rule: ${JSON.stringify(foreign.body)}`);
      assert.deepEqual(shape(foreign, id), shape(absent, missing), `${method}: the same answer as for no rule`);
    }
    const put = await yaml('PUT', `/api/v1/rules/${id}`, g.analyst, failedLogonRule(id, 'Taken over'));
    const putAbsent = await yaml('PUT', `/api/v1/rules/${missing}`, g.analyst, failedLogonRule(missing, 'Taken over'));
    assert.deepEqual(shape(put, id), shape(putAbsent, missing));
    assert.equal(put.status, 404);

    const listed = await call('GET', '/api/v1/rules', g.viewer);
    assert.equal(listed.status, 200);
    assert.ok(!listed.body.rules.some((r: any) => r.id === id), "another tenant's rule is not listed");
    const own = await call('GET', `/api/v1/rules/${id}`, tokens.acme.viewer);
    assert.equal(own.status, 200);
    assert.match(own.body, /Acme failed logon/, 'its own viewers read the source');
    assert.equal(created.body.tenant, 'acme', "a rule goes to the caller's only tenant by default");
    const still = (await call('GET', '/api/v1/rules', tokens.acme.viewer)).body.rules.find((r: any) => r.id === id);
    assert.equal(still.enabled, true, 'the rule is still enabled after the other tenant tried to disable it');

    // The same id in the other tenant is a rule of its own, not a conflict that tells the first one exists.
    const twin = await yaml('POST', '/api/v1/rules', g.analyst, failedLogonRule(id, 'Globex failed logon'));
    assert.equal(twin.status, 201, JSON.stringify(twin.body));
    assert.equal((await call('DELETE', `/api/v1/rules/${id}`, g.analyst)).status, 200);
    assert.equal((await call('GET', `/api/v1/rules/${id}`, tokens.acme.viewer)).status, 200, 'acme keeps its rule');
  });

  test('global rules: only a global admin adds or changes one; every tenant sees it', async () => {
    const id = 'global-failed-logon';
    const text = failedLogonRule(id, 'Global failed logon');
    const byTenantAdmin = await yaml('POST', '/api/v1/rules?scope=global', tokens.acme.admin, text);
    assert.equal(byTenantAdmin.status, 403);
    assert.equal(byTenantAdmin.body.error.code, 'forbidden_scope');
    const created = await yaml('POST', '/api/v1/rules?scope=global', ADMIN_TOKEN, text);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.tenant, null);
    for (const tenant of TENANTS) {
      assert.equal((await call('GET', `/api/v1/rules/${id}`, tokens[tenant].viewer)).status, 200);
      const disable = await call('PATCH', `/api/v1/rules/${id}`, tokens[tenant].admin, { enabled: false });
      assert.equal(disable.status, 403, 'a tenant admin may not disable a global rule');
      assert.equal(disable.body.error.code, 'forbidden_scope');
    }
    const clash = await yaml('POST', '/api/v1/rules', tokens.acme.analyst, failedLogonRule(id, 'Shadow'));
    assert.equal(clash.status, 409, "a tenant rule may not take a global rule's id");
    assert.equal((await call('PATCH', `/api/v1/rules/${id}`, ADMIN_TOKEN, { enabled: true })).status, 200);
  });

  test("a tenant's rule fires on its own events only; a global rule on every tenant's, alerting in the event's tenant", async () => {
    const before = saved.length;
    await detector.handle([failedLogon('acme', 1), failedLogon('globex', 1)]);
    const fired = saved.slice(before).map((a) => `${a.rule.id}@${a.tenant}`);
    assert.deepEqual(fired.sort(), [
      'acme-failed-logon@acme',
      'global-failed-logon@acme',
      'global-failed-logon@globex',
    ]);
  });

  test("the audit log shows a tenant's admin its own tenant's entries only; a global admin sees all", async () => {
    const acme = await call('GET', '/api/v1/audit?limit=10000', tokens.acme.admin);
    assert.equal(acme.status, 200);
    const leaked = acme.body.entries.filter((e: any) => JSON.stringify(e).includes('globex'));
    assert.deepEqual(leaked, [], 'no entry about the other tenant');
    const actions = new Set(acme.body.entries.map((e: any) => e.action));
    for (const a of ['user.create', 'auth.login', 'rule.create']) assert.ok(actions.has(a), `${a} of its own tenant`);
    const logins = acme.body.entries.filter((e: any) => e.action === 'auth.login').map((e: any) => e.actor);
    assert.deepEqual([...new Set(logins)].sort(), ['admin-acme', 'analyst-acme', 'viewer-acme']);

    const all = await call('GET', '/api/v1/audit?limit=10000', ADMIN_TOKEN);
    const everyone = new Set(all.body.entries.filter((e: any) => e.action === 'auth.login').map((e: any) => e.actor));
    assert.equal(everyone.size, 6, 'the global admin sees the logins of both tenants');
    assert.ok(
      all.body.entries.some((e: any) => e.action === 'rule.create' && e.target === 'rule:global-failed-logon'),
      'and global rule changes',
    );
  });

  test("another tenant's alert id is an unknown id to a manual incident, and does not swallow that tenant's alert", async () => {
    const foreign = 'alert-of-globex-0001';
    const theirs = await call('POST', '/api/v1/incidents', tokens.globex.analyst, {
      title: 'Globex case',
      alertIds: [foreign],
    });
    assert.equal(theirs.status, 201, JSON.stringify(theirs.body));
    const withForeign = await call('POST', '/api/v1/incidents', tokens.acme.analyst, {
      title: 'Probe',
      alertIds: [foreign],
    });
    const withUnknown = await call('POST', '/api/v1/incidents', tokens.acme.analyst, {
      title: 'Probe',
      alertIds: ['alert-that-never-was'],
    });
    assert.equal(withForeign.status, withUnknown.status);
    assert.equal(withForeign.status, 201, JSON.stringify(withForeign.body));
    assert.ok(!JSON.stringify(withForeign.body).includes(theirs.body.id), "no word of the other tenant's incident");
    const again = await call('POST', '/api/v1/incidents', tokens.acme.analyst, { title: 'Again', alertIds: [foreign] });
    assert.equal(again.status, 409, 'within a tenant, an alert still belongs to one incident');
    assert.equal(again.body.error.code, 'alert_taken');

    // A tenant that links another's (future) alert id does not stop that alert from being grouped.
    const planted = 'alert-acme-future-0001';
    assert.equal(
      (await call('POST', '/api/v1/incidents', tokens.globex.analyst, { title: 'Squat', alertIds: [planted] })).status,
      201,
    );
    const result = await incidents.ingestAlerts([makeAlert({ id: planted, tenant: 'acme' })]);
    assert.equal(result.duplicates, 0);
    assert.equal(result.incidentIds.length, 1);
  });

  test("revoking another tenant's key answers as a key that does not exist, naming nobody", async () => {
    const key = await call('POST', '/api/v1/keys', tokens.globex.admin, { name: 'ci', scopes: ['read'] });
    assert.equal(key.status, 201, JSON.stringify(key.body));
    const missing = 'ffffffffffffffff';
    for (const role of ['viewer', 'admin'] as const) {
      const foreign = await call('DELETE', `/api/v1/keys/${key.body.id}`, tokens.acme[role]);
      const absent = await call('DELETE', `/api/v1/keys/${missing}`, tokens.acme[role]);
      assert.equal(foreign.status, 404, `${role}: ${JSON.stringify(foreign.body)}`);
      assert.deepEqual(shape(foreign, key.body.id), shape(absent, missing));
      assert.ok(!JSON.stringify(foreign.body).includes(userIds.globex.admin), 'the owner is not named');
    }
    const after = await call('GET', '/api/v1/keys', tokens.globex.admin);
    assert.equal(after.body.keys.find((k: any) => k.id === key.body.id).revokedAt, null, 'the key is not revoked');
  });

  test("the global admin creates and manages a new tenant's users; a tenant's admin cannot grant it", async () => {
    // `initech` is none of the admin token's tenants (its list is the intake tenants).
    const created = await call('POST', '/api/v1/users', ADMIN_TOKEN, {
      username: 'admin-initech',
      password: PASSWORD,
      role: 'admin',
      tenants: ['initech'],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual(created.body.tenants, ['initech']);
    assert.equal((await call('GET', `/api/v1/users/${created.body.id}`, ADMIN_TOKEN)).status, 200);
    const listed = await call('GET', '/api/v1/users', ADMIN_TOKEN);
    assert.ok(listed.body.users.some((u: any) => u.id === created.body.id));
    const patched = await call('PATCH', `/api/v1/users/${created.body.id}`, ADMIN_TOKEN, { role: 'analyst' });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));

    const bad = await call('POST', '/api/v1/users', ADMIN_TOKEN, {
      username: 'bad-tenant',
      password: PASSWORD,
      role: 'viewer',
      tenants: ['../etc'],
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'bad_tenants');

    const widening = await call('POST', '/api/v1/users', tokens.acme.admin, {
      username: 'sneaky',
      password: PASSWORD,
      role: 'viewer',
      tenants: ['initech'],
    });
    assert.equal(widening.status, 403);
    assert.equal(widening.body.error.code, 'forbidden_tenant');
    assert.equal((await call('GET', `/api/v1/users/${created.body.id}`, tokens.acme.admin)).status, 404);
  });

  // Last: the move's entry names globex to acme's admin, which the audit test above forbids.
  test("moving a user from one tenant to another: the audit entry is shown to both tenants' admins", async () => {
    const created = await call('POST', '/api/v1/users', ADMIN_TOKEN, {
      username: 'mover',
      password: PASSWORD,
      role: 'viewer',
      tenants: ['acme'],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const moved = await call('PATCH', `/api/v1/users/${created.body.id}`, ADMIN_TOKEN, { tenants: ['globex'] });
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    for (const tenant of ['acme', 'globex'] as const) {
      const seen = await call('GET', '/api/v1/audit?limit=10000', tokens[tenant].admin);
      assert.ok(
        seen.body.entries.some((e: any) => e.action === 'user.update' && e.target === `user:${created.body.id}`),
        `${tenant}'s admin sees the move`,
      );
    }
  });
});
