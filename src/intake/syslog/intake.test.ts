import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { Registry } from 'prom-client';
import { OverloadError, VigilError } from '../../lib/errors.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import { silentLogger } from '../../lib/logger.ts';
import { createSyslogIntake, type SyslogConfigInput, type SyslogIntake, type SyslogParseContext } from './index.ts';
import { readUdpKernelDrops } from './udp-drops.ts';

// Helpers -------------------------------------------------------------------------------------------------

function parse(line: string, ctx: SyslogParseContext): NormalizedEvent {
  return {
    id: randomUUID(),
    timestamp: ctx.receivedAt,
    ingested: ctx.receivedAt,
    tenant: ctx.tenant,
    source: ctx.source,
    layout: 'syslog',
    raw: line,
    fields: { message: line },
  };
}

/** A publisher that records committed batches; `fail` decides per call whether to reject, `gate` holds calls. */
class FakePublisher {
  readonly batches: NormalizedEvent[][] = [];
  calls = 0;
  delayMs = 0;
  fail: ((call: number) => Error | undefined) | undefined;
  gate: Promise<void> | undefined;
  /** Called at each publish, before it commits (to sample metrics while the pipeline is busy). */
  onCall: (() => Promise<void>) | undefined;

  get events(): NormalizedEvent[] {
    return this.batches.flat();
  }

  get messages(): string[] {
    return this.events.map((e) => e.fields.message as string);
  }

  publish = async (events: NormalizedEvent[]): Promise<void> => {
    const call = ++this.calls;
    await this.onCall?.();
    if (this.gate) await this.gate;
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    const err = this.fail?.(call);
    if (err) throw err;
    this.batches.push([...events]);
  };
}

interface Harness {
  intake: SyslogIntake;
  registry: Registry;
  publisher: FakePublisher;
  udp: number;
  tcp: number;
  tls?: number;
}

const running: SyslogIntake[] = [];

async function startIntake(
  config: SyslogConfigInput = {},
  publisher = new FakePublisher(),
  deps: { parse?: typeof parse; admitting?: () => boolean } = {},
): Promise<Harness> {
  const registry = new Registry();
  const intake = createSyslogIntake(
    { udp_port: 0, tcp_port: 0, tls_port: 0, batch_max_wait_ms: 5, ...config },
    {
      publish: publisher.publish,
      parse: deps.parse ?? parse,
      metrics: registry,
      logger: silentLogger,
      admitting: deps.admitting,
    },
  );
  await intake.start();
  running.push(intake);
  const ports = intake.addresses();
  return { intake, registry, publisher, udp: ports.udp!, tcp: ports.tcp!, tls: ports.tls };
}

after(async () => {
  await Promise.all(running.map((i) => i.stop(Date.now() + 1000)));
});

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = registry.getSingleMetric(name);
  assert.ok(m, `metric ${name} is registered`);
  const { values } = await m.get();
  const found = values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return found?.value ?? 0;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => resolve(socket));
    socket.setNoDelay(true);
    socket.once('error', reject);
  });
}

/** Writes each chunk as its own TCP write, pausing between them so they arrive as separate segments. */
async function writeChunks(socket: net.Socket, chunks: (string | Buffer)[], pauseMs = 0): Promise<void> {
  for (const chunk of chunks) {
    await new Promise<void>((resolve, reject) => socket.write(chunk, (err) => (err ? reject(err) : resolve())));
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
  }
}

function closed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });
}

async function sendUdp(port: number, messages: (string | Buffer)[]): Promise<void> {
  const socket = dgram.createSocket('udp4');
  for (const m of messages) {
    await new Promise<void>((resolve, reject) =>
      socket.send(m, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())),
    );
  }
  socket.close();
}

/** An octet-counted frame (RFC 6587): `<length> <message>`. */
const octet = (msg: string): string => `${Buffer.byteLength(msg)} ${msg}`;

// UDP -----------------------------------------------------------------------------------------------------

