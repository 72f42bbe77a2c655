import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { failedLogons, plantedRules } from '../harness/planted-rules.ts';
import { type PostgresServer, startPostgres } from '../harness/postgres.ts';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

// Every alert reaches its incident and its notification (issue 11): a planted rule fires on every event of
// a steady load; the node is killed with SIGKILL 0.3 s after the last acknowledgement (or its incident queue
// is tiny, or its PostgreSQL is down a few seconds), restarted, and then every alert of /api/v1/alerts must
// be linked to exactly one incident and delivered to the webhook under exactly one delivery id.

const EVENTS = 200;
const PER_REQUEST = 10;
const HOSTS = 5;

/** Delivery ids the webhook received, per alert id (a redelivery after a crash keeps its id). */
function webhook(): { server: Server; url: () => string; byAlert: Map<string, Set<string>>; posts: () => number } {
  const byAlert = new Map<string, Set<string>>();
  let posts = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      posts++;
      const alert = JSON.parse(body).alert.id as string;
      const ids = byAlert.get(alert) ?? new Set<string>();
      byAlert.set(alert, ids);
      ids.add(String(req.headers['x-vigil-delivery']));
      res.writeHead(200).end();
    });
  });
  return {
    server,
    url: () => `http://127.0.0.1:${(server.address() as { port: number }).port}/`,
    byAlert,
    posts: () => posts,
  };
}

