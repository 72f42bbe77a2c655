import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { type Db, migrate } from '../../src/db/index.ts';
import { createNotifier, notifyConfigSchema } from '../../src/notify/index.ts';
import { ALL_MIGRATIONS, makeAlert, openPgliteFromTemplate } from '../harness/postgres.ts';

const PASSWORD = 'hunter2-webhook-pass';
const TOKEN = 'tok-4f9a1c77e2';

/** A port on 127.0.0.1 that refuses connections (bound, then closed). */
async function refusedPort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('webhook URLs with credentials', () => {
  let db: Db;
  let authorization: string | undefined;
  let receiverPort = 0;
  const receiver = createServer((req, res) => {
    authorization = req.headers.authorization;
    req.resume();
    req.on('end', () => res.writeHead(500).end('receiver down'));
  });
  before(async () => {
    db = await openPgliteFromTemplate();
    await migrate(db, ALL_MIGRATIONS);
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    receiverPort = (receiver.address() as { port: number }).port;
  });
  after(async () => {
    receiver.closeAllConnections();
    await new Promise<void>((r) => receiver.close(() => r()));
    await db?.close();
  });

  const cases = [
    { name: 'a receiver that answers 500', port: () => receiverPort, answered: true },
    { name: 'a receiver that refuses the connection', port: refusedPort, answered: false },
  ];
  for (const c of cases) {
    test(`${c.name}: neither lastError nor the log holds the password or the token`, async () => {
      const lines: string[] = [];
      const logger = pino(
        { level: 'debug' },
        new Writable({
          write(chunk, _enc, done) {
            lines.push(String(chunk));
            done();
          },
        }),
      );
      const tenant = `redact-${c.answered ? 'a' : 'r'}`;
      const url = `http://alice:${PASSWORD}@127.0.0.1:${await c.port()}/hook?token=${TOKEN}&x=1`;
      const nf = createNotifier(
        notifyConfigSchema.parse({
          max_attempts: 1,
          destinations: [{ name: `hook-${tenant}`, type: 'webhook', url, secret: 'webhook-secret-0123456789' }],
        }),
        { db, metrics: new Registry(), logger },
      );
      authorization = undefined;
      assert.equal(await nf.enqueue([makeAlert({ tenant })]), 1);
      assert.equal(await nf.runOnce(), 1);
      const [dead] = await nf.deadLetters([tenant], 10);
      assert.ok(dead?.lastError, 'the failed delivery has a lastError');
      const log = lines.join('');
      assert.match(log, /dead-letter/, 'the failure was logged');
      for (const [where, text] of [
        ['lastError', dead.lastError],
        ['log', log],
      ] as const) {
        assert.ok(!text.includes(PASSWORD), `${where} holds the password: ${text}`);
        assert.ok(!text.includes(TOKEN), `${where} holds the token: ${text}`);
      }
      assert.match(dead.lastError, /127\.0\.0\.1:\d+\/hook\?token=redacted/, 'the target is still named');
      if (c.answered) {
        assert.match(dead.lastError, /answered 500/);
        // The URL's user info went to the receiver as Basic authorization, not into the URL fetch refuses.
        assert.equal(authorization, `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`);
      } else {
        assert.match(dead.lastError, /ECONNREFUSED/);
      }
    });
  }
});
