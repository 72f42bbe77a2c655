/**
 * `vigil collect` between senders and two single-node Vigil instances, "site a" (preferred) and "site b".
 * The two instances are independent (not replicated): every event the collector acknowledged must be stored
 * on at least one of them, and never twice on the same one. Faults: site a killed (-9) and restarted, then
 * the collector killed (-9) mid-stream and restarted.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { readReply } from '../harness/http.ts';
import { freePort } from '../harness/ports.ts';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

const BIN = resolve(import.meta.dirname, '../../bin/vigil');
const PASSWORD = 'correct horse battery staple';
/** A word only this run's events carry, so that a search finds them and nothing else. */
const RUN = `ctest${Date.now().toString(36)}`;

/** The collector as its own process, restartable on the same config and data. */
interface CollectorProc {
  proc: ChildProcess;
  output: () => string;
  start(): Promise<void>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

function collectorProcess(configFile: string, httpPort: number): CollectorProc {
  let out = '';
  const self: CollectorProc = {
    proc: undefined as unknown as ChildProcess,
    output: () => out,
    async start() {
      const p = spawn(BIN, ['collect', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      self.proc = p;
      const keep = (d: Buffer) => {
        out += d;
        if (process.env.DEBUG_VIGIL_TESTS) process.stderr.write(d);
      };
      p.stdout?.on('data', keep);
      p.stderr?.on('data', keep);
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        if (p.exitCode !== null) throw new Error(`vigil collect exited with ${p.exitCode}:\n${out}`);
        try {
          if ((await fetch(`http://127.0.0.1:${httpPort}/health/ready`)).status === 200) return;
        } catch {
          // not listening yet
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`vigil collect not ready within 60 s:\n${out}`);
    },
    kill9: () =>
      new Promise<void>((res) => {
        const p = self.proc;
        if (p.exitCode !== null || p.signalCode !== null) return res();
        p.once('exit', () => res());
        p.kill('SIGKILL');
      }),
    async stop() {
      const p = self.proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
      await new Promise<void>((res) => {
        p.once('exit', () => res());
        p.kill('SIGTERM');
      });
      clearTimeout(timer);
    },
  };
  return self;
}

/** Creates an analyst and a key of the collector scope for it on `node`; returns the key and the user. */
async function collectorKey(node: VigilNode): Promise<{ token: string; userId: string }> {
  const user = await node.post(
    '/api/v1/users',
    JSON.stringify({ username: 'collector', password: PASSWORD, role: 'analyst' }),
    { 'content-type': 'application/json' },
  );
  assert.equal(user.status, 201, JSON.stringify(user.body));
  const key = await node.post(
    '/api/v1/keys',
    JSON.stringify({ userId: user.body.id, name: 'branch-1', scopes: ['collector'] }),
    { 'content-type': 'application/json' },
  );
  assert.equal(key.status, 201, JSON.stringify(key.body));
  return { token: key.body.token as string, userId: user.body.id as string };
}

const call = async (url: string, method: string, token: string, body?: string) =>
  readReply(
    await fetch(url, {
      method,
      body,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
    }),
  );

describe('vigil collect with two sites', { timeout: 600_000 }, () => {
  const site: Record<'a' | 'b', VigilNode> = {} as Record<'a' | 'b', VigilNode>;
  const keys: Record<string, string> = {};
  let userA: string;
  let dir: string;
  let collector: CollectorProc;
  let httpPort: number;
  let syslogPort: number;
  let metricsPort: number;
  /** seq -> how the sender learnt it was acknowledged. Only acknowledged events must arrive. */
  const acked = new Map<number, 'http' | 'tcp' | 'udp'>();
  let seq = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-collect-it-'));
    // One after the other: two nodes starting at once on a loaded 2-core machine can miss the harness's 60 s.
    site.a = await startVigil();
    site.b = await startVigil();
    const [ka, kb] = [await collectorKey(site.a), await collectorKey(site.b)];
    keys.a = ka.token;
    keys.b = kb.token;
    userA = ka.userId;
    [httpPort, syslogPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    const file = join(dir, 'collect.yml');
    writeFileSync(
      file,
      stringify({
        data_dir: join(dir, 'data'),
        log: { level: process.env.DEBUG_VIGIL_TESTS ? 'info' : 'warn' },
        syslog: { host: '127.0.0.1', udp_port: syslogPort, tcp_port: syslogPort, batch_max_wait_ms: 20 },
        http: { addr: `127.0.0.1:${httpPort}` },
        queue: { max_bytes: 64 * 1024 * 1024, max_age_seconds: 3600 },
        forward: {
          endpoints: [
            { url: site.a.url, token: keys.a, name: 'a' },
            { url: site.b.url, token: keys.b, name: 'b' },
          ],
          batch_max_events: 200,
          request_timeout_ms: 5000,
          probe_interval_ms: 500,
          retry_initial_ms: 100,
          retry_max_ms: 1000,
        },
        metrics: { addr: `127.0.0.1:${metricsPort}` },
      }),
    );
    collector = collectorProcess(file, httpPort);
    await collector.start();
  });

  after(async () => {
    await collector?.stop();
    await Promise.all([site.a?.close(), site.b?.close()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Posts `n` NDJSON events to the collector; records them as acknowledged when it answers 200. */
  const sendHttp = async (n: number): Promise<boolean> => {
    const first = seq;
    seq += n;
    const body = Array.from({ length: n }, (_, i) =>
      JSON.stringify({ message: `${RUN} http seq=${first + i}`, seq: first + i }),
    ).join('\n');
    try {
      const res = await fetch(`http://127.0.0.1:${httpPort}/api/v1/ingest`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/x-ndjson' },
      });
      const answer = await readReply(res);
      if (res.status !== 200) return false;
      assert.equal(answer.body.accepted, n);
      for (let i = 0; i < n; i++) acked.set(first + i, 'http');
      return true;
    } catch {
      return false;
    }
  };

  /** Sends `n` syslog lines over one TCP connection and closes it gracefully (the collector stays up). */
  const sendTcp = async (n: number) => {
    const first = seq;
    seq += n;
    const socket = net.connect(syslogPort, '127.0.0.1');
    await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
    for (let i = 0; i < n; i++) {
      socket.write(`<13>1 ${new Date().toISOString()} branch-host app - - - ${RUN} tcp seq=${first + i}\n`);
    }
    await new Promise<void>((r) => socket.end(r));
    for (let i = 0; i < n; i++) acked.set(first + i, 'tcp');
  };

  /** A few UDP datagrams, paced: loopback at this rate does not drop. */
  const sendUdp = async (n: number) => {
    const socket = dgram.createSocket('udp4');
    for (let i = 0; i < n; i++) {
      const s = seq++;
      const line = Buffer.from(`<13>1 ${new Date().toISOString()} branch-host app - - - ${RUN} udp seq=${s}`);
      await new Promise<void>((r, j) => socket.send(line, syslogPort, '127.0.0.1', (err) => (err ? j(err) : r())));
      acked.set(s, 'udp');
      await new Promise((r) => setTimeout(r, 5));
    }
    socket.close();
  };

  /** seq -> how many events carry it on `node` (each stored event of this run, as searched). */
  const storedSeqs = async (node: VigilNode): Promise<Map<number, number>> => {
    const res = await node.get(`/api/v1/search?q=${encodeURIComponent(RUN)}&from=now-2h&limit=10000`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const counts = new Map<number, number>();
    for (const e of res.body.events as Record<string, unknown>[]) {
      const m = /seq=(\d+)/.exec(String(e.message ?? e['event.original']));
      if (m) counts.set(Number(m[1]), (counts.get(Number(m[1])) ?? 0) + 1);
    }
    return counts;
  };

  const metric = async (name: string, labels = ''): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || l.startsWith(`${name}${labels}{`));
    return line ? Number(line.split(' ').pop()) : 0;
  };

  const until = async (what: string, check: () => Promise<boolean>, ms = 60_000) => {
    const end = Date.now() + ms;
    while (!(await check())) {
      assert.ok(Date.now() < end, `timed out after ${ms} ms waiting for ${what}\n${collector.output().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  const seqsIn = (from: number, to: number) => [...acked.keys()].filter((s) => s >= from && s < to);

  test('a collector key only forwards: every other route refuses it, and no other credential may forward', async () => {
    const collected = `${site.a.url}/api/v1/ingest/collected`;
    const chosen = `${RUN}id1`;
    const one = JSON.stringify({
      id: chosen,
      timestamp: Date.now(),
      ingested: Date.now(),
      source: 'http',
      layout: 'json',
      raw: '{"message":"x"}',
      fields: { message: 'x' },
    });
    // A resend (a lost answer, a failover and back) is stored once; the same id and time with other text is a
    // row of its own: a collector key cannot replace a stored event.
    for (let i = 0; i < 2; i++) {
      const sent = await call(collected, 'POST', keys.a, one);
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      assert.equal(sent.body.accepted, 1);
    }
    const altered = { ...JSON.parse(one), raw: '{"message":"y"}', fields: { message: 'y' } };
    assert.equal((await call(collected, 'POST', keys.a, JSON.stringify(altered))).status, 200);
    const stored = await site.a.get(`/api/v1/search?q=${encodeURIComponent(`event.id:${chosen}`)}&from=now-1h`);
    assert.equal(stored.status, 200, JSON.stringify(stored.body));
    assert.deepEqual(
      (stored.body.events as Record<string, unknown>[]).map((e) => e.message).sort(),
      ['x', 'y'],
      'the resend once, the altered text beside it',
    );
    const search = await call(`${site.a.url}/api/v1/search?q=x`, 'GET', keys.a);
    assert.equal(search.status, 403);
    assert.equal(search.body.error.code, 'collector_key');
    const ingest = await call(`${site.a.url}/api/v1/ingest`, 'POST', keys.a, '{"message":"x"}');
    assert.equal(ingest.status, 403, 'not even the plain ingest');
    const byAdmin = await call(collected, 'POST', site.a.token, one);
    assert.equal(byAdmin.status, 403, 'the admin token does not choose ids either');
    assert.equal(byAdmin.body.error.code, 'collector_scope_required');
    const mixed = await site.a.post(
      '/api/v1/keys',
      JSON.stringify({ userId: userA, name: 'mixed', scopes: ['collector', 'read'] }),
      { 'content-type': 'application/json' },
    );
    assert.equal(mixed.status, 400, 'the collector scope is given alone');
    assert.equal(mixed.body.error.code, 'bad_scopes');
    const viewer = await site.a.post(
      '/api/v1/users',
      JSON.stringify({ username: 'watcher', password: PASSWORD, role: 'viewer' }),
      { 'content-type': 'application/json' },
    );
    assert.equal(viewer.status, 201, JSON.stringify(viewer.body));
    const viewerKey = await site.a.post(
      '/api/v1/keys',
      JSON.stringify({ userId: viewer.body.id, name: 'v', scopes: ['collector'] }),
      { 'content-type': 'application/json' },
    );
    assert.equal(viewerKey.status, 400, 'a viewer writes no events, so gets no collector key');
    assert.equal(viewerKey.body.error.code, 'scope_too_wide');
  });

  test('events reach site a; with a killed they flow to b; when a returns the collector goes back to it', async () => {
    // Phase 1: a is up.
    let from = seq;
    await sendHttp(100);
    await sendTcp(100);
    await sendUdp(20);
    let to = seq;
    await until('site a holds phase 1', async () => {
      const at = await storedSeqs(site.a);
      return seqsIn(from, to).every((s) => at.has(s));
    });

    // Phase 2: a is killed; the collector keeps acknowledging and fails over to b.
    await site.a.kill('SIGKILL');
    from = seq;
    for (let i = 0; i < 5; i++) {
      assert.ok(await sendHttp(50), 'the collector acknowledges while site a is down');
      await sendTcp(50);
    }
    to = seq;
    await until('site b holds phase 2', async () => {
      const at = await storedSeqs(site.b);
      return seqsIn(from, to).every((s) => at.has(s));
    });
    assert.ok((await metric('vigil_collect_failovers_total')) >= 1, 'a failover is counted');
    assert.equal(await metric('vigil_collect_endpoint_active', '{endpoint="b"}'), 1);

    // Phase 3: a returns; the probe takes the collector back to it.
    await site.a.restart();
    await until(
      'the collector is back on a',
      async () => (await metric('vigil_collect_endpoint_active', '{endpoint="a"}')) === 1,
    );
    from = seq;
    await sendHttp(100);
    await sendTcp(100);
    to = seq;
    await until('site a holds phase 3', async () => {
      const at = await storedSeqs(site.a);
      return seqsIn(from, to).every((s) => at.has(s));
    });
    assert.ok((await metric('vigil_collect_failbacks_total')) >= 1, 'the return to a is counted');
  });

  test('kill -9 of the collector mid-stream: nothing it acknowledged is lost', async () => {
    let sending = true;
    let refused = 0;
    const sender = (async () => {
      while (sending) {
        if (!(await sendHttp(20))) {
          refused++;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    })();
    const before = acked.size;
    await until('a stream acknowledged', async () => acked.size >= before + 400);
    await collector.kill9();
    await new Promise((r) => setTimeout(r, 500));
    await collector.start();
    await new Promise((r) => setTimeout(r, 1000));
    const afterRestart = acked.size;
    await until('acknowledged again after the restart', async () => acked.size >= afterRestart + 100);
    sending = false;
    await sender;
    console.log(JSON.stringify({ refused_requests_while_down: refused }));
    await until('the queue is empty', async () => (await metric('vigil_collect_queue_events')) === 0, 120_000);
  });

  test('every acknowledged event is stored on at least one site, and no event twice on the same site', async () => {
    let a = new Map<number, number>();
    let b = new Map<number, number>();
    await until(
      'every acknowledged event stored',
      async () => {
        [a, b] = await Promise.all([storedSeqs(site.a), storedSeqs(site.b)]);
        return [...acked.keys()].every((s) => a.has(s) || b.has(s));
      },
      60_000,
    ).catch(() => undefined);
    const lost = [...acked.keys()].filter((s) => !a.has(s) && !b.has(s));
    const twiceA = [...a].filter(([, n]) => n > 1).map(([s]) => s);
    const twiceB = [...b].filter(([, n]) => n > 1).map(([s]) => s);
    const both = [...acked.keys()].filter((s) => a.has(s) && b.has(s)).length;
    const byKind = { http: 0, tcp: 0, udp: 0 };
    for (const k of acked.values()) byKind[k]++;
    console.log(
      JSON.stringify({
        acknowledged: acked.size,
        ...byKind,
        at_a: a.size,
        at_b: b.size,
        on_both: both,
        lost: lost.length,
      }),
    );
    assert.deepEqual(lost.slice(0, 20), [], `${lost.length} acknowledged events lost`);
    assert.deepEqual(twiceA, [], 'stored twice on site a');
    assert.deepEqual(twiceB, [], 'stored twice on site b');
  });
});
