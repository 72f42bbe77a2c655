import { createTurnTaker, TURN_BUDGET_MS } from '../lib/turns.ts';
import { locateJsonError } from './json-locate.ts';

/** One JSON value found in a body. */
export interface JsonValueElement {
  /** 0-based position of the element among all elements of the body, good and bad. */
  index: number;
  /** 1-based: the NDJSON line, the array index + 1, or the line a concatenated value starts on. */
  line: number;
  /** The element's text: the line or object as sent; for an array parsed whole, its JSON serialization. */
  raw: string;
  value: unknown;
}

/** One element of a body that is not valid JSON; the elements after it are still read. */
export interface JsonErrorElement {
  index: number;
  /** The element's line number, counted as for {@link JsonValueElement.line}. */
  line: number;
  /** The element's text (for a concatenated object, up to the next line that starts with `{`). */
  raw: string;
  /** A message naming the reason and the position, e.g. `unexpected "}": expected a value at line 3, column 8`. */
  error: string;
  reason: string;
  /** Where in the body (1-based line and column, in UTF-16 units) the element first goes wrong. */
  at: { line: number; column: number };
}

export type JsonElement = JsonValueElement | JsonErrorElement;

const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const NL = 0x0a;

/**
 * How many further chunks (a chunk runs from a line starting with `{` to the next such line) a value that
 * does not close in its own chunk may run into. Pretty-printers indent nested objects, so a value crosses
 * chunks only in unindented JSON; the bound keeps malformed input linear in time.
 */
const MAX_EXTEND_CHUNKS = 16;

/** Line feeds passed by the last {@link nextChunk} call (module variables: no allocation per element). */
let chunkLines = 0;
/** Whether the last {@link valueEnd} call found the value's closing bracket. */
let valueClosed = true;

/**
 * Splits a request body into JSON values: NDJSON (one value a line), one JSON array (its elements), or
 * concatenated values, pretty-printed or not (as evtx_dump writes them). Blank lines are skipped. A malformed
 * element becomes a {@link JsonErrorElement} and reading goes on: NDJSON at the next line, concatenated
 * objects at the next line starting with `{`, array elements at the next element.
 *
 * The common cases cost one JSON.parse per element; characters are walked one by one only around errors.
 * At most `maxElements` elements are read: a caller that refuses more stops there, whatever the body holds.
 */
export function splitJson(text: string): JsonElement[] {
  const out: JsonElement[] = [];
  const start = openBody(text, out, Number.POSITIVE_INFINITY);
  if (start !== undefined)
    splitSequence(text, { p: start, line: 1, index: 0, failedChunkEnd: -1 }, out, Number.POSITIVE_INFINITY);
  return out;
}

/**
 * {@link splitJson}, letting the event loop turn every `budgetMs` of work (TURN_BUDGET_MS, src/lib/turns.ts)
 * while it splits NDJSON or concatenated values: splitting 95,000 lines of 570 B takes about 0.8 s, which
 * held every other request (health probes included) that long. `Infinity` never turns (intake threads).
 * A top-level array is still parsed in one call.
 */
export async function splitJsonYielding(
  text: string,
  maxElements = Number.POSITIVE_INFINITY,
  budgetMs = TURN_BUDGET_MS,
): Promise<JsonElement[]> {
  const out: JsonElement[] = [];
  const start = openBody(text, out, maxElements);
  if (start === undefined) return out;
  await splitSequenceYielding(text, { p: start, line: 1, index: 0, failedChunkEnd: -1 }, out, maxElements, budgetMs);
  return out;
}

/**
 * Goes on with {@link splitJsonYielding} over `text`, the rest of a body from the start of its line `line`
 * (1-based), after the elements already in `out`, as if the splitter had reached that line itself: it has when
 * every element before it was one line that parsed alone and the next value starts a line with `{`
 * (src/parse/json-bytes.ts). Appends to `out` and returns it.
 */
