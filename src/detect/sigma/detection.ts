/**
 * The detection section of a rule: search identifiers (maps, lists of maps, keyword lists), field items with
 * their modifiers, and the compilation of each item's values into field-independent tests. Binding a test to
 * an event field (which depends on the event layout and the logsource mapping) happens in compile.ts.
 */
import { compileCidr } from './cidr.ts';
import { type CondNode, ConditionError, parseCondition } from './condition.ts';
import type { RejectedRule } from './types.ts';
import { compileRegex, type RegexTest } from './regex.ts';
import {
  ANY,
  anyOf,
  base64,
  base64Offsets,
  compilePattern,
  literalPattern,
  type Pattern,
  parseSigmaString,
  patternText,
  regexNeedles,
  type StrTest,
  utf16,
  windash,
} from './strings.ts';

/** A number as written in the rule (`0x17`, `010`, `4688`): matched by value and by its source text. */
export class NumLit {
  readonly value: number;
  readonly text: string;
  constructor(value: number, text: string) {
    this.value = value;
    this.text = text;
  }
}

/** A scalar of a detection as loaded from YAML. */
export type RuleScalar = string | number | boolean | null | NumLit;

/** A location inside the rule document (keys and list indexes), used to report the line of an error. */
export type DocPath = (string | number)[];

/** A rule that cannot be used, with the place in the document that is at fault. */
export class RuleError extends Error {
  readonly path?: DocPath;
  /** The bound the rule passed, when that is why it is refused. */
  readonly limit?: RejectedRule['limit'];
  constructor(message: string, path?: DocPath, limit?: RejectedRule['limit']) {
    super(message);
    this.name = 'RuleError';
    this.path = path;
    this.limit = limit;
  }
}

/** Every modifier of the modifiers appendix (v2.1), plus pySigma's long names of the regex sub-modifiers. */
export const KNOWN_MODIFIERS: ReadonlySet<string> = new Set([
  'contains',
  'startswith',
  'endswith',
  'all',
  'exists',
  'cased',
  'neq',
  'windash',
  're',
  'i',
  'm',
  's',
  'ignorecase',
  'multiline',
  'dotall',
  'base64',
  'base64offset',
  'utf16le',
  'utf16be',
  'utf16',
  'wide',
  'lt',
  'lte',
  'gt',
  'gte',
  'minute',
  'hour',
  'day',
  'week',
  'month',
  'year',
  'cidr',
  'expand',
  'fieldref',
]);

const TIME_PARTS = new Set(['minute', 'hour', 'day', 'week', 'month', 'year']);
const COMPARE = new Set(['lt', 'lte', 'gt', 'gte']);
const REGEX_FLAGS: Record<string, string> = { i: 'i', m: 'm', s: 's', ignorecase: 'i', multiline: 'm', dotall: 's' };
const ENCODINGS = new Set(['base64', 'base64offset', 'utf16le', 'utf16be', 'utf16', 'wide']);

/** A field item as written: `Field|mod1|mod2: values`. `field` is null for keyword searches. */
export interface FieldItemDef {
  readonly field: string | null;
  readonly modifiers: readonly string[];
  readonly values: readonly RuleScalar[];
  readonly path: DocPath;
  /** The item uses `expand`: it can only be compiled once placeholder values are known. */
  readonly expand: boolean;
  /** The compiled form (for `expand` items, with the placeholder values given when loading). */
  compiled?: CompiledItem;
}

/** A search identifier's definition: a map (AND of items), a list (OR of alternatives) or keywords. */
export type SearchDef =
  | { t: 'and'; items: FieldItemDef[] }
  | { t: 'or'; alts: SearchDef[] }
  | { t: 'kw'; item: FieldItemDef };

export interface ParsedDetection {
  readonly searches: ReadonlyMap<string, SearchDef>;
  readonly condition: CondNode;
}

/**
 * A field item compiled into tests on the field's value.
 * - `str`: each value is a string test over the lowercased value (`raw` false) or the value as written
 *   (`raw` true: `cased`, `re`, encodings, `cidr`, numeric and time comparisons).
 * - `null`: the field is absent or null. `exists`: the field is present (or absent when `exists` is false).
 * - `fieldref`: the field equals (or starts with, ends with, contains) another field of the same event.
 */
