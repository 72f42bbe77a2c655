import type { Readable } from 'node:stream';
import { errorCodes } from 'fastify';
import { BodyBytes, bodyText } from '../lib/body-bytes.ts';
import { TURN_BUDGET_MS } from '../lib/turns.ts';

/** A request body as Fastify hands it to a content type parser (a preParsing hook may report its encoded size). */
export type BodyStream = Readable & { receivedEncodedLength?: number };

/** Chunks smaller than this are copied into a shared piece of {@link PIECE_BYTES} rather than kept one by one. */
const SMALL_CHUNK_BYTES = 16 * 1024;
const PIECE_BYTES = 64 * 1024;

/** How {@link readBodyText} hands the body over. */
export interface ReadBodyOptions {
  /** The decode's CPU slice between two turns of the event loop (0 turns after every piece: tests). */
  budgetMs?: number;
  /** Hand the body over undecoded, as a {@link BodyBytes} (routes that split NDJSON from bytes, src/parse/json-bytes.ts). */
  asBytes?: boolean;
}

/**
 * Reads a request body: as UTF-8 text, or (`asBytes`) as its bytes. Fastify's `parseAs: 'string'` decodes the
 * whole body in one call at its end: for the bench's 13 MB ingest bodies that held the event loop 50 to 140 ms
 * (a Buffer.concat and a toString of 13 MB), the longest stalls a search met during ingest. Here the chunks are
 * kept as they come (outside V8's heap) and decoded at the end a mebibyte at a time, taking turns of the event
 * loop (src/lib/turns.ts). Decoding as they came was tried: per 64 KB chunk it put 13 MB of short strings per
 * body through the young generation (longer scavenges), and per mebibyte a poll phase that read several
 * sockets decoded several mebibytes at once. The final join, one copy of the text, is left. Small chunks (a
 * client may send a byte a chunk: a Buffer and an array slot each, about 450 bytes of memory a byte of body)
 * are copied into pieces of 64 KiB. Refuses as Fastify does: past `limitBytes` (as soon as it is passed), or a
 * length other than the Content-Length.
 */
export function readBodyText(
  payload: BodyStream,
  limitBytes: number,
  contentLength: string | undefined,
  done: (err: Error | null, body?: string | BodyBytes) => void,
  opts: ReadBodyOptions = {},
): void {
  const declared = Number(contentLength);
  if (declared > limitBytes) {
    done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
    return;
  }
  const chunks: Buffer[] = [];
  let received = 0;
  // Small chunks gathered: a piece being filled and how much of it is.
  let piece: Buffer | undefined;
  let pieceBytes = 0;
  const endPiece = () => {
    if (piece !== undefined && pieceBytes > 0) chunks.push(piece.subarray(0, pieceBytes));
    piece = undefined;
    pieceBytes = 0;
  };
  const stop = () => {
    payload.removeListener('data', onData);
    payload.removeListener('end', onEnd);
    payload.removeListener('error', onEnd);
  };
  function onData(chunk: Buffer | string) {
    // A preParsing hook's stream may give strings.
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    received += bytes.length;
    // The decoded size bounds the body, and the encoded one too (a compressed body, see Fastify's "zip bomb").
    if (received > limitBytes || (payload.receivedEncodedLength ?? 0) > limitBytes) {
      stop();
      done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
      return;
    }
    if (bytes.length >= SMALL_CHUNK_BYTES) {
      endPiece();
      chunks.push(bytes);
      return;
    }
    if (piece !== undefined && pieceBytes + bytes.length > piece.length) endPiece();
    piece ??= Buffer.allocUnsafe(PIECE_BYTES);
    bytes.copy(piece, pieceBytes);
    pieceBytes += bytes.length;
  }
  function onEnd(err?: Error & { statusCode?: number }) {
    stop();
    if (err != null) {
      if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400;
      done(err);
      return;
    }
    if (!Number.isNaN(declared) && (payload.receivedEncodedLength || received) !== declared) {
      done(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH());
      return;
    }
    endPiece();
    const body = new BodyBytes(chunks);
    if (opts.asBytes === true) {
      done(null, body);
      return;
    }
    bodyText(body, opts.budgetMs ?? TURN_BUDGET_MS).then(
      (text) => done(null, text),
      (e: unknown) => done(e instanceof Error ? e : new Error(String(e))),
    );
  }
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onEnd);
  payload.resume();
}
