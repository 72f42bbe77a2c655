import { isAscii } from 'node:buffer';
import { BodyBytes, bodyText } from '../lib/body-bytes.ts';
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

/**
 * Bytes of whole lines decoded at a time: past Node's threshold (about 0.98 MiB) for a string whose characters
 * are kept outside V8's heap, so that the lines' texts (slices of it) cost V8's scavenges nothing to copy.
 */
const GROUP_BYTES = 1 << 20;

/**
 * {@link splitJsonYielding} over a body's bytes, with the same elements (index, line, raw text, value or error)
 * for every body. NDJSON of objects, one a line, is split from the bytes, a mebibyte of whole lines at a time:
 * each group decoded once as Latin-1, a string whose characters Node keeps outside V8's heap, and each ASCII
 * line's text a slice of it; a line with other bytes is decoded alone as UTF-8. Each line's text was a string of
 * its own in V8's young generation, which every scavenge copied while the request's events lived (scavenges of
 * 26 against 14 ms in the ingest bench), and the whole body's text before that (a few non-ASCII characters made
 * it two bytes a character). At the first line that is not such an object (a blank line excepted), the rest of
 * the body is decoded and split as text from the last line the two ways agree on; a body that does not start
 * with such a line (a BOM, a JSON array, leading spaces) is split as text whole.
 *
 * A line is taken only once the next value is seen to start a line with `{` (or the body ends), since the
 * text splitter would otherwise join the lines between into that object's chunk (a pretty-printed object).
 * The body's chunks are let go as they are grouped: it cannot be read again afterwards.
 */
export async function splitJsonBytes(
  body: BodyBytes,
  maxElements = Number.POSITIVE_INFINITY,
  budgetMs = TURN_BUDGET_MS,
): Promise<JsonElement[]> {
  const out: JsonElement[] = [];
  if (!(maxElements > 0)) return out;
  const turns = createTurnTaker(budgetMs);
  const source = groups(body);
  // A line that parsed alone as an object, kept until the line after it shows it was a whole element.
  let candidate: JsonValueElement | undefined;
  // Where the text splitter would start (the body's start, or the candidate's line), and the groups read whole
  // since: a position, not the lines' bytes (a body of a million blank lines would otherwise hold a million views).
  let tailFrom: { group: Buffer; offset: number } | undefined;
  let passed: Buffer[] = [];
  let previous: Buffer | undefined;
  let lineNumber = 1;
  let sinceCheck = 0;
  for (let next = source.next(); !next.done; next = source.next()) {
    const group = next.value;
    tailFrom ??= { group, offset: 0 };
    if (previous !== undefined && previous !== tailFrom.group) passed.push(previous);
    previous = group;
    // Latin-1 reads each byte as one character: the text of every ASCII line, and nonsense for the others.
    const latin1 = group.toString('latin1');
    let pos = 0;
    while (pos < group.length) {
      // Every line counts toward a turn, blank ones too: a body of blank lines is split in turns as well.
      if (++sinceCheck >= SPLIT_CHECK_ELEMENTS) {
        sinceCheck = 0;
        if (turns.due()) await turns.take();
      }
      const start = pos;
      if (group[start] === NL) {
        // An empty line, without a call to find its end.
        pos++;
        lineNumber++;
        continue;
      }
      const nl = group.indexOf(NL, start);
      const end = nl < 0 ? group.length : nl;
      pos = end + 1;
      const trimmed = trimmedEnd(group, start, end);
      if (trimmed === start) {
        lineNumber++;
        continue;
      }
      const opens = group[start] === LBRACE;
      const value = opens && group[trimmed - 1] === RBRACE ? parsedLine(group, latin1, start, trimmed) : undefined;
      // The candidate's object ends at this line when this line starts with `{`; otherwise the text splitter
      // would have read on into this line, so it starts from the candidate.
      if (candidate !== undefined && opens) {
        out.push(candidate);
        candidate = undefined;
        tailFrom = { group, offset: start };
        passed = [];
        if (out.length >= maxElements) return out;
      }
      if (value === undefined) {
        const from = tailFrom.group === group ? [] : [tailFrom.group.subarray(tailFrom.offset), ...passed];
        const here = group.subarray(tailFrom.group === group ? tailFrom.offset : 0);
        const text = await textOf([...from, here, ...remaining(source)], budgetMs);
        if (candidate !== undefined) return splitRestYielding(text, candidate.line, out, maxElements, budgetMs);
        // Nothing taken yet: the text is the whole body (blank lines before included), split as the body.
        if (out.length === 0) return splitJsonYielding(text, maxElements, budgetMs);
        return splitRestYielding(text, lineNumber, out, maxElements, budgetMs);
      }
      candidate = { index: out.length, line: lineNumber, raw: value.raw, value: value.value };
      tailFrom = { group, offset: start };
      passed = [];
      lineNumber++;
    }
  }
  if (candidate !== undefined && out.length < maxElements) out.push(candidate);
  return out;
}

/**
 * The body's bytes in groups of whole lines of at least {@link GROUP_BYTES} (the last may be shorter, and a
 * line longer than that is one group), each ending after a line feed but the last. Chunks are let go as taken.
 */
function* groups(body: BodyBytes): Generator<Buffer> {
  const { chunks } = body;
  let parts: Buffer[] = [];
  let size = 0;
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i];
    if (chunk === undefined) throw new Error('a request body was decoded before it was split');
    chunks[i] = undefined;
    parts.push(chunk);
    size += chunk.length;
    if (size < GROUP_BYTES) continue;
    const nl = chunk.lastIndexOf(NL);
    if (nl < 0) continue;
    const all = parts.length === 1 ? chunk : Buffer.concat(parts, size);
    const cut = size - chunk.length + nl + 1;
    yield all.subarray(0, cut);
    parts = cut < size ? [all.subarray(cut)] : [];
    size -= cut;
  }
  if (size > 0) yield parts.length === 1 ? parts[0] : Buffer.concat(parts, size);
}

/** The groups a generator has not given yet. */
function remaining(source: Generator<Buffer>): Buffer[] {
  const rest: Buffer[] = [];
  for (let next = source.next(); !next.done; next = source.next()) rest.push(next.value);
  return rest;
}

/** The pieces' text, decoded as UTF-8 in turns (src/lib/body-bytes.ts). */
function textOf(pieces: Buffer[], budgetMs: number): Promise<string> {
  return bodyText(new BodyBytes(pieces), budgetMs);
}

/** A line's text (`latin1` is the group's Latin-1 text) and its value, or undefined when it is not one JSON value. */
function parsedLine(
  group: Buffer,
  latin1: string,
  start: number,
  end: number,
): { raw: string; value: unknown } | undefined {
  const raw = isAscii(group.subarray(start, end)) ? latin1.slice(start, end) : group.toString('utf8', start, end);
  try {
    return { raw, value: JSON.parse(raw) };
  } catch {
    return undefined;
  }
}

/** The end of `bytes[start, end)` without its trailing spaces, tabs and carriage returns (`start` when blank). */
function trimmedEnd(bytes: Buffer, start: number, end: number): number {
  let j = end;
  while (j > start) {
    const c = bytes[j - 1];
    if (c !== 0x20 && c !== 0x0d && c !== 0x09) break;
    j--;
  }
  return j;
}
