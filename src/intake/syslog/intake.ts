import { randomUUID } from 'node:crypto';
import dgram from 'node:dgram';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import type { Counter, Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../../lib/component.ts';
import { errorMessage, InputError, VigilError } from '../../lib/errors.ts';
import type { Logsource, NormalizedEvent } from '../../lib/event.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter } from '../../lib/metrics.ts';
import type { SyslogTimeOptions } from '../../parse/index.ts';
import { type SyslogConfig, type SyslogConfigInput, syslogConfigSchema } from './config.ts';
import { Connection, type ConnectionHost } from './connection.ts';
import { type Frame, trimEol } from './framing.ts';
import { type IntakeMetrics, intakeMetrics } from '../metrics.ts';
import { BatchPipeline, type Outcome } from './pipeline.ts';
import { claimsReservedLogsource, RESERVED_LOGSOURCE_MESSAGE } from '../reserved.ts';
import { type RelpHost, RelpSession } from './relp.ts';
import { createZoneResolver, type ZoneResolver } from './timezones.ts';
import { countUdpKernelDrops } from './udp-drops.ts';
import { settleBy } from '../../lib/deadline.ts';
import { sleep } from '../../lib/retry.ts';

/** The `source` of events by the listener that received them. */
export type SyslogSource = 'syslog-udp' | 'syslog-tcp' | 'syslog-tls' | 'syslog-relp' | 'syslog-relp-tls';

/** What the parser is told about a line besides its text. */
export interface SyslogParseContext {
  source: string;
  /** Epoch milliseconds at which the line was read. */
  receivedAt: number;
  tenant: string;
  logsource?: Logsource;
  /** The zone of times that name none (by the sender's host name and address) and the future bound. */
  syslogTime?: SyslogTimeOptions;
}

/** What the syslog intake is given: where events go, how lines become events, telemetry. */
export interface SyslogIntakeDeps {
  /** Resolves once the batch is durably committed; rejects with OverloadError when the pipeline is full. */
  publish(events: NormalizedEvent[]): Promise<void>;
  /** Turns one line into an event; a line it cannot parse still becomes an event, with `parseError`. */
  parse(line: string, ctx: SyslogParseContext): NormalizedEvent;
  metrics: Registry;
  logger: Logger;
  /** False while the node is in maintenance: new TCP/TLS connections are refused (clients move elsewhere). */
  admitting?: () => boolean;
}

/** The ports the intake listens on; a listener that is not bound has none. */
export interface SyslogAddresses {
  udp?: number;
  tcp?: number;
  tls?: number;
  relp?: number;
  relpTls?: number;
}

/** The syslog intake: UDP, TCP and, when a certificate is configured, TLS listeners feeding one batcher. */
export interface SyslogIntake extends Component {
  /** The ports actually bound (the real ones when the config asked for port 0). */
  addresses(): SyslogAddresses;
}

const UDP: SyslogSource = 'syslog-udp';
const TCP: SyslogSource = 'syslog-tcp';
const TLS: SyslogSource = 'syslog-tls';
const RELP: SyslogSource = 'syslog-relp';
const RELP_TLS: SyslogSource = 'syslog-relp-tls';
/** After `serverclose`, how long RELP clients get to close their side before their sockets are cut. */
const RELP_CLOSE_WAIT_MS = 1000;

/** Least wait for the listeners to close at a stop whose deadline has passed: they close within a tick of their last socket. */
const LISTENER_CLOSE_MIN_MS = 1000;
const SOFTWARE = 'vigil,0.1.0,https://github.com/vigil-siem/vigil';
/** Refused connections are logged at most this often, with the count since the last line. */
const REFUSAL_LOG_INTERVAL_MS = 10000;

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

/** Creates the syslog intake; it opens nothing until `start()`. Throws InputError on an invalid config. */
export function createSyslogIntake(config: SyslogConfigInput, deps: SyslogIntakeDeps): SyslogIntake {
  const parsed = syslogConfigSchema.safeParse(config);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new InputError('config_invalid', `invalid syslog configuration: ${problems.join('; ')}`, { problems });
  }
  const frozen = Object.freeze({
    ...parsed.data,
    logsource: parsed.data.logsource && Object.freeze({ ...parsed.data.logsource }),
  });
  return new SyslogIntakeImpl(frozen, deps);
}