export async function splitRestYielding(
  text: string,
  line: number,
  out: JsonElement[],
  maxElements = Number.POSITIVE_INFINITY,
  budgetMs = TURN_BUDGET_MS,
): Promise<JsonElement[]> {
  await splitSequenceYielding(text, { p: 0, line, index: out.length, failedChunkEnd: -1 }, out, maxElements, budgetMs);
  return out;
}

async function splitSequenceYielding(
  text: string,
  state: SequenceState,
  out: JsonElement[],
  maxElements: number,
  budgetMs: number,
): Promise<void> {
  const turns = createTurnTaker(budgetMs);
  // Without turns, one call splits it all; with them, a look at the clock every SPLIT_CHECK_ELEMENTS.
  const step = budgetMs === Number.POSITIVE_INFINITY ? maxElements : SPLIT_CHECK_ELEMENTS;
  for (;;) {
    splitSequence(text, state, out, Math.min(maxElements, out.length + step));
    if (state.p >= text.length || out.length >= maxElements) return;
    if (turns.due()) await turns.take();
  }
}

/**
 * Elements split between two looks at the clock: 32 Mordor lines (2.7 KB) parse in about 0.3 ms (lines read,
 * blank ones included, in src/parse/json-bytes.ts).
 */
export const SPLIT_CHECK_ELEMENTS = 32;

/**
 * The opening both splitters share: skips a BOM, and splits a body that is one top-level array. Returns
 * where the sequence of values starts, or undefined when the body is done (empty, or an array).
 */
function openBody(text: string, out: JsonElement[], maxElements: number): number | undefined {
  const start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const first = skipSpace(text, start);
  if (first >= text.length) return undefined;
  if (text.charCodeAt(first) === LBRACKET && splitArray(text, start, first, out, maxElements)) return undefined;
  return start;
}

/** A top-level array: every element is one event. False when the body is more than one top-level value. */
function splitArray(text: string, start: number, open: number, out: JsonElement[], max: number): boolean {
  let whole: unknown;
  try {
    whole = JSON.parse(start === 0 ? text : text.slice(start));
  } catch {
    const end = valueEnd(text, open, text.length);
    if (skipSpace(text, end) < text.length) return false;
    salvageArray(text, open, end, out, max);
    return true;
  }
  if (!Array.isArray(whole)) return false;
  const before = out.length;
  for (let i = 0; i < whole.length && out.length < max; i++) {
    const value = whole[i];
    let raw: string;
    try {
      raw = JSON.stringify(value) ?? 'null';
    } catch {
      // JSON.stringify recurses: an absurdly deep element cannot be re-serialized, so cut the text instead.
      out.length = before;
      salvageArray(text, open, valueEnd(text, open, text.length), out, max);
      return true;
    }
    out.push({ index: i, line: i + 1, raw, value });
  }
  return true;
}

/** An array JSON.parse rejected: each element is parsed alone so one bad element costs only itself. */
function salvageArray(text: string, open: number, end: number, out: JsonElement[], max: number): void {
  const where = positionFinder(text);
  let i = open + 1;
  let index = 0;
  while (out.length < max) {
    i = skipSpace(text, i);
    if (i >= end) {
      const at = where(end);
      out.push(errorElement(index, index + 1, '', 'unexpected end of input: unclosed array', at));
      return;
    }
    if (text.charCodeAt(i) === RBRACKET) return;
    const e = elementEnd(text, i, end);
    const piece = text.slice(i, e).trimEnd();
    if (piece === '') {
      out.push(errorElement(index, index + 1, '', 'empty array element', where(i)));
    } else {
      const value = parseOrFail(piece);
      if (value !== FAILED) {
        out.push({ index, line: index + 1, raw: piece, value });
      } else {
        const fault = locateJsonError(piece) ?? { offset: 0, reason: 'invalid JSON' };
        out.push(errorElement(index, index + 1, piece, fault.reason, where(i + fault.offset)));
      }
    }
    index++;
    if (e >= end || text.charCodeAt(e) !== COMMA) {
      if (e >= end) out.push(errorElement(index, index + 1, '', 'unexpected end of input: unclosed array', where(e)));
      return;
    }
    i = e + 1;
  }
}

