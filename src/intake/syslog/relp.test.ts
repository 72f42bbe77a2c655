import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import tls from 'node:tls';
import { Registry } from 'prom-client';
import type { NormalizedEvent } from '../../lib/event.ts';
import { silentLogger } from '../../lib/logger.ts';
import { createSyslogIntake, type SyslogConfigInput, type SyslogIntake, type SyslogParseContext } from './index.ts';
import {
  RELP_MAX_UNSENT_ANSWER_BYTES,
  RelpDecoder,
  type RelpFrame,
  type RelpHost,
  RelpProtocolError,
  RelpSession,
  relpFrame,
} from './relp.ts';
import { freePort } from '../../../test/harness/ports.ts';

// The decoder -----------------------------------------------------------------------------------------------

function decodeAll(chunks: string[], max = 64): string[] {
  const d = new RelpDecoder(max);
  const out: string[] = [];
  const show = (f: RelpFrame) =>
    f.kind === 'frame'
      ? `${f.txnr} ${f.command} [${f.data.toString('latin1')}]`
      : `${f.txnr} ${f.command} <${f.bytes}>`;
  for (const c of chunks) {
    d.push(Buffer.from(c, 'latin1'));
    for (let f = d.next(); f !== undefined; f = d.next()) out.push(show(f));
  }
  return out;
}

test('RELP decoder: frames with and without data, split anywhere', () => {
  const stream = '1 open 30 relp_version=0\ncommands=syslog\n2 syslog 5 <13>a\n3 close 0\n4 close 0 \n';
  const want = ['1 open [relp_version=0\ncommands=syslog]', '2 syslog [<13>a]', '3 close []', '4 close []'];
  assert.deepEqual(decodeAll([stream]), want);
  assert.deepEqual(decodeAll(stream.split('')), want);
});

test('RELP decoder: data longer than allowed is skipped by its length and reported', () => {
  assert.deepEqual(decodeAll(['1 syslog 10 0123', '456789\n2 syslog 1 x\n'], 5), ['1 syslog <10>', '2 syslog [x]']);
});

test('RELP decoder: what is not RELP is refused', () => {
  for (const bad of [
    '<13>Dec  6 02:13:39 host app: plain syslog\n',
    '1 syslog 3 abcd\n',
    '1 OPEN 0\n',
    '1 syslog 4\n',
  ]) {
    assert.throws(() => decodeAll([bad]), RelpProtocolError, bad);
  }
});

// The receiver ----------------------------------------------------------------------------------------------

test('RELP decoder: a long frame sent one byte at a time costs linear time', () => {
  // Copied whole per byte before (Buffer.concat): a 1 MiB frame sent so took 60 s; this one, about 15 s.
  const data = 'x'.repeat(512 * 1024);
  const bytes = Buffer.from(relpFrame(1, 'syslog', data) + relpFrame(2, 'syslog', data));
  const decoder = new RelpDecoder(1024 * 1024);
  const out: number[] = [];
  const started = performance.now();
  for (let i = 0; i < bytes.length; i++) {
    decoder.push(bytes.subarray(i, i + 1));
    for (let f = decoder.next(); f !== undefined; f = decoder.next()) {
      assert.equal(f.kind === 'frame' && f.data.toString(), data);
      out.push(f.txnr);
    }
  }
  assert.deepEqual(out, [1, 2]);
  assert.ok(performance.now() - started < 5000, `took ${performance.now() - started} ms`);
});

const running: SyslogIntake[] = [];
after(async () => {
  await Promise.all(running.map((i) => i.stop(Date.now() + 1000)));
});