test('UDP: each datagram is one event, trailing newlines stripped, tenant and logsource applied', async () => {
  const h = await startIntake({ tenant: 'acme', logsource: { product: 'linux', service: 'sshd' } });
  await sendUdp(h.udp, ['<13>one\n', '<13>two', '<13>three\r\n', '<13>multi\nline']);
  await waitFor('4 events', () => h.publisher.events.length === 4);
  assert.deepEqual(h.publisher.messages.sort(), ['<13>multi\nline', '<13>one', '<13>three', '<13>two']);
  for (const e of h.publisher.events) {
    assert.equal(e.source, 'syslog-udp');
    assert.equal(e.tenant, 'acme');
    assert.deepEqual(e.logsource, { product: 'linux', service: 'sshd' });
  }
  await waitFor(
    'accepted metric',
    async () => (await metric(h.registry, 'vigil_intake_events_accepted_total', { source: 'syslog-udp' })) === 4,
  );
});

test('UDP: an oversize datagram is counted and dropped; binary garbage is still an event', async () => {
  const h = await startIntake({ max_line_bytes: 100 });
  const garbage = randomBytes(64);
  await sendUdp(h.udp, ['x'.repeat(101), garbage, '<13>after']);
  await waitFor('2 events', () => h.publisher.events.length === 2);
  assert.equal(h.publisher.messages.includes('<13>after'), true);
  const labels = { source: 'syslog-udp' };
  assert.equal(await metric(h.registry, 'vigil_intake_events_received_total', labels), 3);
  assert.equal(await metric(h.registry, 'vigil_intake_events_rejected_total', { ...labels, reason: 'oversize' }), 1);
});

// TCP framing ---------------------------------------------------------------------------------------------

const framings: { name: string; chunks: string[]; pauseMs?: number; want: string[] }[] = [
  { name: 'LF framing', chunks: ['<13>a\n<13>b\n'], want: ['<13>a', '<13>b'] },
  { name: 'CRLF framing', chunks: ['<13>a\r\n<13>b\r\n'], want: ['<13>a', '<13>b'] },
  { name: 'NUL framing', chunks: ['<13>a\0<13>b\0'], want: ['<13>a', '<13>b'] },
  { name: 'octet counting', chunks: [octet('<13>a') + octet('<13>b\nmore')], want: ['<13>a', '<13>b\nmore'] },
  {
    name: 'octet counting and LF mixed in one connection',
    chunks: ['5 <13>a', '<13>b\n', '6 <13>cd<13>e\r\n'],
    pauseMs: 10,
    want: ['<13>a', '<13>b', '<13>cd', '<13>e'],
  },
  {
    name: 'a frame split across many TCP writes',
    chunks: ['2', '3', ' <13>split', ' across', ' wri', 'tes', '<13>lf split', ' too', '\r', '\n'],
    pauseMs: 10,
    want: ['<13>split across writes', '<13>lf split too'],
  },
  {
    name: 'several frames in one write',
    chunks: [Array.from({ length: 50 }, (_, i) => `<13>line ${i}\n`).join('')],
    want: Array.from({ length: 50 }, (_, i) => `<13>line ${i}`),
  },
  { name: 'an unterminated last line before close', chunks: ['<13>a\n<13>tail'], want: ['<13>a', '<13>tail'] },
];

for (const c of framings) {
  test(`TCP: ${c.name}`, async () => {
    const h = await startIntake();
    const socket = await connect(h.tcp);
    await writeChunks(socket, c.chunks, c.pauseMs);
    socket.end();
    await waitFor(`${c.want.length} events`, () => h.publisher.events.length >= c.want.length);
    assert.deepEqual(h.publisher.messages, c.want);
    assert.ok(h.publisher.events.every((e) => e.source === 'syslog-tcp'));
  });
}

test('TCP: an oversize line is counted, logged and skipped; the connection continues', async () => {
  const h = await startIntake({ max_line_bytes: 100 });
  const socket = await connect(h.tcp);
  await writeChunks(socket, ['<13>before\n', 'y'.repeat(60), 'y'.repeat(60), 'y'.repeat(500), '\n<13>after\n'], 5);
  // A connection is octet-counted when its first frame is: a second one for the skipped counted frame.
  const counted = await connect(h.tcp);
  await writeChunks(counted, ['500 <13>', 'z'.repeat(496), '16 <13>after octets']);
  counted.destroy();
  await waitFor('3 events', () => h.publisher.events.length === 3);
  assert.deepEqual(h.publisher.messages, ['<13>before', '<13>after', '<13>after octets']);
  const labels = { source: 'syslog-tcp' };
  assert.equal(await metric(h.registry, 'vigil_intake_events_received_total', labels), 5);
  assert.equal(await metric(h.registry, 'vigil_intake_events_rejected_total', { ...labels, reason: 'oversize' }), 2);
  assert.equal(socket.destroyed, false);
  socket.destroy();
});