/** Where {@link splitSequence} stopped, to resume from. */
interface SequenceState {
  p: number;
  line: number;
  index: number;
  failedChunkEnd: number;
}

/** NDJSON and concatenated values, in one loop: see {@link splitJson}. Stops at `max` elements in `out`. */
function splitSequence(text: string, state: SequenceState, out: JsonElement[], max: number): void {
  const n = text.length;
  let { p, line, index, failedChunkEnd } = state;
  while (p < n && out.length < max) {
    const c = text.charCodeAt(p);
    if (c === NL) {
      line++;
      p++;
      continue;
    }
    if (c === 0x20 || c === 0x09 || c === 0x0d) {
      p++;
      continue;
    }
    // Only an object may run over lines into the next `{` line (pretty-printed, concatenated); anything else is
    // one NDJSON line. Looking for the next `{` line from a scalar made a body of 50,000 lines `1` take 37 s.
    const q = c === LBRACE ? nextChunk(text, p) : lineEnd(text, p);
    const qLines = chunkLines;
    // Fast path: the chunk is exactly one value (an NDJSON line, a pretty-printed object).
    let triedSpanEnd = -1;
    if (q !== failedChunkEnd) {
      const chunkEnd = trimEndAt(text, p, q);
      const chunk = text.slice(p, chunkEnd);
      // An object that does not end with `}` cannot parse: skip the attempt (a throw costs microseconds).
      const value = c === LBRACE && text.charCodeAt(chunkEnd - 1) !== RBRACE ? FAILED : parseOrFail(chunk);
      if (value !== FAILED) {
        out.push({ index: index++, line, raw: chunk, value });
        line += qLines;
        p = q;
        continue;
      }
      failedChunkEnd = q;
      triedSpanEnd = chunkEnd;
    }
    const e = valueEnd(text, p, c === LBRACE ? extendChunks(text, q) : q);
    // An unbalanced value, or the very span the fast path just failed on, cannot parse: skip the attempt.
    const hopeless = !valueClosed || e === triedSpanEnd;
    const piece = hopeless ? '' : text.slice(p, e);
    const value = hopeless ? FAILED : parseOrFail(piece);
    if (value !== FAILED) {
      out.push({ index: index++, line, raw: piece, value });
      line += countLines(text, p, e);
      p = e;
      continue;
    }
    const bad = text.slice(p, trimEndAt(text, p, Math.min(e, q)));
    const fault = locateJsonError(bad) ?? { offset: 0, reason: 'invalid JSON' };
    const faultAt = p + fault.offset;
    const at = { line: line + countLines(text, p, faultAt), column: faultAt - lineStart(text, faultAt) + 1 };
    out.push(errorElement(index++, line, bad, fault.reason, at));
    line += qLines;
    p = q;
  }
  state.p = p;
  state.line = line;
  state.index = index;
  state.failedChunkEnd = failedChunkEnd;
}

const FAILED: unique symbol = Symbol('failed');

function parseOrFail(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return FAILED;
  }
}

function errorElement(
  index: number,
  line: number,
  raw: string,
  reason: string,
  at: { line: number; column: number },
): JsonErrorElement {
  return { index, line, raw, error: `${reason} at line ${at.line}, column ${at.column}`, reason, at };
}

/** The start of the next line that begins with `{`, or the end of the text; sets {@link chunkLines}. */
function nextChunk(text: string, p: number): number {
  let pos = p;
  chunkLines = 0;
  for (;;) {
    const nl = text.indexOf('\n', pos);
    if (nl < 0) return text.length;
    chunkLines++;
    if (text.charCodeAt(nl + 1) === LBRACE) return nl + 1;
    pos = nl + 1;
  }
}

/** The start of the next line, or the end of the text; sets {@link chunkLines}. */
function lineEnd(text: string, p: number): number {
  const nl = text.indexOf('\n', p);
  chunkLines = nl < 0 ? 0 : 1;
  return nl < 0 ? text.length : nl + 1;
}

