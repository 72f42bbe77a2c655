import type { Readable } from 'node:stream';
import { errorCodes } from 'fastify';
import { BodyBytes, bodyText } from '../lib/body-bytes.ts';
import { TURN_BUDGET_MS } from '../lib/turns.ts';

/** A request body as Fastify hands it to a content type parser (a preParsing hook may report its encoded size). */
export type BodyStream = Readable & { receivedEncodedLength?: number };

/**
 * Reads a request body as UTF-8 text. Fastify's `parseAs: 'string'` decodes the whole body in one call at
 * its end: for the bench's 13 MB ingest bodies that held the event loop 50 to 140 ms (a Buffer.concat and a
 * toString of 13 MB), the longest stalls a search met during ingest. Here the chunks are kept as they come
 * (outside V8's heap) and decoded at the end a mebibyte at a time, taking turns of the event loop
 * (src/lib/turns.ts). Decoding as they came was tried: per 64 KB chunk it put 13 MB of short strings per
 * body through the young generation (longer scavenges), and per mebibyte a poll phase that read several
 * sockets decoded several mebibytes at once. The final join, one copy of the text, is left. Refuses as
 * Fastify does: past `limitBytes` (as soon as it is passed), or a length other than the Content-Length.
 * `budgetMs` is the decode's CPU slice between two turns (0 turns after every piece: tests). With `asBytes`
 * (routes that split NDJSON from bytes, src/parse/json-bytes.ts) the body is handed over undecoded.
 */
export function readBodyText(
  payload: BodyStream,
  limitBytes: number,
  contentLength: string | undefined,
  done: (err: Error | null, body?: string | BodyBytes) => void,
  budgetMs: number = TURN_BUDGET_MS,
  asBytes = false,
): void {
  const declared = Number(contentLength);
  if (declared > limitBytes) {
    done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
    return;
  }
  const chunks: Buffer[] = [];
  let received = 0;
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
    chunks.push(bytes);
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
    const body = new BodyBytes(chunks, received);
    if (asBytes) {
      done(null, body);
      return;
    }
    bodyText(body, budgetMs).then(
      (text) => done(null, text),
      (e: unknown) => done(e instanceof Error ? e : new Error(String(e))),
    );
  }
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onEnd);
  payload.resume();
}