class SyslogIntakeImpl implements SyslogIntake, ConnectionHost {
  readonly name = 'intake-syslog';
  readonly #config: Readonly<SyslogConfig>;
  readonly #deps: SyslogIntakeDeps;
  readonly #log: Logger;
  readonly #metrics: IntakeMetrics;
  readonly #pipeline: BatchPipeline;
  readonly #tlsEnabled: boolean;
  #state: State = 'new';
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #failure: string | undefined;
  #udp: dgram.Socket | undefined;
  #tcp: net.Server | undefined;
  #tls: tls.Server | undefined;
  /** Every accepted TCP-level socket (TLS ones still in their handshake too), for the connection cap. */
  readonly #sockets = new Set<net.Socket>();
  readonly #conns = new Set<Connection>();
  /** Connections paused until the pipeline has room, in the order they paused. */
  readonly #waiting = new Set<Connection | RelpSession>();
  #refused = 0;
  #refusalLoggedAt = 0;
  /** Events refused for claiming Vigil's logsource since the last log line about them. */
  #reserved = 0;
  #reservedLoggedAt = 0;
  #udpDropped = 0;
  /** The UDP socket's port while it is bound, for the kernel drop counter. */
  #udpPort: number | undefined;
  #stopCountingDrops: (() => void) | undefined;
  #relp: net.Server | undefined;
  #relpTls: tls.Server | undefined;
  readonly #sessions = new Set<RelpSession>();
  readonly #relpHost: RelpHost;
  readonly #zones: ZoneResolver;
  readonly #cut: Counter<'source'>;
  readonly #unanswered: Counter<'source'>;
  readonly #relpErrors: Counter<'source'>;
  /** Wakes the stop when the last stream connection has closed. */
  #onAllClosed: (() => void) | undefined;

