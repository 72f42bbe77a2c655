import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { httpConfigSchema } from '../../src/api/config.ts';
import { LOGIN_PATH, userRoutes } from '../../src/api/routes/users.ts';
import { type ApiServer, createApiServer } from '../../src/api/server.ts';
import { type Db, migrate } from '../../src/db/index.ts';
import { silentLogger } from '../../src/lib/logger.ts';
import { createAuditLog, createUserService, type UserService, usersConfigSchema } from '../../src/users/index.ts';
import { ALL_MIGRATIONS, openPgliteFromTemplate } from '../harness/postgres.ts';

const PASSWORD = 'correct horse battery staple';
const TENANT = 'acme';
const ADMIN = { name: 'admin', role: 'admin' as const, tenants: [TENANT] };

interface Answer {
  status: number;
  body: any;
  retryAfter?: string;
}

/** A JSON request to the API from `localAddress` (any 127.0.0.0/8 address reaches loopback on Linux). */
function call(port: number, method: string, path: string, body: unknown, localAddress = '127.0.0.1'): Promise<Answer> {
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        localAddress,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => {
          const retry = res.headers['retry-after'];
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || 'null'), retryAfter: retry });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

describe('login limits over HTTP', () => {
  let db: Db;
  let server: ApiServer;
  let users: UserService;
  let port = 0;
  let clockOffsetMs = 0;
  const login = (username: string, password: string, from?: string) =>
    call(port, 'POST', LOGIN_PATH, { username, password }, from);
  const tally = (answers: Answer[]) => {
    const by: Record<number, number> = {};
    for (const a of answers) by[a.status] = (by[a.status] ?? 0) + 1;
    return by;
  };

  before(async () => {
    db = await openPgliteFromTemplate();
    await migrate(db, ALL_MIGRATIONS);
    const metrics = new Registry();
    const audit = createAuditLog(db);
    // scrypt at 2^12 keeps a check near 10 ms; the limits are the defaults.
    users = createUserService(usersConfigSchema.parse({ scrypt_log_n: 12 }), {
      db,
      audit,
      metrics,
      logger: silentLogger,
      now: () => Date.now() + clockOffsetMs,
    });
    server = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0' }), {
      auth: { authenticate: () => ADMIN },
      metrics,
      logger: silentLogger,
      routes: [userRoutes({ users, audit })],
    });
    await server.start();
    port = server.address().port;
    for (const name of ['ana', 'ben', 'cleo', 'dora']) {
      await users.create({ username: name, password: PASSWORD, role: 'viewer', tenants: [TENANT] }, ADMIN);
    }
  });
  after(async () => {
    await server?.stop(Date.now() + 1000);
    await db?.close();
  });

  test('40 parallel wrong passwords: the quota answers 401, the rest 429 with Retry-After', async () => {
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => login('ana', `wrong guess number ${i}`)));
    const by = tally(answers);
    assert.ok((by[401] ?? 0) <= 5, `at most 5 reach the password check: ${JSON.stringify(by)}`);
    assert.ok((by[429] ?? 0) >= 35, JSON.stringify(by));
    const limited = answers.find((a) => a.status === 429);
    assert.equal(limited?.body.error.code, 'too_many_logins');
    assert.ok(Number(limited?.retryAfter) >= 1);
    const right = await login('ana', PASSWORD);
    assert.equal(right.status, 429, 'the right password during the lockout is refused too');
    assert.equal(right.body.token, undefined);
  });

  test('a parallel burst with the right password among the guesses: at most the quota is checked', async () => {
    const guesses = Array.from({ length: 30 }, (_, i) => (i === 17 ? PASSWORD : `wrong guess number ${i}`));
    const answers = await Promise.all(guesses.map((p) => login('ben', p)));
    const by = tally(answers);
    assert.ok((by[401] ?? 0) + (by[200] ?? 0) <= 5, `at most 5 checked: ${JSON.stringify(by)}`);
    assert.ok((by[429] ?? 0) >= 25, JSON.stringify(by));
    // Once the quota is spent by wrong guesses, a burst holding the right password yields no token.
    const again = await Promise.all(guesses.map((p) => login('ben', p)));
    assert.ok(
      again.every((a) => a.status === 429 && a.body.token === undefined),
      JSON.stringify(tally(again)),
    );
  });

  test('guesses spread over many addresses lock the account for every address', async () => {
    const answers: Answer[] = [];
    // 50 guesses in a minute from 10 addresses, 5 each: under the per-address limits, over the account's.
    for (let round = 0; round < 5; round++) {
      answers.push(
        ...(await Promise.all(
          Array.from({ length: 10 }, (_, a) => login('cleo', `wrong guess ${round}-${a}`, `127.0.0.${10 + a}`)),
        )),
      );
    }
    const by = tally(answers);
    assert.ok((by[401] ?? 0) <= 10, `at most the account quota is checked: ${JSON.stringify(by)}`);
    assert.ok((by[429] ?? 0) >= 40, JSON.stringify(by));
    const fresh = await login('cleo', PASSWORD, '127.0.0.99');
    assert.equal(fresh.status, 429, 'the right password from a fresh address waits too');
    assert.equal((await login('dora', PASSWORD, '127.0.0.99')).status, 200, 'another account is not locked');
  });

  test('lockouts back off: each doubles, and a success starts the account again', async () => {
    const waits: number[] = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 5; i++) assert.equal((await login('dora', `wrong ${round}-${i}`, '127.0.1.1')).status, 401);
      const limited = await login('dora', PASSWORD, '127.0.1.1');
      assert.equal(limited.status, 429);
      waits.push(Number(limited.retryAfter));
      clockOffsetMs += Number(limited.retryAfter) * 1000 + 1000;
    }
    assert.deepEqual(waits, [60, 120, 240]);
    assert.equal((await login('dora', PASSWORD, '127.0.1.1')).status, 200);
    for (let i = 0; i < 5; i++) await login('dora', `wrong again ${i}`, '127.0.1.1');
    assert.equal((await login('dora', PASSWORD, '127.0.1.1')).retryAfter, '60', 'the backoff starts again');
  });

  test('a weak password is refused with 400 naming the rule, never the password', async () => {
    const cases: [string, string][] = [
      ['short1!', 'too_short'],
      ['Password2024!', 'common'],
      ['zzzzzzzzzzzzzzzz', 'repetitive'],
      ['1234567890123', 'sequence'],
      ['the-erin-account-pw', 'contains_username'],
    ];
    for (const [password, rule] of cases) {
      const res = await call(port, 'POST', '/api/v1/users', { username: 'erin', password, role: 'viewer' });
      assert.equal(res.status, 400, password);
      assert.equal(res.body.error.code, 'weak_password');
      assert.equal(res.body.error.details?.rule, rule, password);
      assert.ok(!JSON.stringify(res.body).includes(password));
    }
    const ok = await call(port, 'POST', '/api/v1/users', { username: 'erin', password: PASSWORD, role: 'viewer' });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    const change = await call(port, 'PATCH', `/api/v1/users/${ok.body.id}`, { password: 'qwertyuiop12' });
    assert.equal(change.status, 400);
    assert.equal(change.body.error.details?.rule, 'common');
  });
});
