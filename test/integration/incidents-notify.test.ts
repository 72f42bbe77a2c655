import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { after, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import type { Alert } from '../../src/detect/alerts/index.ts';
import type { Db } from '../../src/db/index.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import { createNotifier, deliveryId, type Notifier, notifyConfigSchema } from '../../src/notify/index.ts';
import { createAuditLog } from '../../src/users/index.ts';
import { backends, makeAlert } from '../harness/postgres.ts';

const SECRET = 'webhook-secret-0123456789';

interface Received {
  delivery: string;
  signature: string;
  attempt: number;
  body: string;
}

/** A webhook receiver on 127.0.0.1:0 that answers with `respond` (status, optional delay). */
async function receiver(respond: (r: Received, nth: number) => { status: number; delayMs?: number }) {
  const got: Received[] = [];
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      const r: Received = {
        delivery: String(req.headers['x-vigil-delivery']),
        signature: String(req.headers['x-vigil-signature']),
        attempt: Number(req.headers['x-vigil-attempt']),
        body,
      };
      got.push(r);
      const { status, delayMs = 0 } = respond(r, got.length);
      setTimeout(() => res.writeHead(status).end(), delayMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${addr.port}/hook`,
    got,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 15000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function notifier(db: Db, over: Record<string, unknown>, nodeId?: string): Notifier {
  return createNotifier(
    notifyConfigSchema.parse({ poll_interval_ms: 20, backoff_initial_ms: 20, backoff_max_ms: 100, ...over }),
    { db, metrics: new Registry(), logger: silentLogger, audit: createAuditLog(db), nodeId },
  );
}

const webhook = (name: string, url: string, extra: Record<string, unknown> = {}) => ({
  name,
  type: 'webhook',
  url,
  secret: SECRET,
  timeout_ms: 2000,
  ...extra,
});

for (const backend of backends()) {
  describe(`notifications on ${backend.name}`, () => {
    const cleanup: (() => Promise<void>)[] = [];
    after(async () => {
      for (const c of cleanup.reverse()) await c();
    });
    let n = 0;
    const tenant = () => `n${++n}`;

    test('a webhook gets a signed JSON POST per matching alert, with a delivery id derived from alert and destination', async () => {
      const db = await backend.open();
      const tn = tenant();
      const rx = await receiver(() => ({ status: 204 }));
      cleanup.push(rx.close);
      const name = `hook${n}`;
      const nf = notifier(db, { destinations: [webhook(name, rx.url, { min_level: 'high' })] });
      const high = makeAlert({ tenant: tn, rule: { level: 'high' } });
      const low = makeAlert({ tenant: tn, rule: { level: 'low' } });
      assert.equal(await nf.enqueue([high, low]), 1, 'only the high alert matches');
      assert.equal(await nf.enqueue([high]), 0, 'a second enqueue records nothing');
      await nf.runOnce();
      assert.equal(rx.got.length, 1);
      const r = rx.got[0];
      assert.equal(r.delivery, deliveryId(high.id, name));
      assert.equal(r.signature, `sha256=${createHmac('sha256', SECRET).update(r.body).digest('hex')}`);
      const body = JSON.parse(r.body);
      assert.equal(body.delivery_id, r.delivery);
      assert.equal(body.alert.id, high.id);
      assert.equal((await nf.get(r.delivery, [tn]))?.status, 'delivered');
      assert.equal(await nf.runOnce(), 0, 'nothing is sent twice');
    });

    test('a sent delivery whose outcome cannot be recorded (database away a moment) is marked once it returns, not re-sent after its lease', async () => {
      const db = await backend.open();
      const tn = tenant();
      const rx = await receiver(() => ({ status: 204 }));
      cleanup.push(rx.close);
      let refused = 0;
      // The database refuses the outcome's UPDATE twice, as a connection lost during a failover does.
      const flaky: Db = Object.create(db, {
        query: {
          value: async (sql: string, params?: unknown[]) => {
            if (sql.includes('delivered_at = CASE') && refused < 2) {
              refused++;
              throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
            }
            return db.query(sql, params as never);
          },
        },
      });
      const nf = notifier(flaky, { destinations: [webhook(`mark${n}`, rx.url)], lease_ms: 60_000 });
      const a = makeAlert({ tenant: tn });
      await nf.enqueue([a]);
      const started = Date.now();
      assert.equal(await nf.runOnce(), 1);
      assert.equal(refused, 2, 'the outcome was refused twice, then recorded');
      assert.equal((await nf.get(deliveryId(a.id, `mark${n}`), [tn]))?.status, 'delivered');
      assert.ok(Date.now() - started < 15_000, 'recorded within seconds, not after the 60 s lease');
      assert.equal(rx.got.length, 1, 'sent once');
      assert.equal(await nf.runOnce(), 0, 'nothing left to send');
    });

    test('a failing webhook is retried with backoff under the same delivery id until it answers 2xx', async () => {
      const db = await backend.open();
      const tn = tenant();
      const rx = await receiver((_r, nth) => ({ status: nth <= 2 ? 503 : 200 }));
      cleanup.push(rx.close);
      const nf = notifier(db, { destinations: [webhook(`retry${n}`, rx.url)], max_attempts: 5 });
      const a = makeAlert({ tenant: tn });
      await nf.enqueue([a]);
      await nf.start();
      cleanup.push(() => nf.stop(Date.now() + 1000));
      await waitFor(() => rx.got.length >= 3, 'three attempts');
      const id = rx.got[0].delivery;
      assert.deepEqual(
        rx.got.map((r) => [r.delivery, r.attempt]),
        [
          [id, 1],
          [id, 2],
          [id, 3],
        ],
      );
      await waitFor(async () => (await nf.get(id, [tn]))?.status === 'delivered', 'delivered');
      assert.equal((await nf.get(id, [tn]))?.attempts, 3);
    });

    test('after max attempts a delivery is dead-lettered; a replay sends it again under the same id', async () => {
      const db = await backend.open();
      const tn = tenant();
      let healthy = false;
      const rx = await receiver(() => ({ status: healthy ? 200 : 500 }));
      cleanup.push(rx.close);
      const nf = notifier(db, {
        destinations: [webhook(`dead${n}`, rx.url), webhook(`gone${n}`, `${rx.url}?gone`)],
        max_attempts: 3,
      });
      const a = makeAlert({ tenant: tn });
      await nf.enqueue([a]);
      await nf.start();
      cleanup.push(() => nf.stop(Date.now() + 1000));
      await waitFor(async () => (await nf.deadLetters([tn], 10)).length === 2, 'two dead letters');
      const dead = await nf.deadLetters([tn], 10);
      assert.ok(dead.every((d) => d.attempts === 3 && /answered 500/.test(d.lastError ?? '')));
      assert.deepEqual(await nf.deadLetters(['someone-else'], 10), [], 'other tenants do not see them');
      healthy = true;
      const id = deliveryId(a.id, `dead${n}`);
      const replayed = await nf.replay(id, [tn], 'admin');
      assert.deepEqual([replayed.status, replayed.attempts], ['pending', 0]);
      await waitFor(async () => (await nf.get(id, [tn]))?.status === 'delivered', 'replayed delivery');
      assert.equal(rx.got.filter((r) => r.delivery === id).length, 4, 'three failures and the replay, one id');
      await assert.rejects(nf.replay(id, [tn], 'admin'), /not in the dead-letter list/);
      await assert.rejects(nf.replay(id, ['someone-else'], 'admin'), /no delivery/);
    });

    test('a receiver refusing with 4xx dead-letters at once', async () => {
      const db = await backend.open();
      const tn = tenant();
      const rx = await receiver(() => ({ status: 400 }));
      cleanup.push(rx.close);
      const nf = notifier(db, { destinations: [webhook(`refuse${n}`, rx.url)], max_attempts: 5 });
      await nf.enqueue([makeAlert({ tenant: tn })]);
      await nf.runOnce();
      const dead = await nf.deadLetters([tn], 10);
      assert.deepEqual(
        dead.map((d) => d.attempts),
        [1],
      );
    });

    test('syslog destinations get RFC 5424 messages with CEF over UDP and octet-counted TCP', async () => {
      const db = await backend.open();
      const tn = tenant();
      const udpLines: string[] = [];
      const udp = createSocket('udp4');
      udp.on('message', (m) => udpLines.push(m.toString()));
      await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
      cleanup.push(() => new Promise<void>((r) => udp.close(() => r())));
      let tcpData = '';
      const tcp = createTcpServer((s) => s.on('data', (d) => (tcpData += d)));
      await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
      cleanup.push(() => new Promise<void>((r) => tcp.close(() => r())));
      const nf = notifier(db, {
        destinations: [
          { name: `udp${n}`, type: 'syslog', host: '127.0.0.1', port: udp.address().port, protocol: 'udp' },
          {
            name: `tcp${n}`,
            type: 'syslog',
            host: '127.0.0.1',
            port: (tcp.address() as { port: number }).port,
            protocol: 'tcp',
            tags: ['attack.*'],
          },
        ],
      });
      cleanup.push(() => nf.stop(Date.now() + 1000));
      const tagged: Alert = makeAlert({
        tenant: tn,
        rule: { id: 'r=1', title: 'Evil | tool', level: 'critical', tags: ['attack.t1059'] },
      });
      const untagged = makeAlert({ tenant: tn, rule: { tags: [] } });
      await nf.enqueue([tagged, untagged]);
      await nf.runOnce();
      await waitFor(() => udpLines.length === 2 && tcpData.length > 0, 'syslog messages');
      for (const line of udpLines)
        assert.match(line, /^<10[6-9]>1 \S+ \S+ vigil \d+ alert - CEF:0\|Vigil\|Vigil\|0\.1\|/);
      assert.ok(
        udpLines.some((l) => l.includes('|r=1|Evil \\| tool|10|')),
        'header escaped, = left alone in a header',
      );
      const frames: string[] = [];
      let rest = tcpData;
      while (rest.length > 0) {
        const sp = rest.indexOf(' ');
        const len = Number(rest.slice(0, sp));
        frames.push(
          Buffer.from(rest.slice(sp + 1))
            .subarray(0, len)
            .toString(),
        );
        rest = Buffer.from(rest.slice(sp + 1))
          .subarray(len)
          .toString();
      }
      assert.equal(frames.length, 1, 'only the tagged alert goes to the TCP destination');
      assert.match(frames[0], new RegExp(`externalId=${tagged.id} `));
      assert.match(frames[0], new RegExp(`cs3=${deliveryId(tagged.id, `tcp${n}`)}`));
    });

    test('each delivery reaches the receiver once across a stop in mid-delivery and a restart', async () => {
      const db = await backend.open();
      const tn = tenant();
      const rx = await receiver(() => ({ status: 200, delayMs: 150 }));
      cleanup.push(rx.close);
      const config = { destinations: [webhook(`once${n}`, rx.url)], concurrency: 3, batch_size: 5 };
      const alerts = Array.from({ length: 15 }, () => makeAlert({ tenant: tn }));
      const first = notifier(db, config);
      await first.enqueue(alerts);
      await first.start();
      await waitFor(() => rx.got.length >= 2, 'the first deliveries');
      await first.stop(Date.now() + 5000);
      const before = rx.got.length;
      assert.ok(before < alerts.length, 'stopped mid-way');
      const second = notifier(db, config);
      await second.start();
      cleanup.push(() => second.stop(Date.now() + 1000));
      await waitFor(() => rx.got.length >= alerts.length, 'every delivery');
      await new Promise((r) => setTimeout(r, 300));
      const ids = rx.got.map((r) => r.delivery);
      assert.equal(ids.length, alerts.length, 'no delivery twice');
      assert.deepEqual([...new Set(ids)].sort(), alerts.map((a) => deliveryId(a.id, `once${n}`)).sort());
    });

    test('a send cut off by the stop deadline is sent again under the same id, so the receiver can dedupe', async () => {
      const db = await backend.open();
      const tn = tenant();
      const rx = await receiver(() => ({ status: 200, delayMs: 1000 }));
      cleanup.push(rx.close);
      const config = { destinations: [webhook(`cut${n}`, rx.url)], concurrency: 2 };
      const alerts = [makeAlert({ tenant: tn }), makeAlert({ tenant: tn })];
      const first = notifier(db, config);
      await first.enqueue(alerts);
      await first.start();
      await waitFor(() => rx.got.length === 2, 'both sends under way');
      await first.stop(Date.now() + 50);
      const second = notifier(db, config);
      await second.start();
      cleanup.push(() => second.stop(Date.now() + 3000));
      const ids = alerts.map((a) => deliveryId(a.id, `cut${n}`));
      await waitFor(
        async () => (await Promise.all(ids.map((id) => second.get(id, [tn])))).every((d) => d?.status === 'delivered'),
        'delivered after the restart',
      );
      assert.deepEqual([...new Set(rx.got.map((r) => r.delivery))].sort(), [...ids].sort());
      for (const id of ids) assert.equal((await second.get(id, [tn]))?.attempts, 1, 'the cut attempt was given back');
    });

    test("a restarted node sends at once what its killed process was sending; other nodes' claims wait out their lease", async () => {
      const db = await backend.open();
      const tn = tenant();
      // The killed processes' receiver never answers: their sends are still open when the restart comes.
      const stuck = await receiver(() => ({ status: 200, delayMs: 60_000 }));
      const rx = await receiver(() => ({ status: 200 }));
      cleanup.push(rx.close);
      const name = `reclaim${n}`;
      const config = (url: string) => ({
        destinations: [webhook(name, url, { timeout_ms: 20_000 })],
        lease_ms: 60_000,
      });
      const mine = [makeAlert({ tenant: tn }), makeAlert({ tenant: tn })];
      const theirs = [makeAlert({ tenant: tn })];
      const killed = notifier(db, config(stuck.url), 'node-a');
      const other = notifier(db, config(stuck.url), 'node-b');
      await killed.enqueue(mine);
      const killedRound = killed.runOnce();
      await waitFor(() => stuck.got.length === mine.length, "the killed process's sends under way");
      await other.enqueue(theirs);
      const otherRound = other.runOnce();
      await waitFor(() => stuck.got.length === mine.length + theirs.length, "the other node's send under way");

      const started = Date.now();
      const restarted = notifier(db, config(rx.url), 'node-a');
      await restarted.start();
      try {
        const ids = mine.map((a) => deliveryId(a.id, name));
        await waitFor(
          async () =>
            (await Promise.all(ids.map((id) => restarted.get(id, [tn])))).every((d) => d?.status === 'delivered'),
          'the earlier process of node-a re-sent',
          5000,
        );
        assert.ok(Date.now() - started < 5000, 'well before lease_ms');
        assert.deepEqual(rx.got.map((r) => r.delivery).sort(), [...ids].sort(), 'same delivery ids, once each');
        await new Promise((r) => setTimeout(r, 300));
        const held = await restarted.get(deliveryId(theirs[0].id, name), [tn]);
        assert.equal(held?.status, 'sending', "node-b's claim is left to its lease");
        assert.equal(rx.got.length, mine.length);
      } finally {
        await restarted.stop(Date.now() + 1000);
        await stuck.close();
        await Promise.all([killedRound, otherRound]);
      }
    });
  });
}