test('TCP: binary garbage is a line like any other and crashes nothing', async () => {
  const h = await startIntake();
  const socket = await connect(h.tcp);
  const garbage = Buffer.concat([randomBytes(4096), Buffer.from('\xff\xfe\x80\x01', 'latin1')]);
  await writeChunks(socket, [garbage, '\n<13>after\n']);
  socket.end();
  await waitFor('the line after the garbage', () => h.publisher.messages.includes('<13>after'));
  assert.ok(h.publisher.events.length >= 2);
  assert.equal(h.intake.health().ok, true);
});

// TLS -----------------------------------------------------------------------------------------------------

let certDir = '';
let cert: Buffer;
let key: Buffer;

before(() => {
  certDir = mkdtempSync(join(tmpdir(), 'vigil-syslog-tls-'));
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1'].concat([
      '-keyout',
      join(certDir, 'k.pem'),
      '-out',
      join(certDir, 'c.pem'),
    ]),
    { stdio: 'ignore' },
  );
  cert = readFileSync(join(certDir, 'c.pem'));
  key = readFileSync(join(certDir, 'k.pem'));
});

after(() => rmSync(certDir, { recursive: true, force: true }));

function connectTls(port: number, opts: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: cert, ...opts }, () =>
      resolve(socket),
    );
    socket.once('error', reject);
  });
}

test('TLS: lines arrive over TLS with a certificate and key configured', async () => {
  const h = await startIntake({ tls_cert_file: join(certDir, 'c.pem'), tls_key_file: join(certDir, 'k.pem') });
  assert.ok(h.tls !== undefined && h.tls > 0 && h.tls !== h.tcp);
  const socket = await connectTls(h.tls!);
  await writeChunks(socket as net.Socket, [`${octet('<13>secure one')}${octet('<13>secure2')}`, octet('<13>three')]);
  socket.end();
  await waitFor('3 events', () => h.publisher.events.length === 3);
  assert.deepEqual(h.publisher.messages, ['<13>secure one', '<13>secure2', '<13>three']);
  assert.ok(h.publisher.events.every((e) => e.source === 'syslog-tls'));
});

test('TLS: with a CA configured, a client without a certificate is refused', async () => {
  const h = await startIntake({
    tls_cert_file: join(certDir, 'c.pem'),
    tls_key_file: join(certDir, 'k.pem'),
    tls_ca_file: join(certDir, 'c.pem'),
  });
  // TLS 1.3 reports a refused client certificate after the handshake, on the first read.
  const anonymous = await connectTls(h.tls!).catch(() => undefined);
  if (anonymous) {
    anonymous.on('error', () => {});
    anonymous.write('<13>anonymous\n');
    await closed(anonymous as net.Socket);
  }
  const trusted = await connectTls(h.tls!, { cert, key });
  await writeChunks(trusted as net.Socket, ['<13>trusted\n']);
  trusted.end();
  await waitFor('the trusted event', () => h.publisher.events.length === 1);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(h.publisher.messages, ['<13>trusted']);
});

test('TLS: no TLS listener without a certificate', async () => {
  const h = await startIntake();
  assert.equal(h.tls, undefined);
});

// Backpressure --------------------------------------------------------------------------------------------

test('backpressure: a slow publisher pauses the socket; every line arrives once, in order', async () => {
  const publisher = new FakePublisher();
  publisher.delayMs = 10;
  let peakPending = 0;
  const h = await startIntake({ batch_max_events: 20, max_pending_events: 100 }, publisher);
  publisher.onCall = async () => {
    const pending = await metric(h.registry, 'vigil_intake_pending_events', { source: 'syslog-tcp' });
    peakPending = Math.max(peakPending, pending);
  };
  const socket = await connect(h.tcp);
  const want = Array.from({ length: 3000 }, (_, i) => `<13>event ${i}`);
  await writeChunks(socket, [want.map((l) => `${l}\n`).join('')]);
  socket.end();
  await waitFor('3000 events', () => h.publisher.events.length === 3000, 20000);
  assert.deepEqual(h.publisher.messages, want);
  assert.ok(peakPending <= 100, `pending stayed under the cap (peak ${peakPending})`);
  assert.ok(h.publisher.batches.every((b) => b.length <= 20));
});