export type CompiledItem =
  | {
      kind: 'str';
      field: string | null;
      raw: boolean;
      /** `all`: every test must pass; otherwise any. */
      all: boolean;
      /** `neq`: the item is the negation of the match. */
      negate: boolean;
      /** Whether an absent or null field passes (a `null` among the values). */
      nullMatches: boolean;
      tests: StrTest[];
      /** Plain equality values (lowercased) when the item is nothing else: used to route by EventID. */
      equals?: string[];
      /** Tests a keyword search applies to each candidate text. */
      keyword: boolean;
      /**
       * For keyword searches whose values are all plain substrings: per value, its alternatives (after
       * windash/encodings), so the search is a few `includes` over the event's joined text.
       */
      literals?: string[][];
      /**
       * Per value, the lowercased literal runs one of which the lowercased field text must contain for the value
       * to match (the longest run of each alternative). Undefined when some value has none (regexes, numbers).
       */
      needles?: string[][];
    }
  | { kind: 'null'; field: string | null; negate: boolean }
  | { kind: 'exists'; field: string; exists: boolean }
  | {
      kind: 'fieldref';
      field: string;
      refs: string[];
      mode: 'eq' | 'startswith' | 'endswith' | 'contains';
      cased: boolean;
      all: boolean;
      negate: boolean;
    };

/** Placeholder name -> values, for the `expand` modifier. */
export type Placeholders = Readonly<Record<string, readonly string[]>>;

function scalarText(v: RuleScalar): string {
  if (v instanceof NumLit) return v.text;
  if (v === null) return '';
  return String(v);
}

function isNumeric(v: RuleScalar): number | undefined {
  if (v instanceof NumLit) return v.value;
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return undefined;
}

/** Whether a string may hold a number (digits, sign, point, hex prefix): cheap guard before `Number()`. */
function numericCandidate(s: string): boolean {
  if (s.length === 0 || s.length > 24) return false;
  const c = s.charCodeAt(0);
  return (c >= 48 && c <= 57) || c === 45 || c === 43 || c === 46 || c === 32;
}

/** Numeric-aware equality with a rule number: `4688` matches "4688", 4688 and "0x1250". */
function numberEquals(n: number, text: string): StrTest {
  const forms = new Set([String(n), text.toLowerCase()]);
  return (s) => forms.has(s) || (numericCandidate(s) && Number(s) === n);
}

/** Splits `%name%` placeholders out of a raw value; `\%` is a plain percent sign. */
function expandPlaceholders(raw: string, placeholders: Placeholders, path: DocPath): string[] {
  const segments: (string | { name: string })[] = [];
  let lit = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === '\\' && raw[i + 1] === '%') {
      lit += '%';
      i++;
    } else if (c === '%') {
      const end = raw.indexOf('%', i + 1);
      if (end < 0) {
        lit += c;
        continue;
      }
      if (lit) segments.push(lit);
      lit = '';
      segments.push({ name: raw.slice(i + 1, end) });
      i = end;
    } else {
      lit += c;
    }
  }
  if (lit) segments.push(lit);
  let acc = [''];
  for (const seg of segments) {
    if (typeof seg === 'string') {
      acc = acc.map((a) => a + seg);
      continue;
    }
    const values = lookupPlaceholder(placeholders, seg.name);
    if (!values || values.length === 0) {
      throw new RuleError(`placeholder %${seg.name}% has no configured values`, path);
    }
    const next: string[] = [];
    for (const a of acc) for (const v of values) next.push(a + v);
    acc = next;
  }
  return acc;
}

function lookupPlaceholder(placeholders: Placeholders, name: string): readonly string[] | undefined {
  if (Object.hasOwn(placeholders, name)) return placeholders[name];
  const lower = name.toLowerCase();
  for (const k of Object.keys(placeholders)) if (k.toLowerCase() === lower) return placeholders[k];
  return undefined;
}

function wrap(p: Pattern, mode: 'contains' | 'startswith' | 'endswith' | undefined): Pattern {
  if (mode === 'contains') {
    const out = [...p];
    if (out[0] !== ANY) out.unshift(ANY);
    if (out[out.length - 1] !== ANY || out.length === 1) out.push(ANY);
    return out;
  }
  if (mode === 'startswith') return p[p.length - 1] === ANY ? p : [...p, ANY];
  if (mode === 'endswith') return p[0] === ANY ? p : [ANY, ...p];
  return p;
}

