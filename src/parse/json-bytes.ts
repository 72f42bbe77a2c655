import { type BodyBytes, type BytePosition, bodyText } from '../lib/body-bytes.ts';
import { createTurnTaker, TURN_BUDGET_MS } from '../lib/turns.ts';
import {
  type JsonElement,
  type JsonValueElement,
  SPLIT_CHECK_ELEMENTS,
  splitJsonYielding,
  splitRestYielding,
} from './json-stream.ts';

const LBRACE = 0x7b;
const RBRACE = 0x7d;
const NL = 0x0a;

/** A line of the body: its bytes without the line feed, where it starts, and its 1-based number. */
interface Line {
  bytes: Buffer;
  at: BytePosition;
  number: number;
}

/** A line that parsed alone as an object, kept until the line after it shows it was a whole element. */
interface Candidate {
  element: JsonValueElement;
  at: BytePosition;
}

/**
 * {@link splitJsonYielding} over a body's bytes, with the same elements (index, line, raw text, value or error)
 * for every body. NDJSON of objects, one a line, is split from the bytes: each line decoded alone (a short
 * string in V8's young generation, one byte a character unless the line itself holds a non-Latin-1 character),
 * so no text of the whole body is made. At the first line that is not such an object (a blank line excepted),
 * the rest of the body is decoded and split as text from the last line the two ways agree on; a body that
 * does not start with such a line (a BOM, a JSON array, leading spaces) is split as text whole.
 *
 * A line is taken only once the next value is seen to start a line with `{` (or the body ends), since the
 * text splitter would otherwise join the lines between into that object's chunk (a pretty-printed object).
 */
export async function splitJsonBytes(
  body: BodyBytes,
  maxElements = Number.POSITIVE_INFINITY,
  budgetMs = TURN_BUDGET_MS,
): Promise<JsonElement[]> {
  const out: JsonElement[] = [];
  const turns = createTurnTaker(budgetMs);
  let candidate: Candidate | undefined;
  let fallbackFrom: Line | Candidate | undefined;
  let wholeText = false;
  let sinceCheck = 0;
  for (const line of lines(body)) {
    // Every line counts toward a turn, blank ones too: a body of blank lines is split in turns as well.
    if (++sinceCheck >= SPLIT_CHECK_ELEMENTS) {
      sinceCheck = 0;
      if (turns.due()) await turns.take();
    }
    if (isBlank(line.bytes)) continue;
    const end = trimmedEnd(line.bytes);
    const value = line.bytes[0] === LBRACE && line.bytes[end - 1] === RBRACE ? parsedLine(line.bytes, end) : undefined;
    // The candidate's object ends at this line when this line starts with `{`; otherwise the text splitter
    // would have read on into this line, so it starts from the candidate.
    if (candidate !== undefined && line.bytes[0] === LBRACE) {
      out.push(candidate.element);
      candidate = undefined;
      if (out.length >= maxElements) return out;
    }
    if (value === undefined) {
      fallbackFrom = candidate ?? line;
      wholeText = out.length === 0 && candidate === undefined;
      break;
    }
    candidate = { element: { index: out.length, line: line.number, raw: value.raw, value: value.value }, at: line.at };
  }
  if (fallbackFrom === undefined) {
    if (candidate !== undefined && out.length < maxElements) out.push(candidate.element);
    return out;
  }
  if (wholeText) return splitJsonYielding(await bodyText(body, budgetMs), maxElements, budgetMs);
  const from = 'number' in fallbackFrom ? fallbackFrom.number : fallbackFrom.element.line;
  return splitRestYielding(await bodyText(body, budgetMs, fallbackFrom.at), from, out, maxElements, budgetMs);
}

/** The body's lines in order, a line that crosses chunks joined (the last line may lack its line feed). */
function* lines(body: BodyBytes): Generator<Line> {
  const { chunks } = body;
  let carry: Buffer[] = [];
  let carryAt: BytePosition = { chunk: 0, offset: 0 };
  let number = 1;
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i];
    if (chunk === undefined) throw new Error('a request body was decoded before it was split');
    let pos = 0;
    for (;;) {
      const nl = chunk.indexOf(NL, pos);
      if (nl < 0) {
        if (pos < chunk.length) {
          if (carry.length === 0) carryAt = { chunk: i, offset: pos };
          carry.push(chunk.subarray(pos));
        }
        break;
      }
      if (carry.length === 0) yield { bytes: chunk.subarray(pos, nl), at: { chunk: i, offset: pos }, number };
      else {
        carry.push(chunk.subarray(pos, nl));
        yield { bytes: Buffer.concat(carry), at: carryAt, number };
        carry = [];
      }
      number++;
      pos = nl + 1;
    }
  }
  if (carry.length > 0) yield { bytes: Buffer.concat(carry), at: carryAt, number };
}

/** The line's text up to `end` and its value, or undefined when it is not one JSON value. */
function parsedLine(bytes: Buffer, end: number): { raw: string; value: unknown } | undefined {
  const raw = bytes.toString('utf8', 0, end);
  try {
    return { raw, value: JSON.parse(raw) };
  } catch {
    return undefined;
  }
}

/** Whether a line holds only spaces, tabs and carriage returns (the text splitter's blank). */
function isBlank(bytes: Buffer): boolean {
  return trimmedEnd(bytes) === 0;
}

/** The line's length without its trailing spaces, tabs and carriage returns. */
function trimmedEnd(bytes: Buffer): number {
  let j = bytes.length;
  while (j > 0) {
    const c = bytes[j - 1];
    if (c !== 0x20 && c !== 0x0d && c !== 0x09) break;
    j--;
  }
  return j;
}