test('backpressure: OverloadError pauses and retries the batch until it commits; nothing is lost', async () => {
  const publisher = new FakePublisher();
  publisher.fail = (call) => (call <= 6 ? new OverloadError('bus full') : undefined);
  const h = await startIntake({ batch_max_events: 10 }, publisher);
  const socket = await connect(h.tcp);
  const want = Array.from({ length: 100 }, (_, i) => `<13>event ${i}`);
  await writeChunks(socket, [want.map((l) => `${l}\n`).join('')]);
  await waitFor('the pipeline to report failing', () => h.intake.health().detail !== undefined);
  assert.equal(h.intake.health().ok, true);
  socket.end();
  await waitFor('100 events', () => h.publisher.events.length === 100);
  assert.deepEqual(h.publisher.messages, want);
  assert.ok(publisher.calls >= 16);
  const labels = { source: 'syslog-tcp' };
  assert.equal(await metric(h.registry, 'vigil_intake_events_accepted_total', labels), 100);
  assert.equal(await metric(h.registry, 'vigil_intake_events_rejected_total', { ...labels, reason: 'overloaded' }), 0);
  assert.equal(h.intake.health().detail, undefined);
});

test('backpressure: UDP datagrams beyond the pending cap are counted as overloaded', async () => {
  const publisher = new FakePublisher();
  let release!: () => void;
  publisher.gate = new Promise((r) => {
    release = r;
  });
  const h = await startIntake({ batch_max_events: 5, max_pending_events: 10 }, publisher);
  await sendUdp(
    h.udp,
    Array.from({ length: 30 }, (_, i) => `<13>udp ${i}`),
  );
  const labels = { source: 'syslog-udp' };
  await waitFor(
    '30 received',
    async () => (await metric(h.registry, 'vigil_intake_events_received_total', labels)) === 30,
  );
  assert.equal(await metric(h.registry, 'vigil_intake_events_rejected_total', { ...labels, reason: 'overloaded' }), 20);
  assert.equal(await metric(h.registry, 'vigil_intake_pending_events', labels), 10);
  publisher.gate = undefined;
  release();
  await waitFor('10 events', () => h.publisher.events.length === 10);
  await waitFor('pending drained', async () => (await metric(h.registry, 'vigil_intake_pending_events', labels)) === 0);
  assert.equal(await metric(h.registry, 'vigil_intake_events_accepted_total', labels), 10);
});

test('a batch refused for good (non-retryable error) is dropped as publish_error; later batches flow', async () => {
  const publisher = new FakePublisher();
  publisher.fail = (call) => (call === 1 ? new VigilError('bad_batch', 'refused') : undefined);
  const h = await startIntake({ batch_max_wait_ms: 0 }, publisher);
  await sendUdp(h.udp, ['<13>lost']);
  const labels = { source: 'syslog-udp' };
  await waitFor(
    'the rejection',
    async () =>
      (await metric(h.registry, 'vigil_intake_events_rejected_total', { ...labels, reason: 'publish_error' })) === 1,
  );
  await sendUdp(h.udp, ['<13>kept']);
  await waitFor('the next event', () => h.publisher.events.length === 1);
  assert.deepEqual(h.publisher.messages, ['<13>kept']);
});

test('a parser that throws still yields an event, flagged with parseError', async () => {
  const h = await startIntake({}, new FakePublisher(), {
    parse: () => {
      throw new Error('boom');
    },
  });
  await sendUdp(h.udp, ['<13>x']);
  await waitFor('the event', () => h.publisher.events.length === 1);
  const [event] = h.publisher.events;
  assert.equal(event.raw, '<13>x');
  assert.match(event.parseError ?? '', /boom/);
});

// Lifecycle -----------------------------------------------------------------------------------------------

