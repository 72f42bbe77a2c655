import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { errorCodes } from 'fastify';
import { createTurnTaker, TURN_BUDGET_MS } from '../lib/turns.ts';
import type { JsonPieces } from '../parse/index.ts';

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
 * sockets decoded several mebibytes at once. With `pieces` (the ingest routes) the text is handed over as
 * {@link JsonPieces}, not joined; otherwise the final join, one copy of the text, is left. Refuses as
 * Fastify does: past `limitBytes` (as soon as it is passed), or a length other than the Content-Length.
 * `budgetMs` is the decode's CPU slice between two turns (0 turns after every piece: tests).
 */
export function readBodyText(
  payload: BodyStream,
  limitBytes: number,
  contentLength: string | undefined,
  done: (err: Error | null, body?: string | JsonPieces) => void,
  opts: { budgetMs?: number; pieces?: boolean } = {},
): void {
  const budgetMs = opts.budgetMs ?? TURN_BUDGET_MS;
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
    (opts.pieces ? decodePieces(chunks, budgetMs) : decodeInTurns(chunks, budgetMs)).then(
      (body) => done(null, body),
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

const LINE_FEED = 0x0a;
const LEFT_BRACE = 0x7b;
/** A cut between pieces: after a line feed, before a line's opening `{` (see {@link JsonPieces}). */
const CUT = Buffer.from('\n{');

/**
 * The chunks decoded as {@link JsonPieces} of a mebibyte or more, each cut where a line starts with `{`,
 * letting the event loop turn between budgets. The cut is found in the bytes: a line feed byte is never
 * part of a multi-byte character in UTF-8, so each piece decodes alone exactly as within the whole body,
 * and the partial last line goes to the next piece as bytes, not copied as text. A mebibyte without a cut
 * (a top-level array, lines over a mebibyte) is decoded as {@link decodeInTurns} does and joined at the next
 * cut: such a piece costs the join it always did.
 */
async function decodePieces(chunks: (Buffer | undefined)[], budgetMs: number): Promise<JsonPieces> {
  const decoder = new StringDecoder('utf8');
  const pieces: string[] = [];
  /** Text decoded since the last cut, when a mebibyte had none. */
  let partial: string[] = [];
  const turns = createTurnTaker(budgetMs);
  let group: Buffer[] = [];
  let groupBytes = 0;
  /** Bytes of the group before its last cut; -1 without one. */
  let cutAt = -1;
  let lineEnded = false;
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i] as Buffer;
    chunks[i] = undefined;
    if (chunk.length === 0) continue;
    const inside = chunk.lastIndexOf(CUT);
    if (inside >= 0) cutAt = groupBytes + inside + 1;
    else if (lineEnded && chunk[0] === LEFT_BRACE) cutAt = groupBytes;
    lineEnded = chunk[chunk.length - 1] === LINE_FEED;
    group.push(chunk);
    groupBytes += chunk.length;
    if (groupBytes < DECODE_BYTES) continue;
    if (turns.due()) await turns.take();
    const bytes = group.length === 1 ? group[0] : Buffer.concat(group, groupBytes);
    const head = cutAt < 0 ? bytes : bytes.subarray(0, cutAt);
    const text = decoder.write(head);
    if (cutAt < 0) {
      partial.push(text);
      group = [];
      groupBytes = 0;
      continue;
    }
    // Empty when the group starts at its cut: nothing to hand over yet.
    const piece = partial.length === 0 ? text : partial.join('') + text;
    if (piece.length > 0) pieces.push(piece);
    partial = [];
    const rest = bytes.subarray(cutAt);
    group = rest.length > 0 ? [rest] : [];
    groupBytes = rest.length;
    cutAt = -1;
  }
  if (turns.due()) await turns.take();
  const last = decoder.write(group.length === 1 ? group[0] : Buffer.concat(group, groupBytes)) + decoder.end();
  // Never empty after a cut (a cut is before a `{`); the body's only piece when it is empty.
  pieces.push(partial.length === 0 ? last : partial.join('') + last);
  return { pieces };
}
