/**
 * What the engine's JSON reader (chdb's `JSONExtract*` over `raw`) reads as V8's `JSON.parse` does, measured in
 * chdb (ADR 12). The store leaves a JSON event's original string fields out of its `fields` map when the engine
 * finds the same strings at their paths in the event's text; these are the conditions for that.
 */

/**
 * Deepest nesting of a text whose fields may be left out. The engine refuses documents nested deeper than
 * about a thousand levels, and then finds no field of the text at all, as it does for a lone surrogate
 * (`\ud800`) anywhere in it. Keys written with escapes it reads unescaped, as V8 does.
 */
export const MAX_RAW_DEPTH = 64;

/**
 * Numbers of this magnitude or more are checked in the text ({@link integersRead}): the engine refuses an
 * integer written outside [-2^63, 2^64 - 1] (and then finds no field of the text), while one written with a
 * fraction or an exponent is any double to it. Windows events carry -2^63 (`Keywords`) often.
 */
export const LARGE_NUMBER = 2 ** 63;

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;
/**
 * Runs of 19 digits or more, in the text or in its strings alike (a string's digits only cost a check). Matched
 * whole and looked around in code: a lookahead in the pattern made a long run followed by `.` backtrack once
 * per digit from every start, quadratic in the run's length.
 */
const LONG_DIGITS = /\d{19,}/g;
/** More digits than any integer the engine reads has (2^64 - 1 has 20). */
const MAX_INTEGER_DIGITS = 20;

/** Whether every long integer literal of the text is one the engine reads (digits a fraction or exponent follows make a double). */
export function integersRead(raw: string): boolean {
  for (const m of raw.matchAll(LONG_DIGITS)) {
    const next = raw.charCodeAt(m.index + m[0].length);
    if (next === 0x2e /* . */ || next === 0x65 /* e */ || next === 0x45 /* E */) continue;
    if (m[0].length > MAX_INTEGER_DIGITS) return false;
    const n = raw.charCodeAt(m.index - 1) === 0x2d /* - */ ? -BigInt(m[0]) : BigInt(m[0]);
    if (n < INT64_MIN || n > UINT64_MAX) return false;
  }
  return true;
}

/** String.prototype.isWellFormed (Node 20 has it; the compiler's library target does not name it yet). */
export function wellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/** A key the engine's path finds as one step: not empty, and no dot (the path separator). */
export function plainSegment(key: string): boolean {
  return key.length > 0 && !key.includes('.');
}

/** A string's closing quote and the whitespace before a colon: a key's end in JSON text (or an inflated count, below). */
const KEY_END = /"[ \t\n\r]*:/g;

/**
 * The keys written in a JSON text, or more: every quote not escaped (an even number of backslashes before it)
 * followed by a colon. A string cannot hold an unescaped quote, so every key is counted; a string value that
 * begins with whitespace and a colon is counted too. So when this equals the keys V8's parse holds, the text
 * repeats no key: V8 keeps the last of equal keys and the engine the first, and the value V8 drops is one no
 * check has seen (a number or an escape the engine refuses would hide every field of the text from it).
 */
export function keysWritten(raw: string): number {
  let n = 0;
  // `test` rather than `matchAll`: no match object a key (about 4 KB of garbage a Mordor event, a fifth of
  // what the ingest path allocated). The match ends past the colon; its quote is the last one before it.
  KEY_END.lastIndex = 0;
  while (KEY_END.test(raw)) {
    let quote = KEY_END.lastIndex - 2;
    while (raw.charCodeAt(quote) !== 0x22) quote--;
    let slashes = 0;
    for (let i = quote - 1; i >= 0 && raw.charCodeAt(i) === 0x5c; i--) slashes++;
    if (slashes % 2 === 0) n++;
  }
  return n;
}