test('stop: stops accepting, flushes the pending batch, then closes connections', async () => {
  const h = await startIntake({ batch_max_wait_ms: 60000, batch_max_events: 1000 });
  const socket = await connect(h.tcp);
  socket.on('error', () => {});
  await writeChunks(socket, ['<13>a\n<13>b\n<13>c\n']);
  await sendUdp(h.udp, ['<13>d']);
  await waitFor('4 received', async () => {
    const tcp = await metric(h.registry, 'vigil_intake_events_received_total', { source: 'syslog-tcp' });
    const udp = await metric(h.registry, 'vigil_intake_events_received_total', { source: 'syslog-udp' });
    return tcp + udp === 4;
  });
  assert.equal(h.publisher.events.length, 0);
  await h.intake.stop(Date.now() + 2000);
  assert.deepEqual(h.publisher.messages.sort(), ['<13>a', '<13>b', '<13>c', '<13>d']);
  assert.equal(h.intake.health().ok, false);
  await closed(socket);
  await assert.rejects(connect(h.tcp));
});

test('stop: gives up at the deadline when publishing keeps failing, counting the loss', async () => {
  const publisher = new FakePublisher();
  publisher.fail = () => new OverloadError('bus full');
  const h = await startIntake({}, publisher);
  await sendUdp(h.udp, ['<13>a', '<13>b', '<13>c']);
  const labels = { source: 'syslog-udp' };
  await waitFor(
    '3 received',
    async () => (await metric(h.registry, 'vigil_intake_events_received_total', labels)) === 3,
  );
  const started = Date.now();
  await h.intake.stop(started + 200);
  assert.ok(Date.now() - started < 1000, 'stop returned near its deadline');
  assert.equal(
    await metric(h.registry, 'vigil_intake_events_rejected_total', { ...labels, reason: 'publish_error' }),
    3,
  );
  assert.equal(await metric(h.registry, 'vigil_intake_pending_events', labels), 0);
});

test('health and addresses: ok only while listening, real ports reported for port 0', async () => {
  const registry = new Registry();
  const publisher = new FakePublisher();
  const intake = createSyslogIntake(
    { udp_port: 0, tcp_port: 0 },
    { publish: publisher.publish, parse, metrics: registry, logger: silentLogger },
  );
  assert.equal(intake.health().ok, false);
  assert.deepEqual(intake.addresses(), {});
  await intake.start();
  assert.equal(intake.health().ok, true);
  const { udp, tcp } = intake.addresses();
  assert.ok(udp! > 0 && tcp! > 0);
  await intake.stop(Date.now() + 1000);
  assert.equal(intake.health().ok, false);

  const disabled = createSyslogIntake(
    { enabled: false },
    { publish: publisher.publish, parse, metrics: registry, logger: silentLogger },
  );
  await disabled.start();
  assert.deepEqual(disabled.health(), { ok: true, detail: 'disabled' });
  assert.deepEqual(disabled.addresses(), {});
  await disabled.stop(Date.now() + 1000);
});

test('start fails with a stable code when a port is taken', async () => {
  const h = await startIntake();
  const registry = new Registry();
  const second = createSyslogIntake(
    { udp_port: 0, tcp_port: h.tcp },
    { publish: h.publisher.publish, parse, metrics: registry, logger: silentLogger },
  );
  await assert.rejects(second.start(), { code: 'syslog_listen_failed' });
  assert.equal(second.health().ok, false);
});

test('an invalid config is refused by the factory', () => {
  assert.throws(
    () =>
      createSyslogIntake({ udp_port: -1 } as SyslogConfigInput, {
        publish: async () => {},
        parse,
        metrics: new Registry(),
        logger: silentLogger,
      }),
    { code: 'config_invalid' },
  );
});

test('connections: the gauge follows open connections; the cap refuses extra ones', async () => {
  const h = await startIntake({ max_connections: 2 });
  const gauge = () => metric(h.registry, 'vigil_intake_connections', { source: 'syslog-tcp' });
  const a = await connect(h.tcp);
  const b = await connect(h.tcp);
  await waitFor('2 connections', async () => (await gauge()) === 2);
  const c = await connect(h.tcp);
  c.on('error', () => {});
  await closed(c);
  await writeChunks(a, ['<13>still works\n']);
  await waitFor('the event', () => h.publisher.events.length === 1);
  a.destroy();
  b.end();
  await waitFor('0 connections', async () => (await gauge()) === 0);
});

