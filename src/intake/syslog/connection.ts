import type { Socket } from 'node:net';
import { type Frame, FrameDecoder, type Framing } from './framing.ts';

/** What a stream connection needs from its intake. */
export interface ConnectionHost {
  /** Whether the connection may hand over another frame now. */
  hasRoom(): boolean;
  frame(frame: Frame, conn: Connection): void;
  /** The connection paused its socket; call `conn.resume()` when there is room again. */
  waitForRoom(conn: Connection): void;
  closed(conn: Connection): void;
  failed(conn: Connection, err: Error): void;
  idle(conn: Connection): void;
}

/**
 * One TCP or TLS syslog connection: reads frames and hands them to the host while it has room; otherwise
 * pauses the socket (TCP flow control then slows the sender) and keeps the frames already read until
 * `resume()`. `drain()` half-closes it and reads on until the sender closes; after `stop()` it reads
 * nothing more from the socket but hands over every complete frame.
 */
export class Connection {
  readonly socket: Socket;
  readonly source: string;
  /** `address:port` of the sender, for logs. */
  readonly peer: string;
  readonly zoneFor: ((hostname: string | undefined) => string) | undefined;
  readonly #host: ConnectionHost;
  readonly #decoder: FrameDecoder;
  readonly #idleTimeoutMs: number;
  #pausedForRoom = false;
  #waiting = false;
  #ended = false;
  #closed = false;
  #stopped = false;

  constructor(
    socket: Socket,
    source: string,
    opts: {
      maxLineBytes: number;
      idleTimeoutMs: number;
      framing?: Framing;
      /** The sender's time zone, given the host name a message names. */
      zoneFor?: (hostname: string | undefined) => string;
    },
    host: ConnectionHost,
  ) {
    this.socket = socket;
    this.source = source;
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    this.#host = host;
    this.#decoder = new FrameDecoder(opts.maxLineBytes, opts.framing);
    this.zoneFor = opts.zoneFor;
    this.#idleTimeoutMs = opts.idleTimeoutMs;
    socket.on('data', (chunk: Buffer) => {
      this.#decoder.push(chunk);
      if (!this.#pausedForRoom) this.#pump();
    });
    socket.on('end', () => {
      this.#ended = true;
      this.#pump();
    });
    socket.on('error', (err) => host.failed(this, err));
    socket.on('close', () => {
      this.#closed = true;
      host.closed(this);
    });
    if (opts.idleTimeoutMs > 0) {
      socket.setTimeout(opts.idleTimeoutMs);
      socket.on('timeout', () => {
        // Silence while we hold the socket paused is ours, not the sender's.
        if (this.#pausedForRoom && !this.#stopped) socket.setTimeout(this.#idleTimeoutMs);
        else host.idle(this);
      });
    }
  }

  /** Bytes read and not yet handed over as frames. */
  get buffered(): number {
    return this.#decoder.buffered;
  }

  /** Called by the host when there is room again: hands over held frames, then reads the socket again. */
  resume(): void {
    this.#waiting = false;
    this.#pump();
  }

  /**
   * Half-closes the connection (our FIN tells the sender to stop and reconnect elsewhere) and keeps reading
   * what it still sends until it closes its side.
   */
  drain(): void {
    if (!this.#closed && !this.socket.destroyed) this.socket.end();
  }

  /** Stops reading the socket and hands over every complete frame already read, room or not. */
  stop(): void {
    this.#stopped = true;
    this.#waiting = false;
    this.socket.pause();
    this.#pump();
  }

  #pump(): void {
    for (;;) {
      if (!this.#stopped && !this.#host.hasRoom()) {
        if (!this.#pausedForRoom) {
          this.#pausedForRoom = true;
          this.socket.pause();
        }
        if (!this.#waiting) {
          this.#waiting = true;
          this.#host.waitForRoom(this);
        }
        return;
      }
      const frame = this.#decoder.next();
      if (frame === undefined) break;
      this.#host.frame(frame, this);
    }
    if (this.#ended) {
      const last = this.#decoder.finish();
      if (last !== undefined) this.#host.frame(last, this);
    }
    if (this.#pausedForRoom && !this.#stopped) {
      this.#pausedForRoom = false;
      if (!this.#closed) this.socket.resume();
    }
  }
}
