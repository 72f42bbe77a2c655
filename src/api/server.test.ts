import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { afterEach, test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../lib/logger.ts';
import { httpConfigSchema } from './config.ts';
import { type ApiServer, createApiServer } from './server.ts';

/** A running API server with a login-like route and a route that waits until the test opens its gate. */
interface Harness {
  api: ApiServer;
  metrics: Registry;
  port: number;
  /** Requests that reached the waiting route's handler. */
  entered(): number;
  /** Lets every waiting handler answer, now and from now on until closeGate(). */
  openGate(): void;
  closeGate(): void;
  /** The server's current value of a metric (0 when it has no such series). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

const running: ApiServer[] = [];
afterEach(async () => {
  for (const api of running.splice(0)) await api.stop(Date.now() + 1000);
});

async function start(http: Record<string, unknown>): Promise<Harness> {
  const metrics = new Registry();
  let entered = 0;
  let release: () => void = () => {};
  let gate = new Promise<void>((r) => {
    release = r;
  });
  const api = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0', ...http }), {
    auth: { authenticate: () => ({ name: 'analyst', role: 'analyst', tenants: ['default'] }) },
    metrics,
    logger: silentLogger,
    routes: [
      (app) => {
        app.post('/api/v1/auth/login', async (req) => ({ got: String(req.body).length }));
        app.post('/api/v1/ingest', async (req) => ({ got: String(req.body).length }));
        app.get('/health/live', async () => ({ ok: true }));
        app.get('/wait', async () => {
          entered++;
          await gate;
          return { ok: true };
        });
      },
    ],
  });
  running.push(api);
  await api.start();
  return {
    api,
    metrics,
    port: api.address().port,
    entered: () => entered,
    openGate: () => release(),
    closeGate: () => {
      gate = new Promise<void>((r) => {
        release = r;
      });
    },
    async metric(name, labels = {}) {
      const m = await metrics.getSingleMetric(name)?.get();
      const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
      return v?.value ?? 0;
    },
  };
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Opens a raw connection and writes `text`; `done` is everything the server sent until it closed. */
function raw(port: number, text: string): { socket: Socket; done: Promise<string> } {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  let got = '';
  socket.on('data', (d) => {
    got += d.toString();
  });
  const done = new Promise<string>((r) => socket.on('close', () => r(got)));
  socket.write(text);
  return { socket, done };
}

/**
 * Sends `n` requests to the waiting route at once and checks that exactly `n` are admitted: each one
 * reaches the handler, none is refused. Returns their statuses, known once the gate opens.
 */
async function fill(h: Harness, n: number): Promise<Promise<number>[]> {
  const before = h.entered();
  let refused = 0;
  const answers = Array.from({ length: n }, () =>
    fetch(`http://127.0.0.1:${h.port}/wait`).then((r) => {
      if (r.status === 429) refused++;
      return r.status;
    }),
  );
  await until(() => h.entered() - before + refused === n, 5000, `${n} requests to be admitted or refused`);
  assert.equal(refused, 0, `${refused} of ${n} requests were refused with 429 though ${n} slots should be free`);
  return answers;
}

/** Asserts that one more request at once is refused: admitted, it would wait at the gate past 2 s. */
async function assertFull(h: Harness): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${h.port}/wait`, { signal: AbortSignal.timeout(2000) }).catch(() => null);
  assert.equal(res?.status, 429, 'one request more than the capacity was admitted: the capacity grew');
  assert.equal((await res.json()).error.code, 'too_many_requests');
}

const LOGIN_HEAD =
  'POST /api/v1/auth/login HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n';

test('256 logins cut mid-body by their clients leave the full capacity (8 slots) free', {
  timeout: 10_000,
}, async () => {
  const h = await start({ max_inflight_requests: 8 });
  let seen = 0;
  h.api.app.server.on('request', () => seen++);
  const conns = Array.from({ length: 256 }, () => raw(h.port, `${LOGIN_HEAD}{`));
  await until(() => seen === 256, 5000, 'the server to read 256 request heads');
  for (const c of conns) c.socket.destroy();
  await Promise.all(conns.map((c) => c.done));
  // The server learns of the closes asynchronously; the gauge says when it has.
  await until(async () => (await h.metric('vigil_http_inflight_requests')) === 0, 2000, 'the slots to be freed').catch(
    () => {},
  );

  const answers = await fill(h, 8);
  await assertFull(h);
  h.openGate();
  assert.deepEqual(await Promise.all(answers), Array(8).fill(200));
  await until(async () => (await h.metric('vigil_http_inflight_requests')) === 0, 2000, 'the gauge to fall to 0');
});

test('a 429 neither takes nor gives back a slot: after 20 refusals the capacity is still exactly 8', {
  timeout: 10_000,
}, async () => {
  const h = await start({ max_inflight_requests: 8 });
  const first = await fill(h, 8);
  const refused = await Promise.all(
    Array.from({ length: 20 }, () =>
      fetch(`http://127.0.0.1:${h.port}/wait`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.status,
        () => 'admitted past the capacity',
      ),
    ),
  );
  assert.deepEqual(refused, Array(20).fill(429));
  assert.equal(await h.metric('vigil_http_inflight_requests'), 8);
  h.openGate();
  assert.deepEqual(await Promise.all(first), Array(8).fill(200));
  h.closeGate();

  const second = await fill(h, 8);
  await assertFull(h);
  h.openGate();
  assert.deepEqual(await Promise.all(second), Array(8).fill(200));
  await until(async () => (await h.metric('vigil_http_inflight_requests')) === 0, 2000, 'the gauge to fall to 0');
});