/** The ISO week number of a UTC date. */
function isoWeek(d: Date): number {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  return Math.ceil(((t.getTime() - yearStart) / 86_400_000 + 1) / 7);
}

/** Reads a timestamp field value: ISO-like text, or epoch seconds/milliseconds as a number or digits. */
export function parseTimestamp(s: string): Date | undefined {
  if (/^\d+(\.\d+)?$/.test(s)) {
    const n = Number(s);
    return new Date(n < 1e11 ? n * 1000 : n);
  }
  // "2019-03-02 08:51:00.008" (Sysmon UtcTime) is UTC without a zone designator.
  let text = s;
  if (/^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text)) text = text.replace(' ', 'T') + 'Z';
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : new Date(t);
}

function timePart(d: Date, part: string): number {
  switch (part) {
    case 'minute':
      return d.getUTCMinutes();
    case 'hour':
      return d.getUTCHours();
    case 'day':
      return d.getUTCDate();
    case 'week':
      return isoWeek(d);
    case 'month':
      return d.getUTCMonth() + 1;
    default:
      return d.getUTCFullYear();
  }
}

function compareTest(op: string | undefined, n: number): (x: number) => boolean {
  switch (op) {
    case 'lt':
      return (x) => x < n;
    case 'lte':
      return (x) => x <= n;
    case 'gt':
      return (x) => x > n;
    case 'gte':
      return (x) => x >= n;
    default:
      return (x) => x === n;
  }
}

function toNumber(s: string): number {
  if (s.trim() === '') return Number.NaN;
  return Number(s);
}

