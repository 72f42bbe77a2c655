import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { errorCodes } from 'fastify';

/** A request body as Fastify hands it to a content type parser (a preParsing hook may report its encoded size). */
export type BodyStream = Readable & { receivedEncodedLength?: number };

/** Bytes decoded at a time: about a millisecond of decoding, and strings that V8 keeps out of its young generation. */
const DECODE_BYTES = 1 << 20;

/**
 * Reads a request body as UTF-8 text, decoding it while it arrives, a mebibyte at a time. Fastify's
 * `parseAs: 'string'` joins the chunks and decodes the whole body at the end, in one call: for the bench's
 * 13 MB ingest bodies that held the event loop 50 to 140 ms (a Buffer.concat and a toString of 13 MB), the
 * longest stalls a search met during ingest. Decoding each 64 KB chunk instead put 13 MB of short-lived
 * strings in the young generation, which every scavenge copied (more and longer minor GC pauses); strings
 * of a mebibyte are allocated beside it. Only the final join is left, a copy of the text. Refuses as
 * Fastify does: past `limitBytes` (as soon as it is passed), or a length other than the Content-Length.
 */
export function readBodyText(
  payload: BodyStream,
  limitBytes: number,
  contentLength: string | undefined,
  done: (err: Error | null, body?: string) => void,
): void {
  const declared = Number(contentLength);
  if (declared > limitBytes) {
    done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
    return;
  }
  const decoder = new StringDecoder('utf8');
  const parts: string[] = [];
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let received = 0;
  const decode = () => {
    const text = decoder.write(pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes));
    if (text.length > 0) parts.push(text);
    pending = [];
    pendingBytes = 0;
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
    pending.push(bytes);
    pendingBytes += bytes.length;
    if (pendingBytes >= DECODE_BYTES) decode();
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
    if (pendingBytes > 0) decode();
    const rest = decoder.end();
    if (rest.length > 0) parts.push(rest);
    done(null, parts.length === 1 ? parts[0] : parts.join(''));
  }
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onEnd);
  payload.resume();
}