test('connections: an idle connection is closed after idle_timeout_ms', async () => {
  const h = await startIntake({ idle_timeout_ms: 100 });
  const socket = await connect(h.tcp);
  const started = Date.now();
  await closed(socket);
  assert.ok(Date.now() - started >= 80);
});

test('TCP: in maintenance, new connections are closed at once; they are taken again after it', async () => {
  let admitting = false;
  const h = await startIntake({}, new FakePublisher(), { admitting: () => admitting });
  const refused = await connect(h.tcp);
  const closed = await new Promise<boolean>((resolve) => {
    refused.once('close', () => resolve(true));
    setTimeout(() => resolve(false), 2000);
  });
  assert.equal(closed, true, 'a connection made while draining is closed by the node');
  admitting = true;
  const socket = await connect(h.tcp);
  socket.write('<13>after maintenance\n');
  await waitFor('1 event', () => h.publisher.events.length === 1);
  socket.destroy();
});

// Loss counted in /metrics (issue 16) ---------------------------------------------------------------------

test('TCP: an octet-counted frame cut off by the client is counted as read and rejected (truncated)', async () => {
  const h = await startIntake();
  const socket = await connect(h.tcp);
  // A whole frame, then a frame announcing 100 bytes of which 11 arrive before the client closes.
  await writeChunks(socket, [octet('<13>whole frame'), '100 <13>partial']);
  socket.end();
  await closed(socket);
  await waitFor('the whole frame', () => h.publisher.events.length === 1);
  await waitFor('the cut frame counted', async () => {
    return (await metric(h.registry, 'vigil_intake_events_rejected_total', { reason: 'truncated' })) === 1;
  });
  assert.equal(await metric(h.registry, 'vigil_intake_events_received_total', { source: 'syslog-tcp' }), 2);
  const text = await h.registry.metrics();
  assert.match(text, /vigil_intake_events_rejected_total\{source="syslog-tcp",reason="truncated"\} 1/);
});

test('TCP: refused connections are counted by reason (max_connections, maintenance)', async () => {
  let admitting = true;
  const h = await startIntake({ max_connections: 1 }, new FakePublisher(), { admitting: () => admitting });
  const refused = (reason: string) =>
    metric(h.registry, 'vigil_intake_connections_refused_total', { source: 'syslog-tcp', reason });
  const kept = await connect(h.tcp);
  await waitFor('1 connection', async () => (await metric(h.registry, 'vigil_intake_connections', {})) === 1);
  const extra = await connect(h.tcp);
  extra.on('error', () => {});
  await closed(extra);
  await waitFor('the refusal counted', async () => (await refused('max_connections')) === 1);
  kept.destroy();
  await waitFor('0 connections', async () => (await metric(h.registry, 'vigil_intake_connections', {})) === 0);
  admitting = false;
  const draining = await connect(h.tcp);
  draining.on('error', () => {});
  await closed(draining);
  await waitFor('the maintenance refusal counted', async () => (await refused('maintenance')) === 1);
  assert.equal(await refused('max_connections'), 1);
});

test('UDP: datagrams the kernel drops while the event loop is busy are counted from /proc/net/udp', async (t) => {
  if (readUdpKernelDrops(1) === undefined) return t.skip('no /proc/net/udp here');
  const h = await startIntake();
  const drops = () => metric(h.registry, 'vigil_intake_udp_kernel_drops_total', { source: 'syslog-udp' });
  assert.equal(await drops(), 0);
  // spawnSync blocks this event loop while the child floods the port: 20 MB against a receive buffer of a
  // few hundred KB, so the kernel must drop most of it.
  const flood = `const s=require('dgram').createSocket('udp4');const b=Buffer.alloc(1000,120);let n=0;
    (function go(){for(let i=0;i<500&&n<20000;i++,n++)s.send(b,${h.udp},'127.0.0.1');if(n<20000)setImmediate(go);else setTimeout(()=>s.close(),200);})();`;
  execFileSync(process.execPath, ['-e', flood], { timeout: 15_000 });
  const counted = await drops();
  assert.ok(counted > 0, `kernel drops counted: ${counted}`);
  assert.equal(counted, readUdpKernelDrops(h.udp), 'the metric is the kernel count for this socket');
});