test('requests abandoned while their handler runs give back their slot once, not twice', {
  timeout: 10_000,
}, async () => {
  const h = await start({ max_inflight_requests: 8 });
  const abandoned = Array.from({ length: 8 }, () => raw(h.port, 'GET /wait HTTP/1.1\r\nHost: vigil\r\n\r\n'));
  await until(() => h.entered() === 8, 5000, '8 handlers to start');
  for (const c of abandoned) c.socket.destroy();
  await until(async () => (await h.metric('vigil_http_inflight_requests')) === 0, 2000, 'the slots to be freed');

  const answers = await fill(h, 8);
  assert.equal(await h.metric('vigil_http_inflight_requests'), 8);
  // The abandoned handlers finish now too; their slots were given back already and must not be again.
  h.openGate();
  assert.deepEqual(await Promise.all(answers), Array(8).fill(200));
  await until(async () => (await h.metric('vigil_http_inflight_requests')) === 0, 2000, 'the gauge to fall to 0');
  h.closeGate();
  await fill(h, 8);
  await assertFull(h);
  h.openGate();
});

test('a stalled body is cut with 408 after http.request_timeout_ms, and counted', { timeout: 10_000 }, async () => {
  const h = await start({ max_inflight_requests: 8, headers_timeout_ms: 300, request_timeout_ms: 800 });
  const started = Date.now();
  const { done } = raw(h.port, `${LOGIN_HEAD}{`);
  const answer = await done;
  const took = Date.now() - started;
  assert.match(answer, /^HTTP\/1\.1 408 /);
  assert.equal(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error.code, 'request_timeout');
  assert.ok(took >= 700 && took < 1500, `cut after ${took} ms, expected about 800`);
  assert.equal(await h.metric('vigil_http_requests_cut_total', { reason: 'body_timeout' }), 1);
  await until(async () => (await h.metric('vigil_http_inflight_requests')) === 0, 1000, 'the slot to be freed');
});

test('stalled headers are cut with 408 after http.headers_timeout_ms, and counted', { timeout: 10_000 }, async () => {
  const h = await start({ headers_timeout_ms: 300, request_timeout_ms: 5000 });
  const started = Date.now();
  const answer = await raw(h.port, 'GET /wait HTTP/1.1\r\nHost: vigil\r\n').done;
  const took = Date.now() - started;
  assert.match(answer, /^HTTP\/1\.1 408 /);
  assert.ok(took >= 250 && took < 1000, `cut after ${took} ms, expected about 300`);
  assert.equal(await h.metric('vigil_http_requests_cut_total', { reason: 'header_timeout' }), 1);
  assert.equal(h.entered(), 0);
});

test('a whole request whose handler outlasts http.request_timeout_ms is answered, not cut', {
  timeout: 10_000,
}, async () => {
  const h = await start({ headers_timeout_ms: 200, request_timeout_ms: 300 });
  const answer = fetch(`http://127.0.0.1:${h.port}/wait`).then((r) => r.status);
  await until(() => h.entered() === 1, 2000, 'the handler to start');
  await new Promise((r) => setTimeout(r, 800));
  h.openGate();
  assert.equal(await answer, 200);
  assert.equal(await h.metric('vigil_http_requests_cut_total', { reason: 'body_timeout' }), 0);
});

