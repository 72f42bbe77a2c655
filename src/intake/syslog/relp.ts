import type { Socket } from 'node:net';
import { ByteQueue } from './byte-queue.ts';
import type { Outcome } from './pipeline.ts';
import { RESERVED_LOGSOURCE_MESSAGE } from '../reserved.ts';

/**
 * RELP, the reliable event logging protocol of rsyslog (librelp), as a receiver. Every frame, either way, is
 * `TXNR SP COMMAND SP DATALEN [SP DATA] LF`. The client opens with `open` (its offers: `relp_version`,
 * `relp_software`, `commands`), sends `syslog` frames, each answered by `rsp` with the same TXNR (`200 OK`
 * once the message is ours), and ends with `close`. A server that goes away first sends `serverclose`
 * (TXNR 0). The client keeps every unanswered frame and sends it again on its next session, under a new
 * TXNR: so an answer must mean "committed", and a TXNR never identifies a message.
 */

/** One RELP frame read from a client. `oversize` frames had more data than allowed; it was skipped. */
export type RelpFrame =
  | { kind: 'frame'; txnr: number; command: string; data: Buffer }
  | { kind: 'oversize'; txnr: number; command: string; bytes: number };

/** A client broke the RELP framing; the session cannot continue. */
export class RelpProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RelpProtocolError';
  }
}

const LF = 0x0a;
const SP = 0x20;
const MAX_TXNR = 999999999;
/** TXNR (9 digits), COMMAND (32 letters), DATALEN (9 digits) and their separators. */
const MAX_HEADER_BYTES = 9 + 1 + 32 + 1 + 9 + 1;
const HEADER = /^([0-9]{1,9}) ([a-z]{1,32}) ([0-9]{1,9})$/;
/**
 * Answer bytes a session lets wait in its socket's write buffer before it stops reading (until `drain`): a
 * client that sends and never reads its answers fills our memory otherwise (several MB a second).
 */
export const RELP_MAX_UNSENT_ANSWER_BYTES = 64 * 1024;

/** Splits a RELP byte stream into frames. Pull-based, so that a paused session leaves frames here. */
export class RelpDecoder {
  readonly #maxDataBytes: number;
  readonly #queue = new ByteQueue();
  /** Bytes of an oversize frame's data (and its trailing LF) still to be dropped. */
  #skip = 0;

  constructor(maxDataBytes: number) {
    this.#maxDataBytes = maxDataBytes;
  }