function extendChunks(text: string, q: number): number {
  let end = q;
  for (let k = 0; k < MAX_EXTEND_CHUNKS && end < text.length; k++) end = nextChunk(text, end);
  return end;
}

/**
 * The end of the value starting at `i`, by bracket depth outside strings, without validating it: a value's
 * extent, so that JSON.parse can judge it. Scalars and garbage end at whitespace or an opening bracket.
 */
function valueEnd(text: string, i: number, limit: number): number {
  valueClosed = true;
  const c = text.charCodeAt(i);
  if (c === QUOTE) return Math.min(stringEnd(text, i, limit) + 1, limit);
  if (c !== LBRACE && c !== LBRACKET) {
    let j = i + 1;
    while (j < limit) {
      const ch = text.charCodeAt(j);
      if (ch <= 0x20 || ch === LBRACE || ch === LBRACKET) break;
      j++;
    }
    return j;
  }
  let depth = 0;
  for (let j = i; j < limit; j++) {
    const ch = text.charCodeAt(j);
    if (ch === QUOTE) j = stringEnd(text, j, limit);
    else if (ch === LBRACE || ch === LBRACKET) depth++;
    else if (ch === RBRACE || ch === RBRACKET) {
      depth--;
      if (depth === 0) return j + 1;
    }
  }
  valueClosed = false;
  return limit;
}

/** Inside an array: where the element starting at `i` ends (a `,` or `]` at depth 0, or `end`). */
function elementEnd(text: string, i: number, end: number): number {
  let depth = 0;
  for (let j = i; j < end; j++) {
    const ch = text.charCodeAt(j);
    if (ch === QUOTE) j = stringEnd(text, j, end);
    else if (ch === LBRACE || ch === LBRACKET) depth++;
    else if (ch === RBRACE || ch === RBRACKET) {
      if (depth === 0) {
        if (ch === RBRACKET) return j;
      } else depth--;
    } else if (ch === COMMA && depth === 0) return j;
  }
  return end;
}

/**
 * The index of the quote closing the string opened at `q`. JSON strings hold no raw line feed, so an
 * unterminated string ends at the end of its line rather than swallowing what follows.
 */
function stringEnd(text: string, q: number, limit: number): number {
  for (let j = q + 1; j < limit; j++) {
    const ch = text.charCodeAt(j);
    if (ch === QUOTE) return j;
    if (ch === BACKSLASH) j++;
    else if (ch === NL) return j - 1;
  }
  return limit;
}

/** The end of `text[from, to)` without its trailing whitespace. */
function trimEndAt(text: string, from: number, to: number): number {
  let j = to;
  while (j > from) {
    const c = text.charCodeAt(j - 1);
    if (c !== 0x20 && c !== NL && c !== 0x0d && c !== 0x09) break;
    j--;
  }
  return j;
}

function skipSpace(text: string, i: number): number {
  let j = i;
  while (j < text.length) {
    const c = text.charCodeAt(j);
    if (c !== 0x20 && c !== NL && c !== 0x0d && c !== 0x09) break;
    j++;
  }
  return j;
}

function countLines(text: string, from: number, to: number): number {
  let count = 0;
  for (let j = from; j < to; j++) if (text.charCodeAt(j) === NL) count++;
  return count;
}

function lineStart(text: string, pos: number): number {
  return pos === 0 ? 0 : text.lastIndexOf('\n', pos - 1) + 1;
}

/** Offsets to 1-based line and column, for offsets met in increasing order (restarts if they go back). */
function positionFinder(text: string): (pos: number) => { line: number; column: number } {
  let lastPos = 0;
  let lastLine = 1;
  return (pos) => {
    if (pos < lastPos) {
      lastPos = 0;
      lastLine = 1;
    }
    lastLine += countLines(text, lastPos, pos);
    lastPos = pos;
    return { line: lastLine, column: pos - lineStart(text, pos) + 1 };
  };
}