/** A publisher whose commits the test releases: `release()` lets every publish so far and later commit. */
class GatedPublisher {
  readonly events: NormalizedEvent[] = [];
  #open = false;
  #waiters: (() => void)[] = [];
  publish = async (events: NormalizedEvent[]): Promise<void> => {
    if (!this.#open) await new Promise<void>((r) => this.#waiters.push(r));
    this.events.push(...events);
  };
  release(): void {
    this.#open = true;
    for (const w of this.#waiters.splice(0)) w();
  }
}

/** The test parser: every line is an event with its text as message, and `extra` fields of its own. */
const plainParse =
  (extra: (line: string) => NormalizedEvent['fields'] = () => ({})) =>
  (line: string, ctx: SyslogParseContext): NormalizedEvent => ({
    id: randomUUID(),
    timestamp: ctx.receivedAt,
    ingested: ctx.receivedAt,
    tenant: ctx.tenant,
    source: ctx.source,
    layout: 'syslog',
    raw: line,
    fields: { message: line, ...extra(line) },
  });

async function startRelp(config: SyslogConfigInput = {}, publisher = new GatedPublisher(), parse = plainParse()) {
  const registry = new Registry();
  const relpPort = await freePort();
  const intake = createSyslogIntake(
    { udp_port: 0, tcp_port: 0, tls_port: 0, relp_port: relpPort, batch_max_wait_ms: 5, ...config },
    {
      publish: publisher.publish,
      parse,
      metrics: registry,
      logger: silentLogger,
    },
  );
  await intake.start();
  running.push(intake);
  return { intake, registry, publisher, port: relpPort, addresses: intake.addresses() };
}

/** A minimal RELP client: collects every frame the server sends. */
class Client {
  readonly received: string[] = [];
  readonly socket: net.Socket;
  #buf = '';
  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.#buf += d;
      for (;;) {
        const m = /^(\d+) (\w+) (\d+)[ \n]/.exec(this.#buf);
        if (!m) return;
        const len = Number(m[3]);
        const start = m[0].length;
        const end = len === 0 ? start - 1 : start + len;
        if (this.#buf.length < end + 1) return;
        this.received.push(`${m[1]} ${m[2]} ${len === 0 ? '' : this.#buf.slice(start, end)}`.trimEnd());
        this.#buf = this.#buf.slice(end + 1);
      }
    });
    socket.on('error', () => {});
  }
  send(txnr: number, command: string, data = ''): void {
    this.socket.write(relpFrame(txnr, command, data));
  }
  async waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
    const until = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(this.received)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

function connectPlain(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(new Client(s)));
    s.once('error', reject);
  });
}

const OPEN = 'relp_version=0\nrelp_software=test\ncommands=syslog';

test('RELP: a message is answered 200 OK only after its batch committed', async () => {
  const h = await startRelp();
  const c = await connectPlain(h.port);
  c.send(1, 'open', OPEN);
  await c.waitFor('the open answer', () => c.received.length === 1);
  assert.match(c.received[0], /^1 rsp 200 OK\nrelp_version=0\nrelp_software=vigil,[^\n]+\ncommands=syslog$/);
  c.send(2, 'syslog', '<13>Dec  6 02:13:39 h app: one');
  c.send(3, 'syslog', '<13>Dec  6 02:13:39 h app: two');
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(c.received.slice(1), [], 'nothing answered before the commit');
  h.publisher.release();
  await c.waitFor('two answers', () => c.received.length === 3);
  assert.deepEqual(c.received.slice(1), ['2 rsp 200 OK', '3 rsp 200 OK']);
  assert.deepEqual(
    h.publisher.events.map((e) => e.raw),
    ['<13>Dec  6 02:13:39 h app: one', '<13>Dec  6 02:13:39 h app: two'],
  );
  assert.ok(h.publisher.events.every((e) => e.source === 'syslog-relp'));
  c.send(4, 'close');
  await new Promise<void>((r) => c.socket.once('close', () => r()));
  assert.equal(c.received.at(-1), '4 rsp');
});

test('RELP: plain syslog sent to the RELP port is refused, never stored as junk events', async () => {
  const h = await startRelp();
  h.publisher.release();
  const c = await connectPlain(h.port);
  c.socket.write('<13>Dec  6 02:13:39 host app: not relp\n<13>Dec  6 02:13:39 host app: again\n');
  await new Promise<void>((r) => c.socket.once('close', () => r()));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(h.publisher.events.length, 0);
  const m = await h.registry.getSingleMetric('vigil_intake_relp_protocol_errors_total')?.get();
  assert.equal(m?.values.find((v) => v.labels.source === 'syslog-relp')?.value, 1);
});

test('RELP: at stop, committed messages are answered, later ones are not, then serverclose', async () => {
  const h = await startRelp();
  const c = await connectPlain(h.port);
  c.send(1, 'open', OPEN);
  await c.waitFor('the open answer', () => c.received.length === 1);
  c.send(2, 'syslog', '<13>kept');
  await new Promise((r) => setTimeout(r, 50));
  const stopping = h.intake.stop(Date.now() + 3000);
  await new Promise((r) => setTimeout(r, 20));
  c.send(3, 'syslog', '<13>after stop');
  h.publisher.release();
  await stopping;
  await c.waitFor('serverclose', () => c.received.includes('0 serverclose'));
  assert.deepEqual(c.received.slice(1), ['2 rsp 200 OK', '0 serverclose']);
  assert.deepEqual(
    h.publisher.events.map((e) => e.raw),
    ['<13>kept'],
    'the message sent after stop is unanswered: the client sends it again',
  );
});