  constructor(config: Readonly<SyslogConfig>, deps: SyslogIntakeDeps) {
    this.#config = config;
    this.#deps = deps;
    this.#log = deps.logger;
    this.#metrics = intakeMetrics(deps.metrics);
    this.#tlsEnabled = config.tls_cert_file !== undefined && config.tls_key_file !== undefined;
    this.#pipeline = new BatchPipeline({
      batchMaxEvents: config.batch_max_events,
      batchMaxWaitMs: config.batch_max_wait_ms,
      maxPendingEvents: config.max_pending_events,
      publish: (events) => deps.publish(events),
      metrics: this.#metrics,
      logger: deps.logger,
      onRoom: () => this.#resumeWaiting(),
    });
    this.#zones = createZoneResolver(config.timezone, config.timezones);
    this.#cut = counter(
      deps.metrics,
      'vigil_intake_connections_cut_total',
      'Syslog stream connections still open when the stop grace period (syslog.drain_grace_ms) ended: what they still had in flight is lost.',
      ['source'],
    );
    this.#unanswered = counter(
      deps.metrics,
      'vigil_intake_relp_unanswered_total',
      'RELP messages committed whose answer could not be sent (the connection was gone): the sender sends them again, and they are stored twice.',
      ['source'],
    );
    this.#relpErrors = counter(
      deps.metrics,
      'vigil_intake_relp_protocol_errors_total',
      'RELP sessions ended because the client broke the protocol (not RELP, a command before open).',
      ['source'],
    );
    this.#relpHost = this.#createRelpHost();
  }

  start(): Promise<void> {
    if (this.#state !== 'new') {
      return Promise.reject(new VigilError('already_started', 'the syslog intake was already started'));
    }
    this.#state = 'starting';
    this.#starting = this.#start();
    return this.#starting;
  }

  stop(deadline: number): Promise<void> {
    this.#stopping ??= this.#stop(deadline);
    return this.#stopping;
  }

  health(): ComponentHealth {
    if (!this.#config.enabled) return { ok: true, detail: 'disabled' };
    if (this.#state !== 'running') return { ok: false, detail: this.#state === 'new' ? 'not started' : this.#state };
    if (this.#failure !== undefined) return { ok: false, detail: this.#failure };
    if (this.#pipeline.failing) return { ok: true, detail: 'publishing is failing; TCP and TLS reading paused' };
    return { ok: true };
  }

  addresses(): SyslogAddresses {
    const out: SyslogAddresses = {};
    if (this.#state !== 'running') return out;
    if (this.#udp) out.udp = this.#udp.address().port;
    const tcp = this.#tcp?.address();
    if (tcp && typeof tcp === 'object') out.tcp = tcp.port;
    const secure = this.#tls?.address();
    if (secure && typeof secure === 'object') out.tls = secure.port;
    const relp = this.#relp?.address();
    if (relp && typeof relp === 'object') out.relp = relp.port;
    const relpTls = this.#relpTls?.address();
    if (relpTls && typeof relpTls === 'object') out.relpTls = relpTls.port;
    return out;
  }

  async #start(): Promise<void> {
    const c = this.#config;
    if (!c.enabled) {
      this.#state = 'running';
      this.#log.info('The syslog intake is disabled.');
      return;
    }
    try {
      const tlsOptions = this.#tlsEnabled ? await this.#readTlsOptions() : undefined;
      this.#udp = await this.#listenUdp();
      this.#udpPort = this.#udp.address().port;
      this.#stopCountingDrops = countUdpKernelDrops(this.#deps.metrics, { source: UDP, port: () => this.#udpPort });
      this.#tcp = net.createServer();
      this.#tcp.on('connection', (socket) => {
        if (this.#admit(socket, TCP)) this.#handle(socket, TCP);
      });
      await this.#listen(this.#tcp, c.tcp_port, TCP);
      if (tlsOptions) {
        this.#tls = tls.createServer(tlsOptions);
        this.#tls.on('connection', (socket) => this.#admit(socket, TLS));
        this.#tls.on('secureConnection', (socket) => this.#handle(socket, TLS));
        this.#tls.on('tlsClientError', (err, socket) => {
          this.#log.info(
            { peer: `${socket.remoteAddress}:${socket.remotePort}`, error: err.message },
            'A TLS syslog client failed its handshake.',
          );
        });
        await this.#listen(this.#tls, c.tls_port, TLS);
      }
      if (c.relp_port !== 0) {
        this.#relp = net.createServer();
        this.#relp.on('connection', (socket) => {
          if (this.#admit(socket, RELP)) this.#handleRelp(socket, RELP);
        });
        await this.#listen(this.#relp, c.relp_port, RELP);
      }
      if (c.relp_tls_port !== 0 && tlsOptions) {
        const server = tls.createServer(tlsOptions);
        this.#relpTls = server;
        server.on('connection', (socket) => this.#admit(socket, RELP_TLS));
        server.on('secureConnection', (socket) => this.#handleRelp(socket, RELP_TLS));
        server.on('tlsClientError', (err, socket) => {
          this.#log.info(
            { peer: `${socket.remoteAddress}:${socket.remotePort}`, error: err.message },
            'A RELP TLS client failed its handshake.',
          );
        });
        await this.#listen(server, c.relp_tls_port, RELP_TLS);
      }
    } catch (err) {
      for (const socket of this.#sockets) socket.destroy();
      await this.#closeListeners();
      this.#state = 'stopped';
      throw err instanceof VigilError
        ? err
        : new VigilError('syslog_listen_failed', `the syslog intake could not listen: ${errorMessage(err)}`, {
            cause: err,
          });
    }
    const sources = this.#tlsEnabled ? [UDP, TCP, TLS] : [UDP, TCP];
    if (this.#relp) sources.push(RELP);
    if (this.#relpTls) sources.push(RELP_TLS);
    for (const source of sources) {
      this.#metrics.received.inc({ source }, 0);
      this.#metrics.accepted.inc({ source }, 0);
      this.#metrics.pending.inc({ source }, 0);
      if (source !== UDP) this.#metrics.connections.inc({ source }, 0);
    }
    this.#state = 'running';
    this.#log.info({ host: c.host, ...this.addresses() }, 'The syslog intake is listening.');
  }

  async #readTlsOptions(): Promise<tls.TlsOptions> {
    const c = this.#config;
    try {
      const [cert, key, ca] = await Promise.all([
        readFile(c.tls_cert_file!),
        readFile(c.tls_key_file!),
        c.tls_ca_file === undefined ? undefined : readFile(c.tls_ca_file),
      ]);
      // With a CA, only clients holding a certificate it signed may send.
      return ca === undefined ? { cert, key } : { cert, key, ca, requestCert: true, rejectUnauthorized: true };
    } catch (err) {
      throw new VigilError('syslog_tls_files', `the syslog intake could not read its TLS files: ${errorMessage(err)}`, {
        cause: err,
      });
    }
  }

  #listenUdp(): Promise<dgram.Socket> {
    const socket = dgram.createSocket(net.isIP(this.#config.host) === 6 ? 'udp6' : 'udp4');
    return new Promise((resolve, reject) => {
      socket.once('error', (err) => {
        socket.close();
        reject(err);
      });
      socket.bind(this.#config.udp_port, this.#config.host, () => {
        socket.removeAllListeners('error');
        socket.on('error', (err) => this.#listenerFailed(UDP, err));
        socket.on('message', (msg, rinfo) => this.#onDatagram(msg, `${rinfo.address}:${rinfo.port}`));
        resolve(socket);
      });
    });
  }

  #listen(server: net.Server, port: number, source: SyslogSource): Promise<void> {
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: this.#config.host }, () => {
        server.off('error', reject);
        server.on('error', (err) => this.#listenerFailed(source, err));
        resolve();
      });
    });
  }

  #listenerFailed(source: SyslogSource, err: Error): void {
    this.#failure = `${source} listener failed: ${err.message}`;
    this.#log.error({ err, source }, 'A syslog listener failed.');
  }

  /** Applies the connection cap to a new TCP-level socket; returns whether it was kept. */
  #admit(socket: net.Socket, source: SyslogSource): boolean {
    if (this.#deps.admitting?.() === false) {
      // Maintenance: the load balancer sees /health/ready fail and sends the client's reconnect elsewhere.
      socket.destroy();
      this.#metrics.refusedConnections.inc({ source, reason: 'maintenance' });
      return false;
    }
    if (!this.#accepting() || this.#sockets.size >= this.#config.max_connections) {
      socket.destroy();
      this.#metrics.refusedConnections.inc({ source, reason: this.#accepting() ? 'max_connections' : 'stopping' });
      this.#refused++;
      const now = Date.now();
      if (this.#accepting() && now - this.#refusalLoggedAt >= REFUSAL_LOG_INTERVAL_MS) {
        this.#log.warn(
          { refused: this.#refused, max_connections: this.#config.max_connections, peer: socket.remoteAddress },
          'Syslog connections refused: too many open.',
        );
        this.#refusalLoggedAt = now;
        this.#refused = 0;
      }
      return false;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    return true;
  }

  /** Connections are taken from the first listener bound until stop. */
  #accepting(): boolean {
    return this.#state === 'starting' || this.#state === 'running';
  }

  #handle(socket: net.Socket, source: SyslogSource): void {
    if (!this.#accepting()) {
      socket.destroy();
      return;
    }
    const conn = new Connection(
      socket,
      source,
      {
        maxLineBytes: this.#config.max_line_bytes,
        idleTimeoutMs: this.#config.idle_timeout_ms,
        framing: this.#config.framing,
        zoneFor: this.#zones(socket.remoteAddress),
      },
      this,
    );
    this.#conns.add(conn);
    this.#metrics.connections.inc({ source });
    this.#log.debug({ peer: conn.peer, source }, 'A syslog client connected.');
  }

  #onDatagram(msg: Buffer, peer: string): void {
    if (this.#state === 'new' || this.#state === 'stopped') return;
    const line = trimEol(msg);
    if (line.length === 0) return;
    this.#metrics.received.inc({ source: UDP });
    if (line.length > this.#config.max_line_bytes) {
      this.#reject(UDP, 'oversize', peer, line.length, 'datagram');
      return;
    }
    if (this.#pipeline.isFull()) {
      this.#metrics.rejected.inc({ source: UDP, reason: 'overloaded' });
      if (this.#udpDropped++ === 0) {
        this.#log.warn({ source: UDP }, 'The syslog pipeline is full; dropping UDP datagrams.');
      }
      return;
    }
    if (this.#udpDropped > 0) {
      this.#log.info({ source: UDP, dropped: this.#udpDropped }, 'The syslog pipeline has room again for UDP.');
      this.#udpDropped = 0;
    }
    this.#accept(line, UDP, this.#zones(peer.slice(0, peer.lastIndexOf(':'))));
  }

  #handleRelp(socket: net.Socket, source: SyslogSource): void {
    if (!this.#accepting()) {
      socket.destroy();
      return;
    }
    const session = new RelpSession(
      socket,
      source,
      { maxLineBytes: this.#config.max_line_bytes, idleTimeoutMs: this.#config.idle_timeout_ms, software: SOFTWARE },
      this.#relpHost,
    );
    this.#sessions.add(session);
    this.#metrics.connections.inc({ source });
    this.#log.debug({ peer: session.peer, source }, 'A RELP client connected.');
  }

  #createRelpHost(): RelpHost {
    const zoneFor = new WeakMap<RelpSession, (hostname: string | undefined) => string>();
    return {
      hasRoom: () => this.#pipeline.hasRoom(),
      waitForRoom: (session) => this.#waiting.add(session),
      message: (line, session, settled) => {
        this.#metrics.received.inc({ source: session.source });
        let zones = zoneFor.get(session);
        if (zones === undefined) {
          zones = this.#zones(session.socket.remoteAddress);
          zoneFor.set(session, zones);
        }
        this.#accept(line, session.source, zones, settled);
      },
      oversize: (session, bytes) => {
        this.#metrics.received.inc({ source: session.source });
        this.#reject(session.source, 'oversize', session.peer, bytes, 'relp');
      },
      unanswered: (session, count) => this.#unanswered.inc({ source: session.source }, count),
      protocolError: (session, err) => {
        this.#relpErrors.inc({ source: session.source });
        this.#log.warn(
          { peer: session.peer, source: session.source, error: err.message },
          'A RELP client broke the protocol; its session is closed.',
        );
      },
      closed: (session) => {
        if (this.#sessions.delete(session)) this.#metrics.connections.dec({ source: session.source });
        this.#waiting.delete(session);
        this.#log.debug({ peer: session.peer, source: session.source }, 'A RELP client disconnected.');
        this.#checkAllClosed();
      },
      failed: (session, err) => {
        this.#log.info({ peer: session.peer, source: session.source, error: err.message }, 'A RELP connection failed.');
      },
      idle: (session) => {
        this.#log.info(
          { peer: session.peer, source: session.source, idle_timeout_ms: this.#config.idle_timeout_ms },
          'Closing an idle RELP connection.',
        );
        session.socket.destroy();
      },
    };
  }

  #accept(
    line: Buffer,
    source: string,
    zoneFor?: (hostname: string | undefined) => string,
    settled?: (outcome: Outcome) => void,
  ): void {
    const text = line.toString('utf8');
    const c = this.#config;
    const ctx: SyslogParseContext = {
      source,
      receivedAt: Date.now(),
      tenant: c.tenant,
      syslogTime: { maxFutureMs: c.max_future_ms, ...(zoneFor ? { zoneFor } : {}) },
    };
    if (c.logsource) ctx.logsource = c.logsource;
    let event: NormalizedEvent;
    try {
      event = this.#deps.parse(text, ctx);
    } catch (err) {
      // A parser bug must not lose the line: it is stored raw, flagged, like any unparsable line.
      this.#log.warn({ source, error: errorMessage(err) }, 'The syslog parser threw; storing the line unparsed.');
      event = unparsedEvent(text, ctx, err);
    }
    if (c.logsource && event.logsource === undefined) event.logsource = c.logsource;
    // The listener's logsource cannot be Vigil's (the config refuses it); this stops any event whose parsed
    // fields claim it, so that no sender forges a health event.
    if (claimsReservedLogsource(event)) {
      this.#metrics.rejected.inc({ source, reason: 'reserved_logsource' });
      this.#reserved++;
      const now = Date.now();
      if (now - this.#reservedLoggedAt >= REFUSAL_LOG_INTERVAL_MS) {
        this.#log.warn({ source, refused: this.#reserved }, `Syslog events refused: ${RESERVED_LOGSOURCE_MESSAGE}.`);
        this.#reservedLoggedAt = now;
        this.#reserved = 0;
      }
      settled?.('reserved');
      return;
    }
    this.#pipeline.enqueue(event, source, settled);
  }

  #reject(source: string, reason: 'oversize', peer: string, bytes: number, framing: string): void {
    this.#metrics.rejected.inc({ source, reason });
    this.#log.warn(
      { source, peer, bytes, framing, max_line_bytes: this.#config.max_line_bytes },
      'A syslog message longer than max_line_bytes was dropped.',
    );
  }

  // ConnectionHost

  hasRoom(): boolean {
    return this.#pipeline.hasRoom();
  }

  frame(frame: Frame, conn: Connection): void {
    const { source } = conn;
    switch (frame.kind) {
      case 'line':
        this.#metrics.received.inc({ source });
        this.#accept(frame.line, source, conn.zoneFor);
        return;
      case 'oversize':
        this.#metrics.received.inc({ source });
        this.#reject(source, 'oversize', conn.peer, frame.bytes, frame.framing);
        return;
      case 'truncated':
        // Counted as read and refused, so that received = accepted + rejected + pending still holds.
        this.#metrics.received.inc({ source });
        this.#metrics.rejected.inc({ source, reason: 'truncated' });
        this.#log.warn(
          { source, peer: conn.peer, bytes: frame.bytes },
          'A syslog client closed its connection in the middle of an octet-counted frame; the partial frame is dropped.',
        );
        return;
    }
  }

  waitForRoom(conn: Connection): void {
    this.#waiting.add(conn);
  }

  closed(conn: Connection): void {
    // A closed connection may still hold frames, waiting for room: it stays in #waiting until handed over.
    if (this.#conns.delete(conn)) this.#metrics.connections.dec({ source: conn.source });
    this.#log.debug({ peer: conn.peer, source: conn.source }, 'A syslog client disconnected.');
    this.#checkAllClosed();
  }

  #checkAllClosed(): void {
    if (this.#onAllClosed && this.#conns.size === 0) this.#onAllClosed();
  }

  failed(conn: Connection, err: Error): void {
    this.#log.info({ peer: conn.peer, source: conn.source, error: err.message }, 'A syslog connection failed.');
  }

  idle(conn: Connection): void {
    this.#log.info(
      { peer: conn.peer, source: conn.source, idle_timeout_ms: this.#config.idle_timeout_ms },
      'Closing an idle syslog connection.',
    );
    conn.socket.destroy();
  }

  #resumeWaiting(): void {
    for (const conn of [...this.#waiting]) {
      // While stopping, draining connections still read; stopped ones ignore resume().
      if (!this.#pipeline.hasRoom() || this.#state === 'stopped') return;
      this.#waiting.delete(conn);
      conn.resume();
    }
  }

  async #stop(deadline: number): Promise<void> {
    // Only waits: a failed start is reported to start()'s caller.
    if (this.#starting) await this.#starting.catch(() => {});
    if (this.#state !== 'running') {
      this.#state = 'stopped';
      return;
    }
    this.#state = 'stopping';
    const c = this.#config;
    // New connections are refused. RELP sessions take no further message: what their clients sent after
    // this is unanswered and sent again elsewhere. Stream connections are half-closed and read on, so that
    // what the kernel already holds for them is committed, not discarded.
    const listenersClosed = this.#closeListeners();
    for (const session of this.#sessions) session.stop();
    for (const conn of this.#conns) conn.drain();
    const graceEnd = Math.min(Date.now() + c.drain_grace_ms, Date.now() + Math.max(0, deadline - Date.now()) / 2);
    if (this.#conns.size > 0) {
      const allClosed = new Promise<void>((resolve) => {
        this.#onAllClosed = resolve;
      });
      await settleBy(allClosed, graceEnd);
      this.#onAllClosed = undefined;
    }
    // Frames already read are handed over now, room or not, also those of connections closed meanwhile.
    for (const waiting of this.#waiting) if (waiting instanceof Connection) waiting.stop();
    let cut = 0;
    let partial = 0;
    for (const conn of [...this.#conns]) {
      conn.stop();
      cut++;
      this.#cut.inc({ source: conn.source });
      if (conn.buffered > 0) {
        partial++;
        this.#metrics.rejected.inc({ source: conn.source, reason: 'draining' });
      }
      conn.socket.destroy();
    }
    this.#waiting.clear();
    if (cut > 0) {
      this.#log.warn(
        { connections: cut, partial_frames: partial, drain_grace_ms: c.drain_grace_ms },
        'Syslog senders still connected after the grace period were cut; what they still had in flight is lost, and TCP does not tell how much.',
      );
    }
    const dropped = await this.#pipeline.flush(deadline);
    // Every RELP message taken is now answered (or given up at the deadline, unanswered): say goodbye.
    for (const session of this.#sessions) session.serverClose();
    if (this.#sessions.size > 0) await sleep(Math.min(RELP_CLOSE_WAIT_MS, Math.max(0, deadline - Date.now())));
    for (const socket of this.#sockets) socket.destroy();
    // A listener calls back once its last connection is gone: bounded, so that a socket this intake did not
    // see to the end cannot hold the node's stop.
    if (!(await settleBy(listenersClosed, Math.max(deadline, Date.now() + LISTENER_CLOSE_MIN_MS)))) {
      this.#log.warn('The syslog listeners had not closed by the stop deadline; the intake stops without them.');
    }
    this.#state = 'stopped';
    const lost = { dropped: dropped + partial, connections_cut: cut };
    if (dropped + partial + cut > 0) this.#log.warn(lost, 'The syslog intake stopped and lost data.');
    else this.#log.info(lost, 'The syslog intake stopped.');
  }

  #closeListeners(): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const server of [this.#tcp, this.#tls, this.#relp, this.#relpTls]) {
      if (server?.listening) closing.push(new Promise((resolve) => server.close(() => resolve())));
    }
    const udp = this.#udp;
    // The port may be bound again by another socket: its kernel drops are not this intake's.
    this.#udpPort = undefined;
    this.#stopCountingDrops?.();
    if (udp) {
      closing.push(
        new Promise((resolve) => {
          try {
            udp.close(() => resolve());
          } catch {
            resolve(); // already closed
          }
        }),
      );
    }
    return Promise.all(closing).then(() => undefined);
  }
}

function unparsedEvent(raw: string, ctx: SyslogParseContext, err: unknown): NormalizedEvent {
  return {
    id: randomUUID(),
    timestamp: ctx.receivedAt,
    ingested: ctx.receivedAt,
    tenant: ctx.tenant,
    source: ctx.source,
    layout: 'syslog',
    ...(ctx.logsource ? { logsource: ctx.logsource } : {}),
    raw,
    parseError: `the parser failed: ${errorMessage(err)}`,
    fields: {},
  };
}