/** Compiles a field item's values; throws RuleError for invalid modifier combinations or values. */
export function compileItem(item: FieldItemDef, placeholders: Placeholders = {}): CompiledItem {
  const { field, path } = item;
  const mods = item.modifiers;
  const has = (m: string): boolean => mods.includes(m);
  for (const m of mods) if (!KNOWN_MODIFIERS.has(m)) throw new RuleError(`unknown modifier '${m}'`, path);
  const negate = has('neq');
  const all = has('all');
  const positional = mods.filter((m) => m === 'contains' || m === 'startswith' || m === 'endswith');
  if (new Set(positional).size > 1) {
    throw new RuleError(`modifiers ${positional.join(' and ')} cannot be combined`, path);
  }
  const position = positional[0] as 'contains' | 'startswith' | 'endswith' | undefined;
  let values: RuleScalar[] = [...item.values];

  if (has('exists')) {
    if (field === null) throw new RuleError('the exists modifier needs a field', path);
    if (mods.length !== 1) throw new RuleError('the exists modifier cannot be combined with other modifiers', path);
    const v = values.length === 1 ? values[0] : undefined;
    const b = v === true || v === 'true' ? true : v === false || v === 'false' ? false : undefined;
    if (b === undefined) throw new RuleError('the exists modifier takes true or false', path);
    return { kind: 'exists', field, exists: b };
  }

  if (has('fieldref')) {
    if (field === null) throw new RuleError('the fieldref modifier needs a field', path);
    const allowed = new Set(['fieldref', 'neq', 'cased', 'all', 'contains', 'startswith', 'endswith']);
    for (const m of mods)
      if (!allowed.has(m)) throw new RuleError(`the fieldref modifier cannot be combined with ${m}`, path);
    const refs = values.map((v) => scalarText(v));
    if (refs.some((r) => r === '')) throw new RuleError('fieldref needs field names', path);
    return { kind: 'fieldref', field, refs, mode: position ?? 'eq', cased: has('cased'), all, negate };
  }

  if (values.length === 0) throw new RuleError('a field item needs at least one value', path);
  const nonNull = values.filter((v) => v !== null);
  if (nonNull.length === 0) return { kind: 'null', field, negate };
  const nullMatches = nonNull.length < values.length;
  values = nonNull;

  if (has('expand')) {
    const expanded: RuleScalar[] = [];
    for (const v of values) {
      if (typeof v !== 'string') expanded.push(v);
      else expanded.push(...expandPlaceholders(v, placeholders, path));
    }
    values = expanded;
  }

  const keyword = field === null;
  const tests: StrTest[] = [];
  let raw = false;
  let reNeedles: string[][] | undefined;

  const timeMod = mods.find((m) => TIME_PARTS.has(m));
  const cmp = mods.find((m) => COMPARE.has(m));
  if (has('re')) {
    for (const m of mods) {
      if (!(m === 're' || m in REGEX_FLAGS || m === 'all' || m === 'neq' || m === 'cased')) {
        throw new RuleError(`the re modifier cannot be combined with ${m}`, path);
      }
    }
    let flags = '';
    for (const m of mods) if (m in REGEX_FLAGS && !flags.includes(REGEX_FLAGS[m])) flags += REGEX_FLAGS[m];
    reNeedles = [];
    for (const v of values) {
      const src = scalarText(v);
      let re: RegexTest;
      try {
        re = compileRegex(src, flags);
      } catch (err) {
        const shown = src.length > 80 ? `${src.slice(0, 80)}…` : src;
        throw new RuleError(`invalid regular expression '${shown}': ${(err as Error).message}`, path);
      }
      // After compiling, which bounds the pattern's length.
      const n = regexNeedles(src);
      if (n && reNeedles) reNeedles.push(n);
      else reNeedles = undefined;
      tests.push((s) => re.test(s));
    }
    raw = true;
  } else if (has('cidr')) {
    for (const m of mods) {
      if (!(m === 'cidr' || m === 'all' || m === 'neq'))
        throw new RuleError(`the cidr modifier cannot be combined with ${m}`, path);
    }
    for (const v of values) {
      try {
        const net = compileCidr(scalarText(v));
        tests.push((s) => net.test(s));
      } catch (err) {
        throw new RuleError((err as Error).message, path);
      }
    }
    raw = true;
  } else if (timeMod || cmp) {
    for (const m of mods) {
      if (!(TIME_PARTS.has(m) || COMPARE.has(m) || m === 'all' || m === 'neq')) {
        throw new RuleError(`the ${timeMod ?? cmp} modifier cannot be combined with ${m}`, path);
      }
    }
    if (mods.filter((m) => TIME_PARTS.has(m)).length > 1 || mods.filter((m) => COMPARE.has(m)).length > 1) {
      throw new RuleError('only one time and one comparison modifier can be used together', path);
    }
    for (const v of values) {
      const n = isNumeric(v);
      if (n === undefined)
        throw new RuleError(`the ${cmp ?? timeMod} modifier needs a number, not '${scalarText(v)}'`, path);
      const test = compareTest(cmp, n);
      if (timeMod) {
        tests.push((s) => {
          const d = parseTimestamp(s);
          return d !== undefined && test(timePart(d, timeMod));
        });
      } else {
        tests.push((s) => test(toNumber(s)));
      }
    }
    raw = true;
  } else {
    for (const m of mods) if (m in REGEX_FLAGS) throw new RuleError(`the ${m} modifier is only valid after re`, path);
    const cased = has('cased') || mods.some((m) => m === 'base64' || m === 'base64offset');
    raw = cased;
    const transforms = mods.filter((m) => m === 'windash' || ENCODINGS.has(m));
    const plainEquality = transforms.length === 0 && position === undefined && !keyword && !cased;
    // Lowercased literal values while every value is a plain equality; undefined once one is not.
    let equals: string[] | undefined = plainEquality ? [] : undefined;
    const numbers: number[] = [];
    let literals: string[][] | undefined = keyword ? [] : undefined;
    let needles: string[][] | undefined = [];
    for (const v of values) {
      const n = v instanceof NumLit ? v.value : typeof v === 'number' ? v : undefined;
      if (n !== undefined && plainEquality) {
        needles = undefined;
        tests.push(numberEquals(n, scalarText(v)));
        equals?.push(String(n), scalarText(v).toLowerCase());
        numbers.push(n);
        continue;
      }
      // Numbers and booleans are plain text; only strings carry wildcards and escapes.
      const start: Pattern = typeof v === 'string' ? parseSigmaString(v) : literalPattern(scalarText(v));
      let current: (Pattern | Buffer)[] = [start];
      for (const t of transforms) current = applyTransform(t, current, path);
      const patterns: Pattern[] = current.map((c) => (Buffer.isBuffer(c) ? literalPattern(c.toString('latin1')) : c));
      const wrapped = patterns.map((p) => wrap(p, keyword ? 'contains' : position));
      if (needles) {
        const alts = patterns.map(longestLiteral);
        if (alts.every((x) => x.length > 0)) needles.push([...new Set(alts)]);
        else needles = undefined;
      }
      tests.push(anyOf(wrapped.map((p) => compilePattern(p, !cased))));
      if (literals) {
        const lits = wrapped.map((p) =>
          p.length === 3 && p[0] === ANY && p[2] === ANY && typeof p[1] === 'string' ? p[1] : undefined,
        );
        if (lits.every((l) => l !== undefined)) literals.push(lits.map((l) => (cased ? l! : l!.toLowerCase())));
        else literals = undefined;
      }
      if (equals && patterns.length === 1 && patterns[0].every((x) => typeof x === 'string')) {
        equals.push(patterns[0].join('').toLowerCase());
      } else {
        equals = undefined;
      }
    }
    const routable = equals !== undefined && !negate && !all && !nullMatches;
    return {
      kind: 'str',
      field,
      raw,
      all,
      negate,
      nullMatches,
      tests: all ? tests : [fastAnyOf(tests, equals, numbers)],
      equals: routable ? equals : undefined,
      keyword,
      literals: literals && !all ? [literals.flat()] : literals,
      needles: keyword || negate || nullMatches ? undefined : needles,
    };
  }
  return {
    kind: 'str',
    field,
    raw,
    all,
    negate,
    nullMatches,
    tests: all ? tests : [anyOf(tests)],
    keyword,
    needles: keyword || negate || nullMatches ? undefined : reNeedles,
  };
}

