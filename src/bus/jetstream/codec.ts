import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { InputError, VigilError } from '../../lib/errors.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import { shardOf } from '../../cluster/shards/types.ts';
import type { LogCodec, LogMessage } from './log.ts';
import { shardSubject } from './names.ts';

/** How a message body is encoded, as written in its `Vigil-Encoding` header. */
export type BodyEncoding = 'json' | 'json+gzip';

/** Header naming the body's encoding. */
export const ENCODING_HEADER = 'Vigil-Encoding';
/** Header with the number of events in the body. */
export const EVENTS_HEADER = 'Vigil-Events';

/** One JetStream message of a published batch, ready to send (or to spool). */
export interface EncodedBatch {
  subject: string;
  /** `Nats-Msg-Id`: a hash of the event ids, so the same events published again are stored once. */
  id: string;
  encoding: BodyEncoding;
  events: number;
  body: Uint8Array;
}

/** Subject token of a tenant: itself when it is a plain token, else `~` and its hex (dots and wildcards are syntax). */
export function tenantToken(tenant: string): string {
  return /^[A-Za-z0-9_-]{1,128}$/.test(tenant) ? tenant : `~${Buffer.from(tenant).toString('hex')}`;
}

/** The deterministic message id of a run of events: a retried publish of the same events gets the same id. */
export function batchId(events: readonly NormalizedEvent[]): string {
  const h = createHash('sha256');
  for (const e of events) h.update(e.id).update('\n');
  return `vb1-${h.digest('base64url').slice(0, 32)}`;
}

/**
 * Splits events into messages of at most `maxBytes` on the wire, one subject per tenant (order is kept within
 * a tenant), and with `shards` > 1 one per shard and tenant (`<prefix>.s<shard>.<tenant>`, shard = shardOf(event
 * id)): a message never mixes shards, so each shard's consumer reads only its own events, and the same batch
 * is always cut the same way by the same version (a retried publish has the same Nats-Msg-Ids; a retry to a
 * node of another version may be cut otherwise, and its events stored twice in the stream, which every
 * consumer writes and evaluates idempotently: docs/deployment.md). Each message is a JSON array of
 * NormalizedEvent, one event a line (see {@link eventLines}), gzip'ed (level 1) when `compress` is set: logs
 * compress 5-15x, which shrinks the replicated stream, and the compression costs a few percent of the
 * encoding time. Throws InputError when one event alone does not fit.
 */
export function encodeBatches(
  events: readonly NormalizedEvent[],
  opts: { subjectPrefix: string; maxBytes: number; compress: boolean; shards?: number },
): EncodedBatch[] {
  const shards = opts.shards ?? 1;
  const bySubject = new Map<string, NormalizedEvent[]>();
  // A batch comes from one tenant nearly always: its subject is computed once per tenant, not per event.
  const tokens = new Map<string, string>();
  for (const e of events) {
    let token = tokens.get(e.tenant);
    if (token === undefined) {
      token = tenantToken(e.tenant);
      tokens.set(e.tenant, token);
    }
    const subject = shardSubject(opts.subjectPrefix, shards, shardOf(e.id, shards), token);
    const list = bySubject.get(subject);
    if (list) list.push(e);
    else bySubject.set(subject, [e]);
  }
  // Uncompressed chunks aim at a multiple of the limit when compressing; a chunk that still compresses too
  // large is halved until it fits.
  const target = opts.compress ? opts.maxBytes * 8 : opts.maxBytes;
  const out: EncodedBatch[] = [];
  for (const [subject, list] of bySubject) {
    const texts = list.map((e) => JSON.stringify(e));
    const bytes = texts.map((t) => Buffer.byteLength(t));
    let start = 0;
    let size = LINES_OVERHEAD;
    for (let i = 0; i < texts.length; i++) {
      const add = bytes[i] + LINE_SEPARATOR.length;
      if (i > start && size + add > target) {
        pushChunk(out, subject, list, { texts, bytes }, start, i, opts);
        start = i;
        size = LINES_OVERHEAD;
      }
      size += add;
    }
    if (start < texts.length) pushChunk(out, subject, list, { texts, bytes }, start, texts.length, opts);
  }
  return out;
}

