import { readFileSync } from 'node:fs';
import { InputError } from '../lib/errors.ts';

/** A rule of the password policy, as named in a refusal's `details.rule`. */
export type PasswordRule = 'too_short' | 'too_long' | 'common' | 'repetitive' | 'sequence' | 'contains_username';

/** The longest password accepted: scrypt takes any length, but a bound keeps a request's cost bounded. */
const MAX_PASSWORD_LENGTH = 1024;

let commonList: Set<string> | undefined;

/** The common-password list (src/users/common-passwords.txt), read once. */
function common(): Set<string> {
  commonList ??= new Set(
    readFileSync(new URL('./common-passwords.txt', import.meta.url), 'utf8')
      .split('\n')
      .map((l) => l.trim().toLowerCase())
      .filter((l) => l !== '' && !l.startsWith('#')),
  );
  return commonList;
}

// The usual letter-for-symbol swaps (p@ssw0rd), undone before a password is looked up in the list.
const UNLEET: Record<string, string> = {
  '@': 'a',
  '4': 'a',
  '3': 'e',
  '1': 'i',
  '!': 'i',
  '0': 'o',
  $: 's',
  '5': 's',
  '7': 't',
};

// Runs of keys a person types without thinking: rows, columns of the US layout, alphabet and digits.
const WALKS = [
  'abcdefghijklmnopqrstuvwxyz',
  '0123456789',
  'qwertyuiopasdfghjklzxcvbnm',
  'qwertyuiop[]\\',
  "asdfghjkl;'",
  'zxcvbnm,./',
  '1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/',
  'qazwsxedcrfvtgbyhnujmikolp',
  '`1234567890-=',
  '!@#$%^&*()_+',
];

/** Whether `s` (lower case) is a stretch of a keyboard or alphabet walk, forwards or backwards. */
function isWalk(s: string): boolean {
  return WALKS.some((w) => {
    const twice = w + w;
    const back = [...twice].reverse().join('');
    return twice.includes(s) || back.includes(s);
  });
}

/** Whether `s` is at most three walks of three or more keys each (`poiuytrewqlkj`: a row, then another). */
function isWalks(s: string): boolean {
  let i = 0;
  for (let pieces = 0; pieces < 3 && i < s.length; pieces++) {
    let j = i + 1;
    // A walk is at most two turns of the longest WALKS entry, so this loop is bounded whatever the input.
    while (j < s.length && isWalk(s.slice(i, j + 1))) j++;
    if (j - i < 3) return false;
    i = j;
  }
  return i >= s.length;
}

/**
 * Why `password` is refused, or undefined when it passes: shorter than `minLength`; longer than 1024; one
 * of the 1,000 commonest passwords, also with digits or symbols around it, capitals or the usual symbol
 * swaps (`P@ssw0rd2024!`); mostly one character (`aaaaaaaaaaab`), or a short piece repeated
 * (`abcabcabcabc`); a keyboard or alphabet run (`qwertyuiopas`, `123456789012`, up to three of them in a row), or a sequence with one
 * step (`acegikmoqsuw`); containing the username, forwards or backwards.
 */
export function passwordWeakness(
  password: string,
  opts: { minLength: number; username?: string },
): { rule: PasswordRule; message: string } | undefined {
  // Before normalising and splitting: a 64 MiB password would otherwise cost tens of millions of allocations.
  if (password.length > MAX_PASSWORD_LENGTH) {
    return { rule: 'too_long', message: `a password has at most ${MAX_PASSWORD_LENGTH} characters` };
  }
  const chars = [...password.normalize('NFKC')];
  if (chars.length < opts.minLength) {
    return { rule: 'too_short', message: `a password needs at least ${opts.minLength} characters` };
  }
  const lower = chars.join('').toLowerCase();
  const user = opts.username?.toLowerCase();
  if (user && user.length >= 3 && (lower.includes(user) || lower.includes([...user].reverse().join('')))) {
    return { rule: 'contains_username', message: 'a password must not contain the username' };
  }
  const core = lower.replace(/^[^a-z]+|[^a-z]+$/g, '');
  const unleet = (x: string) =>
    [...x]
      .map((c) => UNLEET[c] ?? c)
      .join('')
      .replace(/^[^a-z]+|[^a-z]+$/g, '');
  // Digits and symbols around the word are cut before and after undoing swaps: P@ssw0rd2024! and @dmin1.
  const variants = [lower, core, unleet(core), unleet(lower), lower.replace(/[^a-z0-9]/g, '')];
  const list = common();
  if (variants.some((v) => list.has(v))) {
    return { rule: 'common', message: 'this password is one of the commonest passwords, or one of them decorated' };
  }
  const counts = new Map<string, number>();
  for (const c of lower) counts.set(c, (counts.get(c) ?? 0) + 1);
  const top = Math.max(...counts.values());
  const lowerChars = [...lower];
  const period = smallestPeriod(lowerChars);
  if (top * 2 >= lowerChars.length || counts.size <= 3 || period <= lowerChars.length / 2) {
    return { rule: 'repetitive', message: 'a password must not be mostly one character or a short piece repeated' };
  }
  if (isWalks(lower) || isEvenSequence(lowerChars)) {
    return { rule: 'sequence', message: 'a password must not be a keyboard or alphabet run or a simple sequence' };
  }
  return undefined;
}

/** The length of the shortest piece that, repeated, makes `s` (the whole length when none). */
function smallestPeriod(s: string[]): number {
  for (let p = 1; p <= s.length / 2; p++) {
    let ok = true;
    for (let i = p; i < s.length && ok; i++) ok = s[i] === s[i - p];
    if (ok) return p;
  }
  return s.length;
}

/** Whether at least 3 in 4 steps between neighbours are one and the same small step (abcd, 9753, acegi). */
function isEvenSequence(s: string[]): boolean {
  const steps = new Map<number, number>();
  for (let i = 1; i < s.length; i++) {
    const d = (s[i].codePointAt(0) ?? 0) - (s[i - 1].codePointAt(0) ?? 0);
    if (d !== 0 && Math.abs(d) <= 3) steps.set(d, (steps.get(d) ?? 0) + 1);
  }
  const most = Math.max(0, ...steps.values());
  return most * 4 >= (s.length - 1) * 3;
}

/**
 * Throws a 400 naming the rule (never the password) when `passwordWeakness` finds one: `weak_password`,
 * or `bad_password` for one too long or not a string. `refused` is told the rule first (for a metric).
 */
export function checkPasswordPolicy(
  password: unknown,
  opts: { minLength: number; username?: string; refused?: (rule: PasswordRule | 'not_a_string') => void },
): void {
  if (typeof password !== 'string') {
    opts.refused?.('not_a_string');
    throw new InputError('bad_password', 'password: a string');
  }
  const weak = passwordWeakness(password, opts);
  if (!weak) return;
  opts.refused?.(weak.rule);
  const code = weak.rule === 'too_long' ? 'bad_password' : 'weak_password';
  throw new InputError(code, `password refused: ${weak.message}`, { rule: weak.rule });
}