/** Sends EVENTS failed logons, PER_REQUEST a request, each acknowledged before the next; returns when the last is. */
async function steadyLoad(node: VigilNode, during?: (sent: number) => Promise<void>): Promise<void> {
  for (let sent = 0; sent < EVENTS; sent += PER_REQUEST) {
    const lines = failedLogons('mallory', PER_REQUEST).map((e, i) =>
      JSON.stringify({ ...e, Hostname: `ws-${(sent + i) % HOSTS}` }),
    );
    for (;;) {
      const res = await node.post('/api/v1/ingest', lines.join('\n'));
      if (res.status === 200) break;
      // Pushed back (429/503): the client retries, as a collector does.
      await new Promise((r) => setTimeout(r, 100));
    }
    await during?.(sent + PER_REQUEST);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Outcome {
  alerts: string[];
  linked: Map<string, string[]>;
  notified: Map<string, Set<string>>;
}

async function outcome(node: VigilNode, hook: ReturnType<typeof webhook>): Promise<Outcome> {
  const alerts = await node.get('/api/v1/alerts?limit=10000&from=now-1h');
  assert.equal(alerts.status, 200, JSON.stringify(alerts.body));
  const linked = new Map<string, string[]>();
  const list = await node.get('/api/v1/incidents?limit=1000');
  assert.equal(list.status, 200, JSON.stringify(list.body));
  for (const inc of list.body.incidents as { id: string }[]) {
    const detail = await node.get(`/api/v1/incidents/${inc.id}`);
    for (const a of detail.body.alertIds as string[]) linked.set(a, [...(linked.get(a) ?? []), inc.id]);
  }
  return { alerts: (alerts.body.alerts as { id: string }[]).map((a) => a.id), linked, notified: hook.byAlert };
}

const complete = (o: Outcome) =>
  o.alerts.length >= EVENTS && o.alerts.every((id) => o.linked.get(id)?.length === 1 && o.notified.get(id)?.size === 1);

/** Waits (up to 30 s) until every alert is linked and notified once; asserts it, and logs the figures. */
async function expectEveryAlertDelivered(name: string, node: VigilNode, hook: ReturnType<typeof webhook>) {
  const deadline = Date.now() + 30_000;
  let o = await outcome(node, hook);
  while (!complete(o) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    o = await outcome(node, hook);
  }
  const unlinked = o.alerts.filter((id) => !o.linked.has(id));
  const twice = o.alerts.filter((id) => (o.linked.get(id)?.length ?? 0) > 1);
  const unnotified = o.alerts.filter((id) => !o.notified.has(id));
  const notifiedTwice = o.alerts.filter((id) => (o.notified.get(id)?.size ?? 0) > 1);
  console.log(
    JSON.stringify({
      scenario: name,
      events: EVENTS,
      alerts: o.alerts.length,
      linked: o.alerts.length - unlinked.length,
      incidents: new Set([...o.linked.values()].flat()).size,
      notified: o.alerts.length - unnotified.length,
      webhookPosts: hook.posts(),
    }),
  );
  assert.equal(o.alerts.length, EVENTS, 'one alert per acknowledged event');
  assert.deepEqual(unlinked, [], 'alerts without an incident');
  assert.deepEqual(twice, [], 'alerts in two incidents');
  assert.deepEqual(unnotified, [], 'alerts never notified');
  assert.deepEqual(notifiedTwice, [], 'alerts notified under two delivery ids');
}

describe('every alert reaches one incident and one notification', () => {
  let pg: PostgresServer;
  const rulesDir = mkdtempSync(join(tmpdir(), 'vigil-rules-'));
  writeFileSync(join(rulesDir, 'failed-logon.yml'), plantedRules('c').files['failed-logon.yml']);
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    await pg?.stop();
  });

  const closeHook = (hook: ReturnType<typeof webhook>) => {
    hook.server.closeAllConnections();
    hook.server.close();
  };
  const start = async (hook: ReturnType<typeof webhook>, env: Record<string, string> = {}) => {
    await new Promise<void>((r) => hook.server.listen(0, '127.0.0.1', r));
    return startVigil({
      env: {
        VIGIL_DETECT__RULES_DIRS: JSON.stringify([rulesDir]),
        VIGIL_NOTIFY__POLL_INTERVAL_MS: '50',
        VIGIL_NOTIFY__DESTINATIONS: JSON.stringify([
          { name: 'hook', type: 'webhook', url: hook.url(), secret: 'alert-path-secret-0123456789' },
        ]),
        ...env,
      },
    }).catch((err) => {
      closeHook(hook);
      throw err;
    });
  };

  test('kill -9 0.3 s after the last acknowledgement: after a restart every alert is linked and notified once', async () => {
    const hook = webhook();
    const node = await start(hook);
    try {
      await steadyLoad(node);
      await new Promise((r) => setTimeout(r, 300));
      await node.kill('SIGKILL');
      await node.restart();
      await expectEveryAlertDelivered('kill -9', node, hook);
    } finally {
      await node.close();
      closeHook(hook);
    }
  });

  test('a full incident queue pushes back: no alert is refused', async () => {
    const hook = webhook();
    const node = await start(hook, { VIGIL_INCIDENTS__MAX_PENDING_ALERTS: '3' });
    try {
      await steadyLoad(node);
      await expectEveryAlertDelivered('queue full', node, hook);
    } finally {
      await node.close();
      closeHook(hook);
    }
  });

  test('PostgreSQL down for 3 s while alerts stream in: none is given up', async () => {
    const hook = webhook();
    const node = await start(hook, {
      VIGIL_POSTGRES_URL: await pg.createDatabase(),
      VIGIL_POSTGRES__CONNECT_TIMEOUT_MS: '500',
      // Today's setting of giving up; it must no longer lose an alert.
      VIGIL_INCIDENTS__RETRY_MAX_ELAPSED_MS: '1000',
      // A delivery claimed just before the outage, whose 'sent' could not be written, is claimed again
      // when its lease ends: 60 s by default, past this test's 30 s wait (CI saw 198 of 200 notified).
      // 12 s still exceeds the webhook's 10 s timeout, as the lease must.
      VIGIL_NOTIFY__LEASE_MS: '12000',
    });
    try {
      let outage: Promise<void> | undefined;
      await steadyLoad(node, async (sent) => {
        if (sent !== EVENTS / 2) return;
        await pg.kill();
        outage = new Promise((r) => setTimeout(r, 3000)).then(() => pg.start());
      });
      await outage;
      await expectEveryAlertDelivered('postgres down 3 s', node, hook);
    } finally {
      await node.close();
      closeHook(hook);
    }
  });
});
