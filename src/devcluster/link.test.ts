import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { DevClusterError } from './errors.ts';
import { createLinkRelay, type LinkRouteStats, parseRoute, planLink } from './link.ts';
import { portAllocator } from './plan.ts';
import { isRunning, spawnDetached, stopProcess } from './process.ts';

/** An echo server on a free loopback port: what the relay joins to. */
async function echoServer(port: number): Promise<Server> {
  const server = createServer((s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return server;
}

/** Connects, sends `text`, resolves with the socket once the echo came back. */
function roundTrip(port: number, text: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port });
    let got = '';
    s.once('error', reject);
    s.on('data', (b) => {
      got += b.toString();
      if (got === text) resolve(s);
    });
    s.once('connect', () => s.write(text));
  });
}

/** Whether a new connection to `port` is refused (nothing listens). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/**
 * Whether a new connection to `port` is not relayed to `echo`: refused, or (when a parallel test file took
 * the freed port, as happened in CI) accepted by something that neither echoes nor reaches `echo`.
 */
function notRelayed(port: number, echo: Server): Promise<boolean> {
  let reached = false;
  const count = () => {
    reached = true;
  };
  echo.on('connection', count);
  return new Promise<boolean>((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok && !reached);
    };
    const timer = setTimeout(() => done(true), 500);
    s.once('connect', () => s.write('cut'));
    s.once('data', () => done(false));
    s.once('error', () => done(true));
  }).finally(() => echo.off('connection', count));
}

const closed = (s: Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));

test('a route is parsed from its command-line form, and a bad one is refused with what is wrong', () => {
  assert.deepEqual(parseRoute('leafnode=127.0.0.1:4001->127.0.0.1:7422'), {
    name: 'leafnode',
    listen: { host: '127.0.0.1', port: 4001 },
    to: { host: '127.0.0.1', port: 7422 },
  });
  for (const [bad, why] of [
    ['leafnode=127.0.0.1:4001', /name=host:port->host:port/],
    ['leafnode=127.0.0.1:0->127.0.0.1:7422', /listen must be host:port/],
    ['leafnode=127.0.0.1:4001->127.0.0.1:70000', /to must be host:port/],
    ['Leaf node=1:1->1:1', /name=host:port->host:port/],
  ] as const) {
    assert.throws(
      () => parseRoute(bad),
      (err: DevClusterError) => err.code === 'bad_link' && why.test(err.message),
    );
  }
});

test('the relay joins both ways, counts, and its stop closes relayed connections and refuses new ones', async () => {
  const port = portAllocator();
  const [up, listen, control] = [await port(), await port(), await port()];
  const echo = await echoServer(up);
  const relay = createLinkRelay({
    routes: [{ name: 'leafnode', listen: { host: '127.0.0.1', port: listen }, to: { host: '127.0.0.1', port: up } }],
    control: { host: '127.0.0.1', port: control },
    limits: { max_connections: 2 },
  });
  try {
    await relay.start();
    const a = await roundTrip(listen, 'hello over the link');
    const b = await roundTrip(listen, 'second');
    const s = relay.stats()[0];
    assert.equal(s.connections_open, 2);
    assert.equal(s.bytes_to, 'hello over the link'.length + 'second'.length);
    assert.equal(s.bytes_from, s.bytes_to);
    // A third connection is over the limit: closed at once, counted.
    const third = createConnection({ host: '127.0.0.1', port: listen });
    third.on('error', () => undefined);
    await closed(third);
    assert.equal(relay.stats()[0].connections_failed, 1);

    const res = await fetch(`http://127.0.0.1:${control}/ready`);
    const body = (await res.json()) as { routes: LinkRouteStats[] };
    assert.equal(res.status, 200);
    assert.equal(body.routes[0].to, `127.0.0.1:${up}`);

    await relay.stop();
    await Promise.all([closed(a), closed(b)]);
    assert.ok(await refused(listen), 'nothing listens once the link is cut');
  } finally {
    await relay.stop();
    await new Promise((r) => echo.close(r));
  }
});

test('the link member: SIGKILL by PID cuts its connections and relays no new ones; a new start heals it', async () => {
  const port = portAllocator();
  const [up, listen, control] = [await port(), await port(), await port()];
  const echo = await echoServer(up);
  const dir = mkdtempSync(join(tmpdir(), 'vigil-link-'));
  const m = planLink({
    dir,
    routes: [{ name: 'leafnode', listen: { host: '127.0.0.1', port: listen }, to: { host: '127.0.0.1', port: up } }],
    control: { host: '127.0.0.1', port: control },
  });
  const start = async () => {
    // The relay runs in a folder of its own: NODE_OPTIONS of the test run (the clock-shift stage's relative
    // --import) would not resolve there, and the relay's clock is not what this test is about.
    const { NODE_OPTIONS: _, ...env } = process.env;
    const ref = await spawnDetached({ ...m, cwd: dir, env, logFile: join(dir, 'link.log') });
    const deadline = Date.now() + 60000;
    for (;;) {
      const ok = await fetch(m.ready_url)
        .then((r) => r.status === 200)
        .catch(() => false);
      if (ok) return ref;
      assert.ok(isRunning(ref) && Date.now() < deadline, 'the relay is ready within 60 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  // Inside the try: a start that fails must still close the echo server, or the test file never exits.
  let ref: Awaited<ReturnType<typeof start>> | undefined;
  try {
    ref = await start();
    const conn = await roundTrip(listen, 'leaf');
    conn.on('error', () => undefined);
    await stopProcess(ref, { signal: 'SIGKILL' });
    await closed(conn);
    assert.ok(await notRelayed(listen, echo), 'new connections are not relayed while the link is cut');
    ref = await start();
    (await roundTrip(listen, 'healed')).destroy();
  } finally {
    if (ref) await stopProcess(ref, { signal: 'SIGKILL' });
    await new Promise((r) => echo.close(r));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a listen address still held when the relay starts is tried again until it is free', async () => {
  const port = portAllocator();
  const [listen, control] = [await port(), await port()];
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(listen, '127.0.0.1', r));
  const relay = createLinkRelay({
    routes: [{ name: 'leafnode', listen: { host: '127.0.0.1', port: listen }, to: { host: '127.0.0.1', port: 1 } }],
    control: { host: '127.0.0.1', port: control },
  });
  try {
    setTimeout(() => holder.close(), 600);
    await relay.start();
    assert.equal(await refused(listen), false, 'the relay listens once the port is free');
  } finally {
    await relay.stop();
  }
});
