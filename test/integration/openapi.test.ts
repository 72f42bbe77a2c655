import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type App, createApp } from '../../src/app/index.ts';
import { configSchema } from '../../src/config/schema.ts';
import { silentLogger } from '../../src/lib/logger.ts';

// GET /api/v1/openapi.json (issue 18): made by @fastify/swagger from the schemas routes declare; every route
// the node mounts is in it, and the main routes document their parameters, bodies and answers.

const dataDir = mkdtempSync(join(tmpdir(), 'vigil-openapi-'));
const token = 'openapi-admin-token-0123456789abcdef';
let app: App;
let url = '';

before(async () => {
  const config = configSchema.parse({
    data_dir: dataDir,
    auth: { admin_token: token },
    log: { level: 'silent' },
    http: { addr: '127.0.0.1:0' },
    syslog: { enabled: false },
    store: { fsync: false },
  });
  app = createApp(config, silentLogger);
  await app.start();
  const addr = app.api!.address();
  url = `http://${addr.host}:${addr.port}`;
});

after(async () => {
  await app?.stop(Date.now() + 10_000);
  rmSync(dataDir, { recursive: true, force: true });
});

interface Operation {
  summary?: string;
  parameters?: { in: string; name: string; required?: boolean }[];
  requestBody?: { content: Record<string, { schema: unknown }> };
  responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> }>;
}

async function document(): Promise<{ openapi: string; paths: Record<string, Record<string, Operation>> }> {
  // Open, like the health checks: tools fetch it without a token.
  const res = await fetch(`${url}/api/v1/openapi.json`);
  assert.equal(res.status, 200);
  return (await res.json()) as { openapi: string; paths: Record<string, Record<string, Operation>> };
}

const openapiPath = (route: string) => route.replace(/:(\w+)/g, '{$1}').replace(/\*$/, '{*}');

test('every route the node mounts is in the OpenAPI document', async () => {
  const doc = await document();
  assert.match(doc.openapi, /^3\./);
  const routes = app.api!.routes();
  assert.ok(routes.length > 40, `${routes.length} routes`);
  const missing = routes.filter((r) => {
    const ops = doc.paths[openapiPath(r.url)] ?? doc.paths[r.url];
    return !ops?.[r.method.toLowerCase()];
  });
  assert.deepEqual(missing, []);
});

test('the main routes document their parameters, bodies and answers', async () => {
  const doc = await document();
  const op = (method: string, path: string) => {
    const found = doc.paths[path]?.[method];
    assert.ok(found, `${method} ${path}`);
    assert.ok(found.summary, `${method} ${path} has a summary`);
    assert.ok(found.responses['4XX'], `${method} ${path} documents its error answer`);
    return found;
  };
  const names = (o: Operation, where: string) => (o.parameters ?? []).filter((p) => p.in === where).map((p) => p.name);
  assert.deepEqual(names(op('get', '/api/v1/search'), 'query').sort(), ['from', 'limit', 'q', 'to']);
  assert.ok(op('get', '/api/v1/search').parameters?.find((p) => p.name === 'q')?.required);
  assert.ok(names(op('get', '/api/v1/alerts'), 'query').includes('status'));
  assert.ok(names(op('get', '/api/v1/incidents'), 'query').includes('cursor'));
  assert.deepEqual(names(op('get', '/api/v1/alerts/{id}'), 'path'), ['id']);
  assert.ok(op('post', '/api/v1/ingest').requestBody?.content['application/x-ndjson']);
  assert.ok(op('post', '/api/v1/rules').requestBody?.content['application/yaml']);
  const login = op('post', '/api/v1/auth/login');
  assert.ok(login.requestBody?.content['application/json']);
  const answer = op('get', '/api/v1/alerts').responses['200'].content?.['application/json'].schema;
  assert.deepEqual(Object.keys((answer?.properties as object) ?? {}).sort(), ['alerts', 'total']);
  for (const [method, path] of [
    ['get', '/api/v1/rules'],
    ['patch', '/api/v1/incidents/{id}'],
    ['get', '/api/v1/users'],
    ['get', '/health/ready'],
  ]) {
    assert.ok(op(method, path).responses['200'], `${method} ${path} documents its answer`);
  }
});

test('declared schemas leave answers and input errors as the routes make them', async () => {
  const auth = { authorization: `Bearer ${token}` };
  // A property no response schema names is still sent (answers are never filtered by the schema).
  const ready = (await (await fetch(`${url}/health/ready`)).json()) as { checks: Record<string, unknown> };
  assert.ok(Object.keys(ready.checks).length > 3);
  // The route's own error code, not a schema validation error.
  const noQuery = await fetch(`${url}/api/v1/search`, { headers: auth });
  assert.equal(noQuery.status, 400);
  assert.notEqual(((await noQuery.json()) as { error: { code: string } }).error.code, 'validation');
  const badJson = await fetch(`${url}/api/v1/alerts/x`, {
    method: 'PATCH',
    headers: { ...auth, 'content-type': 'application/json' },
    body: '{',
  });
  assert.equal(((await badJson.json()) as { error: { code: string } }).error.code, 'malformed_json');
});
