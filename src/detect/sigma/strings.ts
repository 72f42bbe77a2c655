/**
 * Sigma string values: escape handling, wildcards, the string transformations of the modifiers appendix
 * (windash, base64, base64offset, utf16*), and compilation of a pattern into the cheapest string test.
 */

import { RE2JS } from 're2js';

/** `*` in a Sigma string: any number of characters. */
export const ANY = Symbol('*');
/** `?` in a Sigma string: exactly one character. */
export const ONE = Symbol('?');
/** A position the `windash` modifier may fill with any of `-`, `/`, en dash, em dash or horizontal bar. */
export const DASH = Symbol('windash');

export type Part = string | typeof ANY | typeof ONE | typeof DASH;

/** A Sigma string after escape processing: literal runs and wildcard tokens. */
export type Pattern = Part[];

/** The characters that `windash` makes interchangeable. */
export const WINDASH_CHARS = ['-', '/', '\u2013', '\u2014', '\u2015'] as const;

/**
 * Parses a Sigma string value into literals and wildcards, per "Escape Character" of the specification:
 * `\*`, `\?` and `\\` are escapes; a backslash before anything else is a plain backslash (so `C:\Windows`
 * keeps its backslash and `\\\\` means two backslashes).
 */
export function parseSigmaString(s: string): Pattern {
  const out: Pattern = [];
  let lit = '';
  let escaped = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (escaped) {
      if (c === '*' || c === '?' || c === '\\') lit += c;
      else lit += '\\' + c;
      escaped = false;
    } else if (c === '\\') {
      escaped = true;
    } else if (c === '*' || c === '?') {
      if (lit) out.push(lit);
      lit = '';
      out.push(c === '*' ? ANY : ONE);
    } else {
      lit += c;
    }
  }
  if (escaped) lit += '\\';
  if (lit) out.push(lit);
  return out;
}

/** A pattern holding exactly this text, with no wildcards. */
export function literalPattern(s: string): Pattern {
  return s ? [s] : [];
}

export function hasWildcards(p: Pattern): boolean {
  return p.some((x) => typeof x !== 'string');
}

/** The literal text of a pattern; throws when it holds wildcards (encodings cannot carry them). */
export function patternText(p: Pattern, modifier: string): string {
  let s = '';
  for (const x of p) {
    if (typeof x !== 'string') throw new Error(`the ${modifier} modifier cannot be applied to a value with wildcards`);
    s += x;
  }
  return s;
}

function isWordChar(c: string | undefined): boolean {
  return c !== undefined && /[A-Za-z0-9_]/.test(c);
}

/**
 * `windash`: marks each `-` or `/` that begins a word (pySigma's `\B[-/]\b`: preceded by a non-word character
 * or the start, followed by a word character) as a DASH position. A wildcard counts as a non-word neighbour.
 */
export function windash(p: Pattern): Pattern {
  const out: Pattern = [];
  for (let k = 0; k < p.length; k++) {
    const x = p[k];
    if (typeof x !== 'string') {
      out.push(x);
      continue;
    }
    let lit = '';
    for (let i = 0; i < x.length; i++) {
      const c = x[i];
      if ((c === '-' || c === '/') && !isWordChar(x[i - 1]) && isWordChar(x[i + 1])) {
        if (lit) out.push(lit);
        lit = '';
        out.push(DASH);
      } else {
        lit += c;
      }
    }
    if (lit) out.push(lit);
  }
  return out;
}

/** Replaces DASH positions by each of the windash characters: every permutation, as plain patterns. */
export function expandDashes(p: Pattern): Pattern[] {
  let acc: Pattern[] = [[]];
  for (const x of p) {
    if (x === DASH) {
      const next: Pattern[] = [];
      for (const a of acc) for (const d of WINDASH_CHARS) next.push([...a, d]);
      acc = next;
    } else {
      for (const a of acc) a.push(x);
    }
  }
  return acc.map(mergeLiterals);
}

function mergeLiterals(p: Pattern): Pattern {
  const out: Pattern = [];
  for (const x of p) {
    const last = out[out.length - 1];
    if (typeof x === 'string' && typeof last === 'string') out[out.length - 1] = last + x;
    else if (x !== '') out.push(x);
  }
  return out;
}

export function countDashes(p: Pattern): number {
  let n = 0;
  for (const x of p) if (x === DASH) n++;
  return n;
}

/** UTF-16 encodings of the `utf16le`/`wide`, `utf16be` and `utf16` (with byte order mark) modifiers. */
export function utf16(text: string, variant: 'le' | 'be' | 'bom'): Buffer {
  const le = Buffer.from(text, 'utf16le');
  if (variant === 'le') return le;
  if (variant === 'bom') return Buffer.concat([Buffer.from([0xff, 0xfe]), le]);
  const be = Buffer.alloc(le.length);
  for (let i = 0; i + 1 < le.length; i += 2) {
    be[i] = le[i + 1];
    be[i + 1] = le[i];
  }
  return be;
}

/** `base64`: the standard encoding with padding. */
export function base64(bytes: Buffer): string {
  return bytes.toString('base64');
}

/**
 * `base64offset`: the three encodings of the value at byte offsets 0, 1 and 2 of a longer base64 string,
 * cut to the part that does not depend on the neighbouring bytes (pySigma's algorithm).
 */
export function base64Offsets(bytes: Buffer): string[] {
  const starts = [0, 2, 3];
  const ends = [undefined, -3, -2];
  const out: string[] = [];
  for (let i = 0; i < 3; i++) {
    const enc = Buffer.concat([Buffer.alloc(i, 0x20), bytes]).toString('base64');
    out.push(enc.slice(starts[i], ends[(bytes.length + i) % 3]));
  }
  return out;
}

