import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { Registry } from 'prom-client';
import { silentLogger } from '../lib/logger.ts';
import { collectConfigSchema, createCollector } from './index.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-collector-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-days',
      '1',
      '-keyout',
      join(dir, 'k.pem'),
      '-out',
      join(dir, 'c.pem'),
    ],
    { stdio: 'ignore' },
  );
  writeFileSync(join(dir, 'senders.token'), 'sender-token-0123456789\n');
  writeFileSync(join(dir, 'site.key'), 'vgk_site_key_0123456789abcdef\n');
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** An HTTPS stand-in for a site, with the test certificate: keeps each forwarded line and the keys used. */
async function httpsSite() {
  const lines: Record<string, unknown>[] = [];
  const auth = new Set<string>();
  const server = https.createServer(
    { cert: readFileSync(join(dir, 'c.pem')), key: readFileSync(join(dir, 'k.pem')) },
    (req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        auth.add(String(req.headers.authorization));
        const got = body.trim().split('\n').filter(Boolean);
        for (const l of got) lines.push(JSON.parse(l));
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ accepted: got.length, rejected: [] }));
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { lines, auth, server, url: `https://localhost:${(server.address() as AddressInfo).port}` };
}

test('syslog over TLS and NDJSON over HTTPS with a token reach an HTTPS site verified by its CA, with the collector key', {
  timeout: 60_000,
}, async () => {
  const site = await httpsSite();
  const config = collectConfigSchema.parse({
    data_dir: join(dir, 'data'),
    syslog: {
      udp_port: 0,
      tcp_port: 0,
      tls_port: 0,
      tls_cert_file: join(dir, 'c.pem'),
      tls_key_file: join(dir, 'k.pem'),
      batch_max_wait_ms: 10,
    },
    http: {
      addr: '127.0.0.1:0',
      token_file: join(dir, 'senders.token'),
      tls_cert_file: join(dir, 'c.pem'),
      tls_key_file: join(dir, 'k.pem'),
    },
    forward: { endpoints: [{ url: site.url, token_file: join(dir, 'site.key'), ca_file: join(dir, 'c.pem') }] },
    metrics: { addr: '127.0.0.1:0' },
  });
  const collector = createCollector(config, { metrics: new Registry(), logger: silentLogger });
  await collector.start();
  try {
    const ports = collector.addresses();
    assert.ok(ports.tls && ports.http && ports.metrics, JSON.stringify(ports));
    assert.equal(collector.health().ok, true);

    const socket = tls.connect({
      port: ports.tls,
      host: '127.0.0.1',
      ca: readFileSync(join(dir, 'c.pem')),
      servername: 'localhost',
    });
    await new Promise<void>((r, j) => socket.once('secureConnect', r).once('error', j));
    socket.end('<13>1 2026-01-01T00:00:00Z host app - - - over tls\n');

    const post = (token: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.request(
          {
            host: '127.0.0.1',
            port: ports.http,
            path: '/api/v1/ingest',
            method: 'POST',
            ca: readFileSync(join(dir, 'c.pem')),
            servername: 'localhost',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
          },
          (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end('{"message":"over https"}\n');
      });
    const refused = await post('wrong-token-0123456789');
    assert.equal(refused.status, 401);
    const answer = await post('sender-token-0123456789');
    assert.equal(answer.status, 200, answer.body);
    assert.deepEqual(JSON.parse(answer.body), { accepted: 1, rejected: [] });

    const deadline = Date.now() + 30_000;
    while (site.lines.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const bySource = Object.fromEntries(site.lines.map((l) => [l.source, l]));
    assert.deepEqual(Object.keys(bySource).sort(), ['http', 'syslog-tls']);
    assert.match(String(bySource['syslog-tls'].raw), /over tls/);
    assert.equal(bySource.http.raw, '{"message":"over https"}');
    for (const l of site.lines) assert.match(String(l.id), /^[0-9a-f-]{36}$/, 'the collector gave the id');
    assert.deepEqual([...site.auth], ['Bearer vgk_site_key_0123456789abcdef']);

    let metrics = '';
    for (const end = Date.now() + 10_000; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) {
      metrics = await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
      if (/^vigil_collect_queue_events 0$/m.test(metrics)) break;
    }
    assert.match(metrics, /^vigil_collect_forwarded_events_total\{endpoint="localhost:\d+"\} 2$/m);
    assert.match(metrics, /^vigil_collect_queue_events 0$/m);
  } finally {
    await collector.stop(Date.now() + 5000);
    site.server.close();
    site.server.closeAllConnections();
  }
});

test('the data folder is locked by a live collector process; a lock left by a dead one is taken over', {
  timeout: 30_000,
}, async () => {
  const config = collectConfigSchema.parse({
    data_dir: join(dir, 'locked'),
    syslog: { enabled: false },
    http: { enabled: false },
    forward: { endpoints: [{ url: 'http://127.0.0.1:9', token: 'vgk_unused_0123456789abc' }] },
  });
  mkdirSync(config.data_dir, { recursive: true });
  const lock = join(config.data_dir, 'collect.pid');
  // Another live process holds it: its pid in the lock file.
  const other = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    writeFileSync(lock, String(other.pid));
    const refused = createCollector(config, { metrics: new Registry(), logger: silentLogger });
    await assert.rejects(refused.start(), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'collect_locked');
      assert.match(err.message, new RegExp(`process ${other.pid}`));
      return true;
    });
    assert.equal(readFileSync(lock, 'utf8'), String(other.pid), 'the holder keeps its lock');
  } finally {
    other.kill('SIGKILL');
    await new Promise((r) => other.once('exit', r));
  }
  // The holder died without removing it (kill -9): the next collector takes the folder.
  const next = createCollector(config, { metrics: new Registry(), logger: silentLogger });
  await next.start();
  assert.equal(readFileSync(lock, 'utf8'), String(process.pid));
  await next.stop(Date.now() + 2000);
  assert.equal(existsSync(lock), false, 'a clean stop removes the lock');
});
