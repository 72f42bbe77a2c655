/**
 * The `re` modifier: Sigma's regular expressions (the PCRE flavour of the modifiers appendix) run on RE2
 * (`re2js`, a pure JavaScript port), which matches in time linear in the input whatever the pattern. A rule is
 * user input (the rules API, hunts), and a backtracking engine on the event loop lets one pattern such as
 * `^(a+)+$` block a node for seconds per event. PCRE constructs that only a backtracking engine can run
 * (backreferences, lookaround, atomic groups, possessive quantifiers, recursion, conditionals) are refused by
 * name. Not one regex of the SigmaHQ corpus (231 values, 2026-12) uses them.
 */
import { RE2JS } from 're2js';

/** The longest pattern accepted (the longest in the SigmaHQ corpus has 217 characters). */
export const MAX_REGEX_LENGTH = 1024;

/** A compiled regular expression: whether it matches anywhere in a string. */
export interface RegexTest {
  test(s: string): boolean;
}

/** Why a pattern cannot be compiled: names the construct and its offset in the pattern. */
export class RegexError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RegexError';
  }
}

const FLAG_BITS: Record<string, number> = {
  i: RE2JS.CASE_INSENSITIVE,
  m: RE2JS.MULTILINE,
  s: RE2JS.DOTALL,
};

/** Group openings `(?...` that need backtracking, longest first. */
const REFUSED_GROUPS: [string, string][] = [
  ['(?<=', 'lookbehind'],
  ['(?<!', 'negative lookbehind'],
  ['(?=', 'lookahead'],
  ['(?!', 'negative lookahead'],
  ['(?>', 'atomic group'],
  ['(?(', 'conditional group'],
  ['(?R)', 'recursion'],
  ['(?&', 'recursion'],
  ['(?P>', 'recursion'],
  ['(?|', 'branch reset group'],
  ['(?#', 'comment group'],
];

function refuse(construct: string, offset: number): never {
  throw new RegexError(
    `${construct} at offset ${offset} is not supported: regular expressions run in linear time (RE2), ` +
      'without backreferences, lookaround, atomic groups or possessive quantifiers',
  );
}

/**
 * Compiles a Sigma regular expression. `flags` holds the `re` sub-modifiers as letters: `i` (case-insensitive),
 * `m` (`^`/`$` at line ends), `s` (`.` matches newlines); inline flags such as `(?i)` work as in PCRE.
 * `\Z` (end, or before a final newline) is rewritten for RE2, which lacks it. Throws a RegexError naming the
 * construct for what RE2 cannot run, or RE2's own syntax error.
 */
export function compileRegex(pattern: string, flags: string): RegexTest {
  if (pattern.length > MAX_REGEX_LENGTH) {
    throw new RegexError(`the pattern has ${pattern.length} characters, more than the limit of ${MAX_REGEX_LENGTH}`);
  }
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      const n = pattern[i + 1];
      if (n === undefined) throw new RegexError('the pattern ends with a lone backslash');
      if (!inClass) {
        if (n >= '1' && n <= '9') refuse(`the backreference \\${n}`, i);
        if (n === 'k' || n === 'g') refuse(`the backreference \\${n}`, i);
        if (n === 'G' || n === 'K') refuse(`\\${n}`, i);
      }
      out += !inClass && n === 'Z' ? '(?:\\n?\\z)' : c + n;
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (pattern[i + 1] === '^') out += pattern[++i];
      // A `]` first in a class is a literal in PCRE; RE2 agrees, but the escape makes it plain.
      if (pattern[i + 1] === ']') out += `\\${pattern[++i]}`;
      continue;
    }
    if (c === '(' && pattern[i + 1] === '?') {
      for (const [open, name] of REFUSED_GROUPS) if (pattern.startsWith(open, i)) refuse(`the ${name} '${open}'`, i);
      if (/^\(\?[+-]?\d/.test(pattern.slice(i, i + 4))) refuse('recursion', i);
      const inline = /^\(\?([a-zA-Z-]+)[):]/.exec(pattern.slice(i, i + 16));
      if (inline?.[1].includes('x')) refuse("the extended-syntax flag 'x'", i);
    }
    if ((c === '+' || c === '?' || c === '*' || c === '}') && pattern[i + 1] === '+') {
      refuse(`the possessive quantifier '${c}+'`, i);
    }
    out += c;
  }
  let bits = 0;
  for (const f of flags) bits |= FLAG_BITS[f] ?? 0;
  try {
    return RE2JS.compile(out, bits);
  } catch (err) {
    throw new RegexError((err as Error).message);
  }
}