/** The longest literal run of a pattern, lowercased ('' when it has none). */
function longestLiteral(p: Pattern): string {
  let best = '';
  for (const x of p) if (typeof x === 'string' && x.length > best.length) best = x;
  return best.toLowerCase();
}

/**
 * OR of a value list. When every value is a plain equality the list is one Set lookup, with the numeric
 * comparison kept for rule numbers (so "0x1250" still equals 4688).
 */
function fastAnyOf(tests: StrTest[], equals: string[] | undefined, numbers: number[]): StrTest {
  if (!equals || tests.length < 3) return anyOf(tests);
  const set = new Set(equals);
  if (numbers.length === 0) return (s) => set.has(s);
  const numSet = new Set(numbers);
  return (s) => set.has(s) || (numericCandidate(s) && numSet.has(Number(s)));
}

function applyTransform(t: string, values: (Pattern | Buffer)[], path: DocPath): (Pattern | Buffer)[] {
  const out: (Pattern | Buffer)[] = [];
  for (const v of values) {
    try {
      if (t === 'windash') {
        if (Buffer.isBuffer(v)) throw new Error('windash cannot follow an encoding modifier');
        out.push(windash(v));
        continue;
      }
      const bytes = Buffer.isBuffer(v) ? v : undefined;
      const text = bytes ? undefined : patternText(v as Pattern, t);
      switch (t) {
        case 'base64':
          out.push(literalPattern(base64(bytes ?? Buffer.from(text!, 'utf8'))));
          break;
        case 'base64offset':
          for (const s of base64Offsets(bytes ?? Buffer.from(text!, 'utf8'))) out.push(literalPattern(s));
          break;
        case 'utf16le':
        case 'wide':
        case 'utf16be':
        case 'utf16':
          if (bytes) throw new Error(`${t} cannot follow another encoding modifier`);
          out.push(utf16(text!, t === 'utf16be' ? 'be' : t === 'utf16' ? 'bom' : 'le'));
          break;
      }
    } catch (err) {
      if (err instanceof RuleError) throw err;
      throw new RuleError((err as Error).message, path);
    }
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof NumLit);
}

function isScalar(v: unknown): v is RuleScalar {
  return v === null || v instanceof NumLit || ['string', 'number', 'boolean'].includes(typeof v);
}

function parseFieldItem(key: string, value: unknown, path: DocPath): FieldItemDef {
  const [fieldName, ...modifiers] = key.split('|');
  const field = fieldName === '' ? null : fieldName;
  let values: RuleScalar[];
  if (Array.isArray(value)) {
    values = [];
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      if (!isScalar(v)) throw new RuleError(`the values of '${key}' must be scalars`, [...path, i]);
      values.push(v);
    }
  } else if (isScalar(value)) {
    values = [value];
  } else {
    throw new RuleError(`the value of '${key}' must be a scalar or a list of scalars`, path);
  }
  for (const m of modifiers) if (!KNOWN_MODIFIERS.has(m)) throw new RuleError(`unknown modifier '${m}'`, path);
  return { field, modifiers, values, path, expand: modifiers.includes('expand') };
}

