import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Ajv } from 'ajv';
import { type App, createApp } from '../../src/app/index.ts';
import { configSchema } from '../../src/config/schema.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import { createConformance } from '../harness/openapi.ts';

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
  // Ready means the database answers (it opens in the background: seconds of CPU on a loaded machine).
  const deadline = Date.now() + 120_000;
  while ((await fetch(`${url}/health/ready`)).status !== 200) {
    assert.ok(Date.now() < deadline, 'the node became ready within 120 s');
    await new Promise((r) => setTimeout(r, 200));
  }
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

test('requests and answers of a session through the API validate against the document', async () => {
  const doc = await document();
  const ajv = new Ajv({ strict: false, allErrors: true });
  const auth = { authorization: `Bearer ${token}` };
  let checked = 0;
  const call = async (method: string, template: string, opts: { path?: string; body?: string; type?: string } = {}) => {
    const op = doc.paths[template]?.[method.toLowerCase()];
    assert.ok(op, `${method} ${template} is documented`);
    const type = opts.type ?? 'application/json';
    if (opts.body !== undefined && type === 'application/json') {
      const schema = op.requestBody?.content[type]?.schema;
      assert.ok(schema, `${method} ${template} documents its JSON body`);
      assert.ok(
        ajv.validate(schema as object, JSON.parse(opts.body)),
        `${method} ${template} request: ${ajv.errorsText()}`,
      );
    }
    const res = await fetch(`${url}${opts.path ?? template}`, {
      method,
      headers: { ...auth, ...(opts.body === undefined ? {} : { 'content-type': type }) },
      body: opts.body,
    });
    const text = await res.text();
    const answer = op.responses[String(res.status)] ?? op.responses[`${String(res.status)[0]}XX`];
    assert.ok(answer, `${method} ${template} documents status ${res.status}: ${text}`);
    const schema = answer.content?.['application/json']?.schema;
    if (schema && res.headers.get('content-type')?.startsWith('application/json')) {
      assert.ok(
        ajv.validate(schema, JSON.parse(text)),
        `${method} ${template} ${res.status}: ${ajv.errorsText()}: ${text.slice(0, 300)}`,
      );
      checked++;
    }
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
  };
  const ingest = await call('POST', '/api/v1/ingest', {
    body: '{"EventID":1102,"Channel":"Security","Hostname":"dc-1"}\n{"message":"hello","host.name":"h"}\n',
    type: 'application/x-ndjson',
  });
  assert.equal(ingest.status, 200);
  await call('GET', '/api/v1/search', { path: '/api/v1/search?q=*&from=now-1h' });
  await call('GET', '/api/v1/search', { path: '/api/v1/search?q=*%20%7C%20stats%20count()%20by%20host.name' });
  assert.equal((await call('GET', '/api/v1/search')).status, 400);
  // The starter rule on event 1102 raises an alert and an incident.
  // Generous: on a loaded machine the database may still be opening (readiness waits for it at most 30 s).
  const deadline = Date.now() + 60000;
  let incidents = { incidents: [] as { id: string }[] };
  while (Date.now() < deadline) {
    await call('GET', '/api/v1/alerts');
    incidents = (await call('GET', '/api/v1/incidents')).body as typeof incidents;
    if (incidents.incidents.length > 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(incidents.incidents.length > 0);
  await call('GET', '/api/v1/incidents/{id}', { path: `/api/v1/incidents/${incidents.incidents[0].id}` });
  assert.equal((await call('GET', '/api/v1/alerts/{id}', { path: '/api/v1/alerts/none' })).status, 404);
  await call('GET', '/api/v1/rules');
  const rule = `title: Conformance
id: 0a0a0a0a-0000-4000-8000-000000000001
logsource: { product: windows, service: security }
detection: { selection: { EventID: 4624 }, condition: selection }
level: low
`;
  assert.equal((await call('POST', '/api/v1/rules', { body: rule, type: 'application/yaml' })).status, 201);
  await call('PATCH', '/api/v1/rules/{id}', {
    path: '/api/v1/rules/0a0a0a0a-0000-4000-8000-000000000001',
    body: '{"enabled":false}',
  });
  await call('GET', '/api/v1/auth/me');
  const created = await call('POST', '/api/v1/users', {
    body: '{"username":"carol","password":"a long enough passphrase 42","role":"analyst"}',
  });
  assert.equal(created.status, 201);
  await call('GET', '/api/v1/users');
  await call('GET', '/api/v1/users/{id}', { path: `/api/v1/users/${created.body?.id}` });
  const login = await call('POST', '/api/v1/auth/login', {
    body: '{"username":"carol","password":"a long enough passphrase 42"}',
  });
  assert.equal(login.status, 200);
  await call('GET', '/health/ready');
  await call('GET', '/health/live');
  assert.ok(checked >= 15, `${checked} answers validated`);
});

// Every test that starts a node with test/harness/vigil.ts has each of its exchanges with it checked against
// the node's document (its close fails otherwise). The checker itself:
test('the harness conformance check reports what does not match the document, and only that', async () => {
  const conformance = createConformance(url);
  const ok = { method: 'GET', path: '/api/v1/alerts', status: 200, responseType: 'application/json' };
  await conformance.check({ ...ok, responseBody: '{"alerts":[],"total":0}' });
  await conformance.check({
    ...ok,
    path: '/api/v1/alerts/abc',
    status: 404,
    responseBody: '{"error":{"code":"not_found","message":"no alert abc"}}',
  });
  await conformance.check({ ...ok, path: '/nowhere/at/all', status: 404, responseBody: '' });
  assert.deepEqual(conformance.problems(), []);
  assert.equal(conformance.checked(), 2);
  await conformance.check({ ...ok, responseBody: '{"alerts":"none"}' });
  await conformance.check({ ...ok, responseBody: '{"alerts":"none"}' });
  await conformance.check({ ...ok, status: 302, responseBody: '' });
  await conformance.check({ ...ok, path: '/api/v1/not-a-route', status: 200, responseBody: '{}' });
  await conformance.check({
    method: 'POST',
    path: '/api/v1/auth/login',
    status: 200,
    requestType: 'application/json',
    requestBody: '{"username":42}',
    responseType: 'application/json',
    responseBody: '{}',
  });
  const problems = conformance.problems();
  assert.equal(problems.length, 5, problems.join('\n'));
  assert.match(
    problems[0],
    /GET \/api\/v1\/alerts -> 200: the answer does not match the document: .*alerts.* \(2 times\)/,
  );
  assert.match(problems[1], /GET \/api\/v1\/alerts -> 302: the status is not documented/);
  assert.match(problems[2], /\/api\/v1\/not-a-route -> 200: the route is not in the OpenAPI document/);
  assert.match(problems[3], /POST \/api\/v1\/auth\/login -> 200: the answer does not match the document: .*token/);
  assert.match(problems[4], /POST \/api\/v1\/auth\/login -> 200: the accepted request does not match the document/);
});