test('a connection on which nothing moves for http.idle_timeout_ms is closed and its slot freed', {
  timeout: 10_000,
}, async () => {
  const h = await start({ max_inflight_requests: 1, idle_timeout_ms: 300 });
  const started = Date.now();
  await raw(h.port, 'GET /wait HTTP/1.1\r\nHost: vigil\r\n\r\n').done;
  const took = Date.now() - started;
  assert.ok(took >= 250 && took < 1500, `closed after ${took} ms, expected about 300`);
  assert.equal(await h.metric('vigil_http_requests_cut_total', { reason: 'idle_timeout' }), 1);
  await until(async () => (await h.metric('vigil_http_inflight_requests')) === 0, 1000, 'the slot to be freed');
  h.openGate();
});

test('an idle keep-alive connection is closed after http.keep_alive_timeout_ms, not counted as a cut', {
  timeout: 10_000,
}, async () => {
  const h = await start({ keep_alive_timeout_ms: 200 });
  h.openGate();
  const c = raw(h.port, 'GET /wait HTTP/1.1\r\nHost: vigil\r\n\r\n');
  const started = Date.now();
  const answer = await c.done;
  const took = Date.now() - started;
  assert.match(answer, /^HTTP\/1\.1 200 /);
  assert.ok(took < 1500, `kept open ${took} ms, expected about 200`);
  assert.equal(await h.metric('vigil_http_requests_cut_total', { reason: 'idle_timeout' }), 0);
});

test('the timeouts are bounded and consistent', { timeout: 10_000 }, () => {
  const d = httpConfigSchema.parse({});
  assert.deepEqual(
    [d.headers_timeout_ms, d.request_timeout_ms, d.keep_alive_timeout_ms, d.idle_timeout_ms],
    [10_000, 60_000, 72_000, 120_000],
  );
  assert.throws(() => httpConfigSchema.parse({ headers_timeout_ms: 20_000, request_timeout_ms: 10_000 }));
  assert.throws(() => httpConfigSchema.parse({ request_timeout_ms: 0 }));
});

/** Opens `n` login requests that declare `length` body bytes and send one: each holds its connection. */
async function stalledLogins(
  h: Harness,
  n: number,
  length: number,
): Promise<{ socket: Socket; done: Promise<string> }[]> {
  let seen = 0;
  const count = () => seen++;
  h.api.app.server.on('request', count);
  const head = `POST /api/v1/auth/login HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n{`;
  const conns = Array.from({ length: n }, () => raw(h.port, head));
  await until(() => seen === n, 10_000, `the server to read ${n} request heads`);
  h.api.app.server.off('request', count);
  return conns;
}

test('300 slow login bodies leave /health/live answering at once and authenticated work admitted', {
  timeout: 20_000,
}, async () => {
  const h = await start({ max_inflight_requests: 8, max_inflight_open_requests_per_address: 1000 });
  const conns = await stalledLogins(h, 300, 5000);
  const started = Date.now();
  const live = await fetch(`http://127.0.0.1:${h.port}/health/live`, { signal: AbortSignal.timeout(1000) });
  assert.equal(live.status, 200, 'a probe was refused while slow logins were in flight');
  assert.ok(Date.now() - started < 1000);
  // All 8 authenticated slots are still free: the logins hold only their own pool (32).
  const answers = await fill(h, 8);
  await assertFull(h);
  assert.equal(await h.metric('vigil_http_inflight_open_requests'), 32);
  const refused = await raw(
    h.port,
    'POST /api/v1/auth/login HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
  ).done;
  assert.match(refused, /^HTTP\/1\.1 429 /);
  assert.match(refused, /http\.max_inflight_open_requests/);
  h.openGate();
  assert.deepEqual(await Promise.all(answers), Array(8).fill(200));
  for (const c of conns) c.socket.destroy();
});