function parseSearch(value: unknown, path: DocPath): SearchDef {
  if (isPlainObject(value)) {
    const items: FieldItemDef[] = [];
    for (const [k, v] of Object.entries(value)) items.push(parseFieldItem(k, v, [...path, k]));
    if (items.length === 0) throw new RuleError('a search identifier map must have at least one field', path);
    return { t: 'and', items };
  }
  if (Array.isArray(value)) {
    if (value.length === 0) throw new RuleError('a search identifier list must not be empty', path);
    if (value.every(isScalar)) {
      return { t: 'kw', item: { field: null, modifiers: [], values: value, path, expand: false } };
    }
    const alts: SearchDef[] = [];
    const keywords: RuleScalar[] = [];
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      if (isScalar(v)) keywords.push(v);
      else if (isPlainObject(v)) alts.push(parseSearch(v, [...path, i]));
      else throw new RuleError('a search identifier list holds maps or values, not nested lists', [...path, i]);
    }
    if (keywords.length)
      alts.push({ t: 'kw', item: { field: null, modifiers: [], values: keywords, path, expand: false } });
    return alts.length === 1 ? alts[0] : { t: 'or', alts };
  }
  if (isScalar(value) && value !== null) {
    return { t: 'kw', item: { field: null, modifiers: [], values: [value], path, expand: false } };
  }
  throw new RuleError('a search identifier must be a map, a list or a value', path);
}

/** Keys of `detection` that are not search identifiers (`timeframe` is v1 syntax, kept for old rules). */
const NON_SEARCH_KEYS = new Set(['condition', 'timeframe']);

/**
 * Parses a detection section (or a filter's) and compiles every item that does not use placeholders.
 * `pathPrefix` is where the section sits in the document (`['detection']` or `['filter']`).
 */
export function parseDetection(detection: unknown, pathPrefix: DocPath, placeholders?: Placeholders): ParsedDetection {
  if (!isPlainObject(detection)) throw new RuleError('the detection section must be a map', pathPrefix);
  const searches = new Map<string, SearchDef>();
  for (const [k, v] of Object.entries(detection)) {
    if (NON_SEARCH_KEYS.has(k) || (pathPrefix[0] === 'filter' && k === 'rules')) continue;
    searches.set(k, parseSearch(v, [...pathPrefix, k]));
  }
  const cond = detection.condition;
  if (cond === undefined || cond === null) throw new RuleError('the detection has no condition', pathPrefix);
  const texts = Array.isArray(cond) ? cond : [cond];
  const ids = [...searches.keys()];
  const parsed: CondNode[] = [];
  for (let i = 0; i < texts.length; i++) {
    const c = texts[i];
    if (typeof c !== 'string') throw new RuleError('the condition must be a string', [...pathPrefix, 'condition']);
    try {
      parsed.push(parseCondition(c, ids));
    } catch (err) {
      if (err instanceof ConditionError) {
        const where = Array.isArray(cond) ? [...pathPrefix, 'condition', i] : [...pathPrefix, 'condition'];
        throw new RuleError(`${err.legacy ? 'unsupported' : 'invalid'} condition: ${err.message}`, where, err.limit);
      }
      throw err;
    }
  }
  const condition: CondNode = parsed.length === 1 ? parsed[0] : { t: 'or', items: parsed };
  for (const s of searches.values()) compileSearch(s, placeholders);
  return { searches, condition };
}

/** Compiles the items of a search that do not need placeholders, or all of them when `placeholders` is given. */
function compileSearch(s: SearchDef, placeholders: Placeholders | undefined): void {
  if (s.t === 'or') {
    for (const a of s.alts) compileSearch(a, placeholders);
    return;
  }
  const items = s.t === 'and' ? s.items : [s.item];
  for (const it of items) {
    if (!it.expand) it.compiled = compileItem(it);
    else if (placeholders) it.compiled = compileItem(it, placeholders);
  }
}

/** Every field item of a detection. */
export function detectionItems(d: ParsedDetection): FieldItemDef[] {
  const out: FieldItemDef[] = [];
  const walk = (s: SearchDef): void => {
    if (s.t === 'and') out.push(...s.items);
    else if (s.t === 'kw') out.push(s.item);
    else for (const a of s.alts) walk(a);
  };
  for (const s of d.searches.values()) walk(s);
  return out;
}