/** Between two events of a message: the array's comma, and a line feed (see {@link eventLines}). */
const LINE_SEPARATOR = ',\n';
/** The bytes of a message's text beside its events and separators: `[\n` and `\n]`, less one separator. */
const LINES_OVERHEAD = 4 - LINE_SEPARATOR.length;

/** The events' JSON texts and their UTF-8 lengths. */
interface EventTexts {
  texts: readonly string[];
  bytes: readonly number[];
}

/**
 * Where texts to be gzip'ed are written, reused from message to message (gzip copies what it reads): a fresh
 * buffer of a message's size is fresh memory, faulted in page by page, each time. It grows to the largest
 * text written, up to SCRATCH_MAX_BYTES (8x the default `max_message_bytes`, encodeBatches' target); a larger
 * text gets a buffer of its own.
 */
let scratch = Buffer.alloc(0);
const SCRATCH_MAX_BYTES = 8 * 1024 * 1024;

/**
 * A message's text: a JSON array with each event on a line of its own (`[\n{...},\n{...}\n]`), which any JSON
 * parser reads as before, and which {@link decodeBatch} decodes a line at a time: no string of the whole message
 * is made. Such a string of 0.3 to 8 MB is a large object of V8's heap, a fresh mapping of memory each time:
 * decoding it took 1.6 of a store replica's 20 CPU-seconds on a 3-node cluster at 6,000 events/s, more than
 * parsing it (docs/performance.md, 2026-12-07, session 14). JSON.stringify escapes every line feed inside strings, so a line is an event.
 */
function eventLines(events: EventTexts, from: number, to: number, reuse: boolean): Buffer {
  let size = LINES_OVERHEAD;
  for (let i = from; i < to; i++) size += events.bytes[i] + LINE_SEPARATOR.length;
  let out: Buffer;
  if (!reuse || size > SCRATCH_MAX_BYTES) out = Buffer.allocUnsafe(size);
  else {
    if (scratch.length < size) scratch = Buffer.allocUnsafe(size);
    out = scratch.subarray(0, size);
  }
  out[0] = OPEN;
  out[1] = LF;
  let at = 2;
  for (let i = from; i < to; i++) {
    if (i > from) {
      out[at++] = COMMA;
      out[at++] = LF;
    }
    at += out.write(events.texts[i], at);
  }
  out[at++] = LF;
  out[at++] = CLOSE;
  return out;
}

function pushChunk(
  out: EncodedBatch[],
  subject: string,
  events: readonly NormalizedEvent[],
  texts: EventTexts,
  from: number,
  to: number,
  opts: { maxBytes: number; compress: boolean },
): void {
  const slice = events.slice(from, to);
  if (pushBody(out, subject, slice, eventLines(texts, from, to, opts.compress), opts)) return;
  if (to - from === 1) {
    const text = Buffer.from(texts.texts[from]);
    const body = opts.compress ? gzipSync(text, { level: 1 }) : text;
    throw new InputError(
      'event_too_large',
      `event ${events[from].id} takes ${body.length} bytes encoded, more than the bus's message limit of ${opts.maxBytes}`,
      { event_id: events[from].id, bytes: body.length, limit: opts.maxBytes },
    );
  }
  const mid = from + Math.floor((to - from) / 2);
  pushChunk(out, subject, events, texts, from, mid, opts);
  pushChunk(out, subject, events, texts, mid, to, opts);
}

/**
 * Adds the message of `events` whose JSON is `json` when its body (gzip'ed with `compress`) fits the limit;
 * false when it does not (the caller cuts the events in two).
 */
function pushBody(
  out: EncodedBatch[],
  subject: string,
  events: readonly NormalizedEvent[],
  json: Buffer,
  opts: { maxBytes: number; compress: boolean },
): boolean {
  const body = opts.compress ? gzipSync(json, { level: 1 }) : json;
  if (body.length > opts.maxBytes) return false;
  out.push({
    subject,
    id: batchId(events),
    encoding: opts.compress ? 'json+gzip' : 'json',
    events: events.length,
    body,
  });
  return true;
}