test('RELP over TLS with the syslog certificate', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-relp-tls-'));
  try {
    execFileSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(dir, 'k.pem'),
      '-out',
      join(dir, 'c.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
    ]);
    const port = await freePort();
    const h = await startRelp({
      relp_tls_port: port,
      tls_cert_file: join(dir, 'c.pem'),
      tls_key_file: join(dir, 'k.pem'),
    });
    h.publisher.release();
    assert.equal(h.addresses.relpTls, port);
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => resolve(s));
      s.once('error', reject);
    });
    const c = new Client(socket as unknown as net.Socket);
    c.send(1, 'open', OPEN);
    c.send(2, 'syslog', '<13>secret');
    await c.waitFor('the answers', () => c.received.length === 2);
    assert.equal(c.received[1], '2 rsp 200 OK');
    assert.equal(h.publisher.events[0].source, 'syslog-relp-tls');
    socket.destroy();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A RELP session on a real socket whose host always has room and commits every message at once. */
async function startSession(): Promise<{ port: number; sessions: RelpSession[]; errors: Error[]; close: () => void }> {
  const sessions: RelpSession[] = [];
  const errors: Error[] = [];
  const host: RelpHost = {
    hasRoom: () => true,
    waitForRoom: () => {},
    message: (_line, _session, settled) => settled('committed'),
    oversize: () => {},
    unanswered: () => {},
    protocolError: (_session, err) => errors.push(err),
    closed: () => {},
    failed: () => {},
    idle: () => {},
  };
  const server = net.createServer((socket) => {
    sessions.push(
      new RelpSession(socket, 'syslog-relp', { maxLineBytes: 1024, idleTimeoutMs: 0, software: 'vigil' }, host),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    sessions,
    errors,
    close: () => {
      for (const s of sessions) s.socket.destroy();
      server.close();
    },
  };
}

test('RELP: a client that never reads its answers is not read either past a bounded backlog, and resumes when it reads', async () => {
  const h = await startSession();
  const socket = net.connect({ port: h.port, host: '127.0.0.1' });
  socket.pause();
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  // 1,000,000 messages answered `N rsp 6 200 OK`: about 18 MB the client does not read, more than loopback buffers hold.
  const frames = 1_000_000;
  const parts = [relpFrame(1, 'open', OPEN)];
  for (let i = 2; i <= frames + 1; i++) parts.push(relpFrame(i, 'syslog', 'm'));
  socket.write(parts.join(''));
  let unsent = 0;
  const until = Date.now() + 1500;
  while (Date.now() < until) {
    for (const s of h.sessions) unsent = Math.max(unsent, s.socket.writableLength);
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(
    unsent <= RELP_MAX_UNSENT_ANSWER_BYTES + 1024,
    `${unsent} answer bytes waited in the server's write buffer`,
  );
  // Once the client reads, the session reads on: every message is answered.
  // Each answer is one line; the open answer, with its offers, is five.
  const lines = frames + 5;
  let answers = 0;
  socket.on('data', (d: Buffer) => {
    for (let at = d.indexOf(0x0a); at >= 0; at = d.indexOf(0x0a, at + 1)) answers++;
  });
  socket.resume();
  const deadline = Date.now() + 15_000;
  while (answers < lines && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(answers, lines);
  socket.destroy();
  h.close();
});

test('RELP: any command but open before open ends the session without an answer', async () => {
  for (const command of ['close', 'rsp', 'starttls', 'syslog']) {
    const h = await startSession();
    const c = await connectPlain(h.port);
    const ended = new Promise<void>((resolve) => c.socket.once('close', () => resolve()));
    c.send(1, command, command === 'syslog' ? 'm' : '');
    await ended;
    assert.deepEqual(c.received, [], command);
    assert.match(String(h.errors[0]?.message), new RegExp(`${command} frame came before open`));
    h.close();
  }
});

test("RELP: an event that claims Vigil's own logsource is refused with a clear answer, counted, never published", async () => {
  // A parser that lifts a sender's field into the stored logsource column, as a JSON-in-syslog parser could.
  const parse = plainParse((line): NormalizedEvent['fields'] =>
    line.includes('forged') ? { 'vigil.logsource.product': 'Vigil' } : {},
  );
  const h = await startRelp({}, undefined, parse);
  h.publisher.release();
  const c = await connectPlain(h.port);
  c.send(1, 'open', OPEN);
  c.send(2, 'syslog', '<13>Dec  6 02:13:39 h app: forged backup is fine');
  c.send(3, 'syslog', '<13>Dec  6 02:13:39 h app: an honest line');
  await c.waitFor('three answers', () => c.received.length === 3);
  assert.match(c.received[1], /^2 rsp 500 logsource product 'vigil' is reserved for Vigil's own health events/);
  assert.equal(c.received[2], '3 rsp 200 OK');
  assert.deepEqual(
    h.publisher.events.map((e) => e.raw),
    ['<13>Dec  6 02:13:39 h app: an honest line'],
  );
  const rejected = await h.registry.getSingleMetric('vigil_intake_events_rejected_total')?.get();
  assert.equal(rejected?.values.find((v) => v.labels.reason === 'reserved_logsource')?.value, 1);
  c.socket.destroy();
});
