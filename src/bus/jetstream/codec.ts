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
 * is always cut the same way (a retried publish has the same Nats-Msg-Ids). Each message is a JSON array of NormalizedEvent, gzip'ed (level 1) when `compress` is set: logs
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
    // The usual case: the subject's events make one chunk. One JSON.stringify of the array gives the bytes of
    // the joined texts below, and the loop below would not cut them (its size counts one byte more), so a
    // batch is cut and encoded as before; it takes half the CPU of an event at a time.
    const whole = Buffer.from(JSON.stringify(list));
    if (whole.length + 1 <= target && pushBody(out, subject, list, whole, opts)) continue;
    const texts = list.map((e) => JSON.stringify(e));
    let start = 0;
    let size = 2;
    for (let i = 0; i < texts.length; i++) {
      const add = Buffer.byteLength(texts[i]) + 1;
      if (i > start && size + add > target) {
        pushChunk(out, subject, list, texts, start, i, opts);
        start = i;
        size = 2;
      }
      size += add;
    }
    if (start < texts.length) pushChunk(out, subject, list, texts, start, texts.length, opts);
  }
  return out;
}

function pushChunk(
  out: EncodedBatch[],
  subject: string,
  events: readonly NormalizedEvent[],
  texts: readonly string[],
  from: number,
  to: number,
  opts: { maxBytes: number; compress: boolean },
): void {
  const slice = events.slice(from, to);
  if (pushBody(out, subject, slice, Buffer.from(`[${texts.slice(from, to).join(',')}]`), opts)) return;
  if (to - from === 1) {
    const body = opts.compress ? gzipSync(Buffer.from(texts[from]), { level: 1 }) : Buffer.from(texts[from]);
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
  const events: unknown = JSON.parse(json.toString('utf8'));
  if (!Array.isArray(events)) throw new VigilError('bus_bad_message', 'a bus message is not a JSON array of events');
  return events as NormalizedEvent[];
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