/**
 * Most bytes a gzip'ed body may inflate to. A fixed bound, not one derived from `max_message_bytes`: the events
 * stream also holds the peer site's messages, written under the peer's own limit, and the codec is shared by
 * every log. 256 MiB is 256x the default 1 MiB message (encodeBatches aims at 8x), far above any real batch and
 * far below what would exhaust a node's memory: a gzip bomb stops there and is skipped as undecodable.
 */
export const MAX_DECODED_BYTES = 256 * 1024 * 1024;

/** Decodes a message body written by `encodeBatches`; a gzip'ed body inflating beyond `maxDecodedBytes` is refused. */
export function decodeBatch(
  encoding: string | undefined,
  body: Uint8Array,
  maxDecodedBytes = MAX_DECODED_BYTES,
): NormalizedEvent[] {
  let json: Buffer;
  if (encoding === 'json+gzip') {
    try {
      json = gunzipSync(body, { maxOutputLength: maxDecodedBytes });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ERR_BUFFER_TOO_LARGE') throw err;
      throw new VigilError(
        'bus_bad_message',
        `a gzip'ed bus message inflates beyond ${maxDecodedBytes} bytes (${body.length} bytes compressed)`,
        { cause: err },
      );
    }
  } else if (encoding === 'json' || encoding === undefined)
    json = Buffer.from(body.buffer, body.byteOffset, body.length);
  else throw new VigilError('bus_bad_message', `unknown message encoding ${JSON.stringify(encoding)}`);
  const events = eventsOfLines(json) ?? JSON.parse(json.toString('utf8'));
  if (!Array.isArray(events)) throw new VigilError('bus_bad_message', 'a bus message is not a JSON array of events');
  return events as NormalizedEvent[];
}

const LF = 0x0a;
const COMMA = 0x2c;
const OPEN = 0x5b;
const CLOSE = 0x5d;

/**
 * The elements of a message text written as {@link eventLines}, each line parsed alone; undefined when the text is
 * not in that layout (an older node's one-line array) or a line is not one element, which the caller then
 * parses whole: any JSON array decodes to the same elements either way.
 */
export function eventsOfLines(json: Buffer): unknown[] | undefined {
  const n = json.length;
  if (n < 4 || json[0] !== OPEN || json[1] !== LF || json[n - 1] !== CLOSE || json[n - 2] !== LF) return undefined;
  const out: unknown[] = [];
  let p = 2;
  const last = n - 2;
  // After a line with a comma, another element must follow: `[\n{...},\n\n]` is no array.
  let more = false;
  while (p < last) {
    // The text ends with a line feed at `last`, so one is always found.
    const nl = json.indexOf(LF, p);
    const end = nl < last ? nl - 1 : nl;
    // Every line but the last ends with the array's comma; the last has none.
    if (nl < last ? json[end] !== COMMA : json[end - 1] === COMMA) return undefined;
    try {
      out.push(JSON.parse(json.toString('utf8', p, end)));
    } catch {
      return undefined;
    }
    more = nl < last;
    p = nl + 1;
  }
  return more ? undefined : out;
}

/** The event log's codec: a message holds a JSON array of events (gzip'ed or not, as its header says). */
export const eventsCodec: LogCodec<NormalizedEvent[]> = {
  encode(events) {
    return {
      body: Buffer.from(JSON.stringify(events)),
      headers: { [ENCODING_HEADER]: 'json', [EVENTS_HEADER]: String(events.length) },
    };
  },
  decode: (body, header) => decodeBatch(header(ENCODING_HEADER), body),
  weight: (events) => events.length,
};

/** The message of an encoded (or spooled) batch, with its encoding and event count as headers. */
export function messageOf(b: {
  subject: string;
  id: string;
  encoding: string;
  events: number;
  body: Uint8Array;
}): LogMessage {
  return {
    subject: b.subject,
    id: b.id,
    body: b.body,
    headers: { [ENCODING_HEADER]: b.encoding, [EVENTS_HEADER]: String(b.events) },
  };
}

/** A log of JSON values (one value a message): the matches and alerts streams. */
export function jsonCodec<T>(): LogCodec<T> {
  return {
    encode: (value) => ({ body: Buffer.from(JSON.stringify(value)) }),
    decode: (body) => JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.length).toString('utf8')) as T,
  };
}
