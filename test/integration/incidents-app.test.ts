import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type PostgresServer, startPostgres } from '../harness/postgres.ts';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

// End to end through `bin/vigil start`: alerts from live detection become incidents and signed webhook
// notifications; users log in; all of it survives a restart. Once on embedded PGlite, once on PostgreSQL.

const SECRET = 'app-webhook-secret-0123456789';
const PASSWORD = 'correct horse battery staple';

const FAILED_LOGON = `title: Failed logon
id: 0f5e1a40-0000-4000-8000-00000000b001
status: test
level: high
tags: [attack.credential-access]
logsource:
  product: windows
  service: security
detection:
  selection:
    EventID: 4625
  condition: selection
`;

function failedLogon(user: string, record: number): string {
  return JSON.stringify({
    '@timestamp': new Date(Date.now() - 30000 + record).toISOString(),
    EventID: 4625,
    Channel: 'Security',
    Hostname: 'dc-9',
    RecordNumber: record,
    TargetUserName: user,
  });
}

async function call(node: VigilNode, method: string, path: string, body?: unknown, token = node.token) {
  const res = await fetch(`${node.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

async function waitFor<T>(get: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  // PGlite opens on first use: compiling and starting it takes seconds, more on a busy machine.
  const deadline = Date.now() + 60000;
  let v = await get();
  while (!ok(v)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
    v = await get();
  }
  return v;
}

const BACKENDS: { name: string; env: (pg: PostgresServer) => Promise<Record<string, string>> }[] = [
  { name: 'embedded PGlite', env: async () => ({}) },
  { name: 'PostgreSQL', env: async (pg) => ({ VIGIL_POSTGRES_URL: await pg.createDatabase() }) },
];

describe('incidents, users and notifications in a running node', () => {
  let pg: PostgresServer;
  const deliveries: { id: string; ok: boolean; alert: string }[] = [];
  let hookUrl = '';
  const hook = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      const ok =
        req.headers['x-vigil-signature'] === `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
      deliveries.push({ id: String(req.headers['x-vigil-delivery']), ok, alert: JSON.parse(body).alert.id });
      res.writeHead(200).end();
    });
  });
  before(async () => {
    pg = await startPostgres();
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    hookUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}/`;
  });
  after(async () => {
    hook.closeAllConnections();
    hook.close();
    await pg?.stop();
  });

  for (const backend of BACKENDS) {
    test(`on ${backend.name}: alerts become one incident and one signed webhook each; users log in; both survive a restart`, async () => {
      const rulesDir = mkdtempSync(join(tmpdir(), 'vigil-rules-'));
      writeFileSync(join(rulesDir, 'failed-logon.yml'), FAILED_LOGON);
      const name = `hook-${backend.name.replace(/\W/g, '')}`;
      const node = await startVigil({
        env: {
          ...(await backend.env(pg)),
          VIGIL_DETECT__RULES_DIRS: JSON.stringify([rulesDir]),
          VIGIL_NOTIFY__POLL_INTERVAL_MS: '50',
          VIGIL_NOTIFY__DESTINATIONS: JSON.stringify([{ name, type: 'webhook', url: hookUrl, secret: SECRET }]),
        },
      });
      try {
        const base = backend.name === 'PostgreSQL' ? 2000 : 1000;
        const body = [1, 2, 3].map((i) => failedLogon('mallory', base + i)).join('\n');
        assert.equal((await node.post('/api/v1/ingest', body)).body.accepted, 3);
        const list = await waitFor(
          () => call(node, 'GET', '/api/v1/incidents'),
          (r) => r.body.incidents?.[0]?.alertCount === 3,
          'an incident of three alerts',
        );
        assert.equal(list.body.total, 1);
        const incident = list.body.incidents[0];
        assert.deepEqual([incident.title, incident.severity, incident.status], ['Failed logon on dc-9', 'high', 'new']);
        await waitFor(
          async () => deliveries.filter((d) => d.id && d.ok).length,
          (n) => n >= 3 * (backend.name === 'PostgreSQL' ? 2 : 1),
          'three signed webhook deliveries',
        );

        const user = await call(node, 'POST', '/api/v1/users', {
          username: 'ana',
          password: PASSWORD,
          role: 'analyst',
        });
        assert.equal(user.status, 201, JSON.stringify(user.body));
        const login = await fetch(`${node.url}/api/v1/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username: 'ana', password: PASSWORD }),
        });
        assert.equal(login.status, 200, 'the login route needs no token');
        const session = ((await login.json()) as any).token as string;
        const acked = await call(
          node,
          'PATCH',
          `/api/v1/incidents/${incident.id}`,
          { status: 'acknowledged' },
          session,
        );
        assert.equal(acked.status, 200, JSON.stringify(acked.body));

        await node.kill('SIGTERM');
        await node.restart();
        const again = await call(node, 'GET', `/api/v1/incidents/${incident.id}`, undefined, session);
        assert.equal(again.status, 200, 'the session outlives the restart');
        assert.deepEqual([again.body.status, again.body.alertIds.length], ['acknowledged', 3]);
        assert.equal((await node.post('/api/v1/ingest', body)).body.accepted, 3);
        await new Promise((r) => setTimeout(r, 1000));
        assert.equal(
          (await call(node, 'GET', `/api/v1/incidents/${incident.id}`)).body.alertCount,
          3,
          'a replay adds nothing',
        );
        const audit = await call(node, 'GET', '/api/v1/audit?actor=ana');
        assert.deepEqual(
          audit.body.entries.map((e: any) => e.action),
          ['incident.update', 'auth.login'],
        );
      } finally {
        await node.close();
      }
      const ids = deliveries.map((d) => d.id);
      assert.equal(new Set(ids).size, ids.length, 'each delivery once, across the restart');
    });
  }
});
