import { StringDecoder } from 'node:string_decoder';
import { createTurnTaker, TURN_BUDGET_MS } from './turns.ts';

/** Bytes decoded at a time: about a millisecond, and strings that V8 allocates beside its young generation. */
const DECODE_BYTES = 1 << 20;

/**
 * A request body as the chunks it arrived in, not decoded: the ingest route splits NDJSON lines from the
 * bytes (src/parse/json-bytes.ts), so no text of the whole body is ever made. A Mordor body of 5,000 events
 * holds a few non-ASCII characters, which made its whole text two bytes a character (21.6 MB for 10.8 MB of
 * UTF-8): decoding it in pieces, then joining them, cost 22 CPU-µs an event on a machine whose page faults
 * are dear, against 4 for parsing its lines. Chunks are let go as they are read ({@link bodyText},
 * `splitJsonBytes`): a body is read once.
 */
export class BodyBytes {
  /** The chunks, in order; an entry is undefined once read. */
  readonly chunks: (Buffer | undefined)[];

  constructor(chunks: Buffer[]) {
    this.chunks = chunks;
  }
}

/**
 * The body's text, decoded as UTF-8 (invalid bytes as U+FFFD, as Buffer#toString makes them) a mebibyte at a
 * time, letting the event loop turn between budgets (src/lib/turns.ts). Each chunk is let go once taken, so the
 * bytes shrink as the text grows: the body cannot be read again afterwards.
 * `budgetMs` 0 turns after every piece (tests).
 */
export async function bodyText(body: BodyBytes, budgetMs: number = TURN_BUDGET_MS): Promise<string> {
  const { chunks } = body;
  const decoder = new StringDecoder('utf8');
  const parts: string[] = [];
  const turns = createTurnTaker(budgetMs);
  let group: Buffer[] = [];
  let groupBytes = 0;
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i];
    if (chunk === undefined) throw new Error('a request body was decoded twice');
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