  /** Adds bytes read from the stream; a frame's data may share memory with the decoder until the next push. */
  push(chunk: Buffer): void {
    if (this.#skip > 0) {
      const n = Math.min(this.#skip, chunk.length);
      this.#skip -= n;
      chunk = chunk.subarray(n);
      if (chunk.length === 0) return;
    }
    this.#queue.push(chunk);
  }

  /** The next complete frame, or undefined until more bytes arrive. Throws RelpProtocolError on garbage. */
  next(): RelpFrame | undefined {
    if (this.#queue.length === 0 || this.#skip > 0) return undefined;
    // A view of the unread bytes: positions below are relative to the frame's start.
    const buf = this.#queue.bytes.subarray(this.#queue.offset);
    const base = this.#queue.offset;
    // The header ends at the space after DATALEN, or at the LF of a frame without data.
    let spaces = 0;
    let end = -1;
    const limit = Math.min(buf.length, MAX_HEADER_BYTES);
    for (let i = 0; i < limit; i++) {
      const c = buf[i];
      if (c === LF || (c === SP && ++spaces === 3)) {
        end = i;
        break;
      }
    }
    if (end < 0) {
      if (buf.length >= MAX_HEADER_BYTES) throw new RelpProtocolError(`not a RELP frame header: ${preview(buf)}`);
      return undefined;
    }
    const m = HEADER.exec(buf.toString('latin1', 0, end));
    if (!m) throw new RelpProtocolError(`not a RELP frame header: ${preview(buf)}`);
    const txnr = Number(m[1]);
    const command = m[2];
    const length = Number(m[3]);
    if (buf[end] === LF) {
      if (length !== 0) throw new RelpProtocolError(`RELP frame ${txnr} declares ${length} bytes but has none`);
      this.#queue.consumeTo(base + end + 1);
      return { kind: 'frame', txnr, command, data: Buffer.alloc(0) };
    }
    const start = end + 1;
    if (length > this.#maxDataBytes) {
      const available = Math.min(buf.length - start, length + 1);
      this.#skip = length + 1 - available;
      this.#queue.consumeTo(base + start + available);
      return { kind: 'oversize', txnr, command, bytes: length };
    }
    if (buf.length < start + length + 1) return undefined;
    // librelp writes DATALEN 0 as `0 LF`; some clients add the space: both are accepted.
    if (buf[start + length] !== LF) {
      throw new RelpProtocolError(`RELP frame ${txnr} does not end with LF after its ${length} data bytes`);
    }
    this.#queue.consumeTo(base + start + length + 1);
    return { kind: 'frame', txnr, command, data: buf.subarray(start, start + length) };
  }
}

function preview(buf: Buffer): string {
  return JSON.stringify(buf.toString('latin1', 0, Math.min(buf.length, 40)));
}

/** One frame written to a client. */
export function relpFrame(txnr: number, command: string, data: string): string {
  const length = Buffer.byteLength(data);
  return length === 0 ? `${txnr} ${command} 0\n` : `${txnr} ${command} ${length} ${data}\n`;
}

/** What a RELP session needs from its intake. */
export interface RelpHost {
  /** Whether the session may hand over another message now. */
  hasRoom(): boolean;
  /** The session paused its socket; call `session.resume()` when there is room again. */
  waitForRoom(session: RelpSession): void;
  /** One syslog message; `settled` is called once it is committed or given up. */
  message(line: Buffer, session: RelpSession, settled: (outcome: Outcome) => void): void;
  /** A syslog frame with more data than allowed was refused. */
  oversize(session: RelpSession, bytes: number): void;
  /** Committed events whose answer could not be written (the connection was gone): they will come again. */
  unanswered(session: RelpSession, count: number): void;
  protocolError(session: RelpSession, err: Error): void;
  closed(session: RelpSession): void;
  failed(session: RelpSession, err: Error): void;
  idle(session: RelpSession): void;
}

/** Options of a RELP session. */
export interface RelpSessionOptions {
  maxLineBytes: number;
  idleTimeoutMs: number;
  /** `relp_software` offered to clients: `name,version,url`. */
  software: string;
}

/**
 * One RELP connection. Syslog frames are handed to the host while it has room (the socket is paused
 * otherwise); each is answered `200 OK` only when the host reports its event committed. After `stop()` no
 * further frame is taken: what the client sent after that stays unanswered and is sent again elsewhere.
 */
export class RelpSession {
  readonly socket: Socket;
  readonly source: string;
  readonly peer: string;
  readonly #host: RelpHost;
  readonly #decoder: RelpDecoder;
  readonly #opts: RelpSessionOptions;
  #open = false;
  /** Messages handed to the host and not settled yet. */
  #inflight = 0;
  /** TXNR of the client's `close`, answered once every earlier message is. */
  #closeTxnr: number | undefined;
  #pausedForRoom = false;
  /** Reading stopped until the client reads the answers waiting in the socket's write buffer. */
  #pausedForWrite = false;
  #waiting = false;
  #stopped = false;
  #closed = false;
  #failed = false;

  constructor(socket: Socket, source: string, opts: RelpSessionOptions, host: RelpHost) {
    this.socket = socket;
    this.source = source;
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    this.#host = host;
    this.#opts = opts;
    // The data of an `open` (offers) is small; a syslog frame may hold a message of max_line_bytes.
    this.#decoder = new RelpDecoder(opts.maxLineBytes);
    socket.on('data', (chunk: Buffer) => {
      this.#decoder.push(chunk);
      if (!this.#pausedForRoom && !this.#pausedForWrite) this.#pump();
    });
    socket.on('error', (err) => host.failed(this, err));
    socket.on('close', () => {
      this.#closed = true;
      host.closed(this);
    });
    socket.on('drain', () => {
      if (!this.#pausedForWrite) return;
      this.#pausedForWrite = false;
      this.#pump();
    });
    if (opts.idleTimeoutMs > 0) {
      socket.setTimeout(opts.idleTimeoutMs);
      socket.on('timeout', () => {
        if ((this.#pausedForRoom || this.#inflight > 0) && !this.#stopped) socket.setTimeout(opts.idleTimeoutMs);
        else host.idle(this);
      });
    }
  }

  resume(): void {
    this.#waiting = false;
    this.#pump();
  }

  /** Takes no further frame; messages already handed over are still answered as they commit. */
  stop(): void {
    this.#stopped = true;
    this.#waiting = false;
    this.socket.pause();
  }

  /** Tells the client the server goes away (`serverclose`), then ends the connection. */
  serverClose(): void {
    if (this.#closed || this.socket.destroyed) return;
    if (this.#open && this.socket.writable) this.socket.write(relpFrame(0, 'serverclose', ''));
    this.socket.end();
  }

  #pump(): void {
    for (;;) {
      // Frames of a closed session stay unanswered: its client sends them again on its next session.
      if (this.#stopped || this.#failed || this.#closed || this.#closeTxnr !== undefined) return;
      if (this.#pausedForWrite) return;
      if (!this.#host.hasRoom()) {
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
      let frame: RelpFrame | undefined;
      try {
        frame = this.#decoder.next();
      } catch (err) {
        this.#fail(err as Error);
        return;
      }
      if (frame === undefined) break;
      this.#handle(frame);
    }
    this.#pausedForRoom = false;
    if (!this.#closed && this.socket.isPaused()) this.socket.resume();
  }

  #handle(frame: RelpFrame): void {
    const { txnr, command } = frame;
    if (txnr < 1 || txnr > MAX_TXNR) {
      this.#fail(new RelpProtocolError(`RELP transaction number ${txnr} is out of range`));
      return;
    }
    // Before `open` only `open` is understood: anything else is not a RELP client (no answer, no 500).
    if (!this.#open && command !== 'open') {
      this.#fail(new RelpProtocolError(`a RELP ${command} frame came before open`));
      return;
    }
    if (frame.kind === 'oversize') {
      if (command === 'syslog') {
        this.#host.oversize(this, frame.bytes);
        this.#answer(txnr, `500 message of ${frame.bytes} bytes is longer than max_line_bytes`);
      } else {
        this.#fail(new RelpProtocolError(`RELP ${command} frame of ${frame.bytes} bytes is too long`));
      }
      return;
    }
    switch (command) {
      case 'open': {
        if (this.#open) {
          this.#answer(txnr, '500 the session is already open');
          return;
        }
        const offers = parseOffers(frame.data.toString('utf8'));
        const commands = offers.get('commands');
        if (commands !== undefined && !commands.split(',').includes('syslog')) {
          this.#answer(txnr, '500 this server supports only the syslog command');
          this.#fail(new RelpProtocolError('the RELP client does not offer the syslog command'));
          return;
        }
        this.#open = true;
        this.#answer(txnr, `200 OK\nrelp_version=0\nrelp_software=${this.#opts.software}\ncommands=syslog\n`);
        return;
      }
      case 'syslog': {
        if (frame.data.length === 0) {
          this.#answer(txnr, '200 OK');
          return;
        }
        this.#inflight++;
        // The frame's bytes may share the decoder's buffer: the host copies what it keeps before we read on.
        this.#host.message(frame.data, this, (outcome) => this.#settle(txnr, outcome));
        return;
      }
      case 'close':
        this.#closeTxnr = txnr;
        this.#closeIfSettled();
        return;
      case 'rsp':
        return;
      default:
        this.#answer(txnr, `500 command ${command} is not supported`);
    }
  }

  #settle(txnr: number, outcome: Outcome): void {
    this.#inflight--;
    // An abandoned message (the stop deadline passed first) is not answered: the client sends it again.
    if (outcome !== 'abandoned') {
      const answered = this.#answer(txnr, answerOf(outcome));
      if (!answered && outcome === 'committed') this.#host.unanswered(this, 1);
    }
    if (this.#inflight === 0) this.#closeIfSettled();
  }

  #closeIfSettled(): void {
    if (this.#closeTxnr === undefined || this.#inflight > 0) return;
    this.#answer(this.#closeTxnr, '');
    this.socket.end();
  }

  /** Writes `rsp`; false when the connection can no longer carry it. */
  #answer(txnr: number, text: string): boolean {
    if (this.#closed || !this.socket.writable) return false;
    this.socket.write(relpFrame(txnr, 'rsp', text));
    if (this.socket.writableLength > RELP_MAX_UNSENT_ANSWER_BYTES && !this.#pausedForWrite) {
      this.#pausedForWrite = true;
      this.socket.pause();
    }
    return true;
  }

  #fail(err: Error): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#host.protocolError(this, err);
    if (this.#open && this.socket.writable) this.socket.write(relpFrame(0, 'serverclose', ''));
    this.socket.end();
    // A client that does not close after our FIN is cut: the session cannot continue anyway.
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}

/** `name=value` lines of an `open` frame. */
function parseOffers(text: string): Map<string, string> {
  const offers = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) offers.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
    else if (line.trim() !== '') offers.set(line.trim(), '');
  }
  return offers;
}

/** The RELP answer to a message, by what became of it. */
function answerOf(outcome: Exclude<Outcome, 'abandoned'>): string {
  if (outcome === 'committed') return '200 OK';
  if (outcome === 'reserved') return `500 ${RESERVED_LOGSOURCE_MESSAGE}`;
  return '500 the event could not be stored';
}