test('one client address holds at most http.max_inflight_open_requests_per_address logins', {
  timeout: 10_000,
}, async () => {
  const h = await start({ max_inflight_open_requests: 32, max_inflight_open_requests_per_address: 4 });
  const conns = await stalledLogins(h, 4, 100);
  const login = () =>
    fetch(`http://127.0.0.1:${h.port}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
  const fifth = await login();
  assert.equal(fifth.status, 429);
  assert.equal(fifth.headers.get('retry-after'), '1');
  assert.match(
    (await fifth.json()).error.message,
    /from 127\.0\.0\.1 \(http\.max_inflight_open_requests_per_address\)/,
  );
  conns[0].socket.destroy();
  await until(async () => (await h.metric('vigil_http_inflight_open_requests')) === 3, 2000, 'a slot to be freed');
  assert.equal((await login()).status, 200);
  for (const c of conns) c.socket.destroy();
});

test('behind a trusted balancer the per-address bound counts forwarded clients; an untrusted peer cannot choose its address', {
  timeout: 10_000,
}, async () => {
  const login = (port: number, client: string) =>
    fetch(`http://127.0.0.1:${port}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': client },
      body: '{}',
    });
  const stalled = (port: number, client: string) =>
    raw(
      port,
      `POST /api/v1/auth/login HTTP/1.1\r\nHost: vigil\r\nX-Forwarded-For: ${client}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`,
    );
  const behind = await start({ max_inflight_open_requests_per_address: 2, trusted_proxies: ['127.0.0.1/32'] });
  const held = [stalled(behind.port, '203.0.113.7'), stalled(behind.port, '203.0.113.7')];
  await until(async () => (await behind.metric('vigil_http_inflight_open_requests')) === 2, 2000, 'two held logins');
  const same = await login(behind.port, '203.0.113.7');
  assert.equal(same.status, 429, 'the forwarded client is at its bound');
  assert.match((await same.json()).error.message, /from 203\.0\.113\.7 /);
  assert.equal((await login(behind.port, '198.51.100.9')).status, 200, 'another client behind the balancer is served');
  for (const c of held) c.socket.destroy();

  const open = await start({ max_inflight_open_requests_per_address: 2 });
  const mine = [stalled(open.port, '203.0.113.1'), stalled(open.port, '203.0.113.2')];
  await until(async () => (await open.metric('vigil_http_inflight_open_requests')) === 2, 2000, 'two held logins');
  const spoofed = await login(open.port, '198.51.100.9');
  assert.equal(spoofed.status, 429, 'without trusted_proxies the header is ignored: the socket address counts');
  assert.match((await spoofed.json()).error.message, /from 127\.0\.0\.1 /);
  for (const c of mine) c.socket.destroy();
});

test('http.trusted_proxies takes addresses and CIDR ranges only', () => {
  assert.ok(httpConfigSchema.safeParse({ trusted_proxies: ['10.0.0.0/8', '127.0.0.1', '::1'] }).success);
  const bad = httpConfigSchema.safeParse({ trusted_proxies: ['balancer.example'] });
  assert.ok(!bad.success);
  assert.match(JSON.stringify(bad.error.issues), /not an address or CIDR range/);
});

test('a login body past 8 KiB is refused with 413 from its Content-Length, before it is sent', {
  timeout: 10_000,
}, async () => {
  const h = await start({});
  const started = Date.now();
  const answer = await raw(
    h.port,
    'POST /api/v1/auth/login HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{',
  ).done;
  assert.match(answer, /^HTTP\/1\.1 413 /);
  assert.equal(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error.code, 'request_too_large');
  assert.ok(Date.now() - started < 1000, `answered after ${Date.now() - started} ms`);
  const small = await fetch(`http://127.0.0.1:${h.port}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'u', password: 'p'.repeat(4000) }),
  });
  assert.equal(small.status, 200);
});

test('ingest bodies past http.max_inflight_body_bytes are refused with 503 overloaded, counted, until one ends', {
  timeout: 10_000,
}, async () => {
  const h = await start({ max_inflight_body_bytes: 10_000 });
  const head = (n: number) =>
    `POST /api/v1/ingest HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer t\r\nContent-Type: application/x-ndjson\r\nContent-Length: ${n}\r\n\r\n`;
  const holding = raw(h.port, `${head(8000)}{`);
  await until(async () => (await h.metric('vigil_http_inflight_body_bytes')) === 8000, 2000, 'the bytes to be held');
  const refused = await raw(h.port, head(4000).replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')).done;
  assert.match(refused, /^HTTP\/1\.1 503 /);
  assert.match(refused, /\r\nretry-after: 1\r\n/i);
  const body = JSON.parse(refused.slice(refused.indexOf('\r\n\r\n') + 4));
  assert.equal(body.error.code, 'overloaded');
  assert.match(body.error.message, /http\.max_inflight_body_bytes/);
  assert.equal(await h.metric('vigil_intake_events_rejected_total', { source: 'http', reason: 'overloaded' }), 1);
  // A small body still fits beside the held one.
  const fits = await fetch(`http://127.0.0.1:${h.port}/api/v1/ingest`, {
    method: 'POST',
    headers: { authorization: 'Bearer t', 'content-type': 'application/x-ndjson' },
    body: '{"a":1}',
  });
  assert.equal(fits.status, 200);
  holding.socket.destroy();
  await until(async () => (await h.metric('vigil_http_inflight_body_bytes')) === 0, 2000, 'the bytes to be freed');
  const after = await fetch(`http://127.0.0.1:${h.port}/api/v1/ingest`, {
    method: 'POST',
    headers: { authorization: 'Bearer t', 'content-type': 'application/x-ndjson' },
    body: `{"a":"${'x'.repeat(8000)}"}`,
  });
  assert.equal(after.status, 200);
});
