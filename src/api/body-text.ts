import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { errorCodes } from 'fastify';
import { createTurnTaker, TURN_BUDGET_MS } from '../lib/turns.ts';

/** A request body as Fastify hands it to a content type parser (a preParsing hook may report its encoded size). */
export type BodyStream = Readable & { receivedEncodedLength?: number };

/** Bytes decoded at a time: about a millisecond, and strings that V8 allocates beside its young generation. */
const DECODE_BYTES = 1 << 20;

/**
 * Reads a request body as UTF-8 text. Fastify's `parseAs: 'string'` decodes the whole body in one call at
 * its end: for the bench's 13 MB ingest bodies that held the event loop 50 to 140 ms (a Buffer.concat and a
 * toString of 13 MB), the longest stalls a search met during ingest. Here the chunks are kept as they come
 * (outside V8's heap) and decoded at the end a mebibyte at a time, taking turns of the event loop
 * (src/lib/turns.ts). Decoding as they came was tried: per 64 KB chunk it put 13 MB of short strings per
 * body through the young generation (longer scavenges), and per mebibyte a poll phase that read several
 * sockets decoded several mebibytes at once. The final join, one copy of the text, is left. Refuses as
 * Fastify does: past `limitBytes` (as soon as it is passed), or a length other than the Content-Length.
 * `budgetMs` is the decode's CPU slice between two turns (0 turns after every piece: tests).
 */
export function readBodyText(
  payload: BodyStream,
  limitBytes: number,
  contentLength: string | undefined,
  done: (err: Error | null, body?: string) => void,
  budgetMs: number = TURN_BUDGET_MS,
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
    decodeInTurns(chunks, budgetMs).then(
      (text) => done(null, text),
      (e: unknown) => done(e instanceof Error ? e : new Error(String(e))),
    );
  }
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onEnd);
  payload.resume();
}

/**
 * The chunks decoded as UTF-8 a mebibyte at a time, letting the event loop turn between budgets. Each chunk is
 * let go once taken into a group, so the bytes shrink as the text grows: at the join, two copies of the text
 * are alive, not the bytes as well (a 48 MiB body peaked at 145 MiB above the baseline, 110 to 113 so).
 */
async function decodeInTurns(chunks: (Buffer | undefined)[], budgetMs: number): Promise<string> {
  const decoder = new StringDecoder('utf8');
  const parts: string[] = [];
  const turns = createTurnTaker(budgetMs);
  let group: Buffer[] = [];
  let groupBytes = 0;
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i] as Buffer;
    chunks[i] = undefined;
    group.push(chunk);
    groupBytes += chunk.length;
    if (groupBytes < DECODE_BYTES && i < chunks.length - 1) continue;
    if (turns.due()) await turns.take();
    const text = decoder.write(group.length === 1 ? group[0] : Buffer.concat(group, groupBytes));
    if (text.length > 0) parts.push(text);
    group = [];
    groupBytes = 0;
  }
  const rest = decoder.end();
  if (rest.length > 0) parts.push(rest);
  return parts.length === 1 ? parts[0] : parts.join('');
}
