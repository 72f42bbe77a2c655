import { setMaxListeners } from 'node:events';
/**
 * The NATS connection of a node: connects (retrying until stopped), follows reconnects, and holds the
 * JetStream client and manager that every log of the node shares (events, matches, alerts).
 */
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { settleBy } from '../../lib/deadline.ts';
import { errorMessage, VigilError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { backoffDelay, shouldLog, sleep } from '../../lib/retry.ts';
import { redactUrl, redactUrls } from '../../lib/redact.ts';

/** What the connection needs from the bus settings. */
export interface JetStreamConnectionOptions {
  servers: string[];
  /** Shown by the server's monitoring; empty means `vigil`. */
  clientName: string;
  pingIntervalMs: number;
  /** Longest wait for one JetStream API answer or PubAck. */
  requestTimeoutMs: number;
  /** Largest message wanted; the server's max_payload lowers it. */
  maxMessageBytes: number;
  /** Copies of each stream of this cluster. */
  replicas: number;
}

/** The JetStream client and manager while connected. */
export interface JetStreamClients {
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** The core connection (request/reply between sites); it reconnects by itself and keeps its subscriptions. */
  nc: NatsConnection;
}

/** A connection shared by the logs of a node. */
export interface JetStreamConnection {
  readonly replicas: number;
  /** Starts connecting in the background (publishes meanwhile go wherever their owner sends them). */
  open(): void;
  /** Stops every wait and retry: from now on the logs reject new work. */
  shutdown(): void;
  /** Drains and closes the connection, giving up the drain at `deadline`. */
  close(deadline: number): Promise<void>;
  /** True once `shutdown` was called. */
  stopping(): boolean;
  /** Aborts on shutdown: pass it to the waits of background loops. */
  readonly signal: AbortSignal;
  /** Connected, with a JetStream manager. */
  ready(): boolean;
  /** The clients while ready; throws a retryable `bus_disconnected` otherwise. */
  clients(): JetStreamClients;
  /** The largest message body a publish may carry (the server's max_payload less room for headers). */
  maxPayload(): number;
  /** Why the connection is not ready, for health details. */
  lastError(): string | undefined;
  /**
   * Waits up to `ms`; returns early on shutdown, and on a change of state (connected, reconnected, or
   * `notify`) once `until()` holds, and when `signal` aborts.
   */
  wait(ms: number, until?: () => boolean, signal?: AbortSignal): Promise<void>;
  /** Wakes the waits whose condition may now hold (a log became ready). */
  notify(): void;
  /** Told of every change of connected state (for a gauge). */
  onState(listener: (connected: boolean) => void): void;
}

/** Creates the connection; nothing is opened until open(). */
export function createJetStreamConnection(opts: JetStreamConnectionOptions, log: Logger): JetStreamConnection {
  let nc: NatsConnection | undefined;
  let js: JetStreamClient | undefined;
  let jsm: JetStreamManager | undefined;
  let connected = false;
  let stopping = false;
  let maxPayload = opts.maxMessageBytes;
  let lastError: string | undefined;
  let loop: Promise<void> | undefined;
  const halt = new AbortController();
  // Every consumer of the node listens for the shutdown (one per shard kept, with store.shards > 1, plus
  // detection's): more than Node's default 10 is expected, not a leak; each removes its listener when done.
  setMaxListeners(0, halt.signal);
  const waiters = new Set<() => void>();
  const listeners: ((connected: boolean) => void)[] = [];

  const isReady = () => connected && js !== undefined && jsm !== undefined;

  const setConnected = (value: boolean) => {
    connected = value;
    for (const l of listeners) l(value);
    notify();
  };

  function notify(): void {
    for (const wake of [...waiters]) wake();
  }

  function wait(ms: number, until?: () => boolean, signal?: AbortSignal): Promise<void> {
    if (stopping || signal?.aborted || until?.()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        halt.signal.removeEventListener('abort', done);
        signal?.removeEventListener('abort', done);
        waiters.delete(check);
        resolve();
      };
      const check = () => {
        if (until?.()) done();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      halt.signal.addEventListener('abort', done);
      signal?.addEventListener('abort', done);
      if (until) waiters.add(check);
    });
  }

  /** Connects (retrying until shutdown), then makes the manager; the client reconnects by itself after. */
  async function connectLoop(): Promise<void> {
    for (let attempt = 0; !stopping && !nc; attempt++) {
      try {
        const conn = await connect({
          servers: opts.servers,
          name: opts.clientName || 'vigil',
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          pingInterval: opts.pingIntervalMs,
          maxPingOut: 2,
          timeout: 2000,
        });
        if (stopping) {
          await conn.close();
          return;
        }
        nc = conn;
        maxPayload = Math.min(opts.maxMessageBytes, (conn.info?.max_payload ?? opts.maxMessageBytes) - 4096);
        js = jetstream(conn, { timeout: opts.requestTimeoutMs });
        void watchStatus(conn);
        setConnected(true);
        log.info({ server: conn.getServer() }, 'Connected to NATS.');
      } catch (err) {
        if (shouldLog(attempt)) {
          log.warn(
            // A server URL may carry credentials (nats://user:pass@host): logged redacted.
            { err: redactUrls(errorMessage(err)), servers: opts.servers.map(redactUrl), attempt: attempt + 1 },
            'NATS is unreachable; publishes go to the local spool.',
          );
        }
        lastError = `NATS unreachable: ${redactUrls(errorMessage(err))}`;
        await sleep(backoffDelay(attempt + 1, { initialMs: 100, maxMs: 2000 }), halt.signal);
      }
    }
    for (let attempt = 0; !stopping && nc && !jsm; attempt++) {
      try {
        jsm = await jetstreamManager(nc, { timeout: opts.requestTimeoutMs });
        lastError = undefined;
        notify();
      } catch (err) {
        lastError = `JetStream not available: ${errorMessage(err)}`;
        if (shouldLog(attempt))
          log.warn({ err: errorMessage(err), attempt: attempt + 1 }, 'JetStream is not available yet.');
        await sleep(backoffDelay(attempt + 1, { initialMs: 100, maxMs: 2000 }), halt.signal);
      }
    }
  }

  async function watchStatus(conn: NatsConnection): Promise<void> {
    for await (const s of conn.status()) {
      if (s.type === 'disconnect') {
        setConnected(false);
        log.warn({ server: s.server }, 'Disconnected from NATS; reconnecting.');
      } else if (s.type === 'reconnect') {
        setConnected(true);
        log.info({ server: s.server }, 'Reconnected to NATS.');
      }
    }
  }

  return {
    replicas: opts.replicas,
    signal: halt.signal,
    open() {
      loop ??= connectLoop();
    },
    shutdown() {
      stopping = true;
      halt.abort();
    },
    async close(deadline) {
      stopping = true;
      halt.abort();
      await settleBy(loop, deadline);
      const conn = nc;
      nc = undefined;
      js = undefined;
      jsm = undefined;
      if (connected) setConnected(false);
      if (conn) {
        await settleBy(
          conn.drain().catch(() => conn.close()),
          deadline,
        );
        if (!conn.isClosed()) await conn.close();
      }
    },
    stopping: () => stopping,
    ready: isReady,
    clients() {
      if (!isReady() || !js || !jsm || !nc)
        throw new VigilError('bus_disconnected', 'not connected to NATS', { status: 503, retryable: true });
      return { js, jsm, nc };
    },
    maxPayload: () => maxPayload,
    lastError: () => lastError,
    wait,
    notify,
    onState(listener) {
      listeners.push(listener);
    },
  };
}