/** A test of one string value; patterns are compiled once into the cheapest form that implements them. */
export type StrTest = (s: string) => boolean;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** The regular expression source of a pattern, anchored at both ends. */
export function patternRegExpSource(p: Pattern): string {
  let src = '^';
  for (const x of p) {
    if (x === ANY) src += '[\\s\\S]*';
    else if (x === ONE) src += '[\\s\\S]';
    else if (x === DASH) src += '[-/\u2013\u2014\u2015]';
    else src += escapeRegExp(x);
  }
  return src + '$';
}

/**
 * Compiles a pattern into a string test. `lower`: the pattern is lowercased here and the tested value must be
 * lowercased by the caller (case-insensitive matching with one lowercase per field per event).
 * Shapes `lit`, `*lit`, `lit*`, `*lit*` and `a*b` use string methods; other shapes use RE2: as a RegExp,
 * `*a*a*a*c` backtracks in O(n^k) (31 s for 500 characters), RE2 matches in linear time.
 */
export function compilePattern(p: Pattern, lower: boolean): StrTest {
  const parts = lower ? p.map((x) => (typeof x === 'string' ? x.toLowerCase() : x)) : p;
  if (parts.includes(DASH)) {
    if (countDashes(parts) <= 2) return anyOf(expandDashes(parts).map((e) => compilePattern(e, false)));
    const re = RE2JS.compile(patternRegExpSource(parts));
    return (s) => re.test(s);
  }
  const n = parts.length;
  if (n === 0) return (s) => s === '';
  const onlyAny = parts.every((x) => x === ANY);
  if (onlyAny) return () => true;
  const a = parts[0];
  const b = parts[n - 1];
  if (n === 1 && typeof a === 'string') return (s) => s === a;
  if (n === 2 && a === ANY && typeof b === 'string') return (s) => s.endsWith(b);
  if (n === 2 && typeof a === 'string' && b === ANY) return (s) => s.startsWith(a);
  if (n === 3 && a === ANY && b === ANY && typeof parts[1] === 'string') {
    const m = parts[1];
    return (s) => s.includes(m);
  }
  if (n === 3 && typeof a === 'string' && parts[1] === ANY && typeof b === 'string') {
    const min = a.length + b.length;
    return (s) => s.length >= min && s.startsWith(a) && s.endsWith(b);
  }
  const re = RE2JS.compile(patternRegExpSource(parts));
  return (s) => re.test(s);
}

/** OR of tests; exact-equality literals are gathered in one Set lookup. */
export function anyOf(tests: StrTest[]): StrTest {
  if (tests.length === 1) return tests[0];
  return (s) => {
    for (let i = 0; i < tests.length; i++) if (tests[i](s)) return true;
    return false;
  };
}

/**
 * Literal text one of which every match of a regular expression contains (one per top-level alternative,
 * lowercased), for prefiltering; undefined when some alternative has no mandatory literal.
 */
export function regexNeedles(pattern: string): string[] | undefined {
  const src = pattern.replace(/^\(\?[imsx]+\)/, '');
  const branches: string[] = [];
  let depth = 0;
  let inClass = false;
  let start = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) {
      branches.push(src.slice(start, i));
      start = i + 1;
    }
  }
  branches.push(src.slice(start));
  const out: string[] = [];
  for (const b of branches) {
    const n = branchLiteral(b);
    if (!n) return undefined;
    out.push(n.toLowerCase());
  }
  return [...new Set(out)];
}

const LITERAL_ESCAPES: Record<string, string> = { t: '\t', n: '\n', r: '\r', f: '\f', v: '\v' };

/** The longest run of mandatory literal characters of one alternative (no `|` at its top level). */
function branchLiteral(src: string): string {
  let best = '';
  let run = '';
  const flush = (): void => {
    if (run.length > best.length) best = run;
    run = '';
  };
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    let lit: string | undefined;
    let next = i + 1;
    if (c === '\\') {
      const e = src[i + 1];
      if (e === undefined) break;
      if (LITERAL_ESCAPES[e]) lit = LITERAL_ESCAPES[e];
      else if (!/[A-Za-z0-9]/.test(e)) lit = e;
      next = i + 2;
    } else if (c === '[') {
      let j = i + 1;
      if (src[j] === '^') j++;
      if (src[j] === ']') j++;
      while (j < src.length && src[j] !== ']') j += src[j] === '\\' ? 2 : 1;
      next = j + 1;
    } else if (c === '(') {
      let depth = 0;
      let j = i;
      let inClass = false;
      for (; j < src.length; j++) {
        const d = src[j];
        if (d === '\\') {
          j++;
          continue;
        }
        if (inClass) {
          if (d === ']') inClass = false;
          continue;
        }
        if (d === '[') inClass = true;
        else if (d === '(') depth++;
        else if (d === ')' && --depth === 0) break;
      }
      next = j + 1;
    } else if (!'.^$|)*+?{'.includes(c)) {
      lit = c;
    }
    // A quantifier after the atom: optional atoms end the run; `+` and `{n,}` with n >= 1 keep one copy.
    const q = src[next];
    let optional = false;
    let repeated = false;
    if (q === '?' || q === '*') {
      optional = true;
      next++;
    } else if (q === '+') {
      repeated = true;
      next++;
    } else if (q === '{') {
      const m = /^\{(\d*)(,\d*)?\}/.exec(src.slice(next));
      if (m) {
        if (m[1] === '' || m[1] === '0') optional = true;
        else repeated = m[2] !== undefined || m[1] !== '1';
        next += m[0].length;
      }
    }
    if (src[next] === '?' || src[next] === '+') next++;
    if (lit === undefined || optional) {
      flush();
    } else {
      run += lit;
      if (repeated) flush();
    }
    i = next;
  }
  flush();
  return best;
}