test('UDP: kernel drops are read from the drops column of the rows of the socket port', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-udp-'));
  try {
    const table = join(dir, 'udp');
    const header =
      '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops';
    const row = (port: string, drops: number) =>
      `  1: 0100007F:${port} 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000  0 1234 2 0000000000000000 ${drops}`;
    writeFileSync(table, [header, row('0202', 7), row('1F90', 5), row('0202', 1), ''].join('\n'));
    assert.equal(readUdpKernelDrops(514, [table]), 8);
    assert.equal(readUdpKernelDrops(8080, [table]), 5);
    assert.equal(readUdpKernelDrops(9999, [table]), 0);
    assert.equal(readUdpKernelDrops(514, [join(dir, 'missing')]), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Issue 17 --------------------------------------------------------------------------------------------------

test('stop drains (issue 17, defect 2): what the kernel holds for a connection at stop is still committed', async () => {
  const publisher = new FakePublisher();
  publisher.delayMs = 5;
  const h = await startIntake({ batch_max_events: 50, max_pending_events: 100 }, publisher);
  const socket = await connect(h.tcp);
  socket.on('error', () => {});
  const want = Array.from({ length: 5000 }, (_, i) => `<13>drain ${i} ${'x'.repeat(100)}`);
  // The reader is paused at 100 pending: most of this sits in socket buffers when the stop begins.
  socket.write(want.map((l) => `${l}\n`).join(''));
  await waitFor('the reader to pause', () => h.publisher.events.length > 0);
  const stopping = h.intake.stop(Date.now() + 15000);
  socket.end();
  await stopping;
  assert.equal(h.publisher.events.length, want.length, 'every line sent before the sender closed is committed');
  assert.deepEqual(h.publisher.messages, want);
  assert.equal(await metric(h.registry, 'vigil_intake_connections_cut_total', { source: 'syslog-tcp' }), 0);
});

test('stop drains: a sender still connected after drain_grace_ms is cut and counted, never reported as no loss', async () => {
  const h = await startIntake({ drain_grace_ms: 200 });
  const socket = await new Promise<net.Socket>((resolve) => {
    const s = net.connect({ port: h.tcp, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
  });
  socket.on('error', () => {});
  socket.write('<13>whole\n<13>partial line without its end');
  await waitFor(
    'the whole line',
    async () => (await metric(h.registry, 'vigil_intake_events_received_total', { source: 'syslog-tcp' })) === 1,
  );
  const started = Date.now();
  await h.intake.stop(Date.now() + 5000);
  assert.ok(Date.now() - started < 2000, 'the grace period bounds the stop');
  assert.deepEqual(h.publisher.messages, ['<13>whole']);
  assert.equal(await metric(h.registry, 'vigil_intake_connections_cut_total', { source: 'syslog-tcp' }), 1);
  assert.equal(
    await metric(h.registry, 'vigil_intake_events_rejected_total', { source: 'syslog-tcp', reason: 'draining' }),
    1,
  );
  socket.destroy();
});

test('time zones (issue 17, defect 3): the sender address picks its zone from syslog.timezones', async () => {
  const seen: (string | undefined)[] = [];
  const h = await startIntake(
    { timezone: 'Europe/Berlin', timezones: { '127.0.0.0/8': 'America/New_York', web7: 'Asia/Tokyo' } },
    undefined,
    {
      parse: (line, ctx) => {
        seen.push(ctx.syslogTime?.zoneFor?.(line.includes('web7') ? 'WEB7' : undefined));
        assert.equal(ctx.syslogTime?.maxFutureMs, 300000);
        return parse(line, ctx);
      },
    },
  );
  await sendUdp(h.udp, ['<13>udp']);
  const socket = await connect(h.tcp);
  await writeChunks(socket, ['<13>tcp\n<13>from web7\n']);
  socket.end();
  await waitFor('3 events', () => h.publisher.events.length === 3);
  assert.deepEqual(seen.sort(), ['America/New_York', 'America/New_York', 'Asia/Tokyo']);
});
