/**
 * Binds parsed detections to event fields: each Sigma field becomes an accessor (the event keys that may hold
 * it, tried in order), each item a closure over that accessor, each condition a closure tree. Evaluation reads
 * fields through an EvalCtx that lowercases each field value at most once per event.
 */
import type { FieldValue, NormalizedEvent } from '../../lib/event.ts';
import { setOwn } from '../../lib/lookup.ts';
import type { CondNode } from './condition.ts';
import {
  type CompiledItem,
  compileItem,
  type FieldItemDef,
  type ParsedDetection,
  type Placeholders,
  RuleError,
  type SearchDef,
} from './detection.ts';
import type { FieldResolver, WhenCond } from './mapping.ts';
import { MultiSearch } from './multisearch.ts';
import type { StrTest } from './strings.ts';

/**
 * The event keys a Sigma field is read from, plain keys first in their order, then the special ones: `$name`
 * keys are derived fields (`$event.timestamp` is the event time, `$auditd.<key>` a field of an auditd record
 * in the message) and `P.**.leaf` finds `leaf` under P.
 */
export interface Accessor {
  readonly id: number;
  readonly plain: readonly string[];
  readonly special: readonly SpecialKey[];
}

type SpecialKey = { t: 'derived'; name: string } | { t: 'deep'; prefix: string; leaf: string } | { t: 'timestamp' };

/** Interns accessors so that every rule reading the same keys shares one per-event cache slot. */
export class AccessorTable {
  private readonly byKey = new Map<string, Accessor>();
  size = 0;

  get(keys: readonly string[]): Accessor {
    const id = keys.join('\u0000');
    let acc = this.byKey.get(id);
    if (!acc) {
      const plain: string[] = [];
      const special: SpecialKey[] = [];
      for (const k of keys) {
        if (k === '$event.timestamp') special.push({ t: 'timestamp' });
        else if (k.startsWith('$')) special.push({ t: 'derived', name: k.slice(1) });
        else if (k.includes('.**.')) {
          const at = k.indexOf('.**.');
          special.push({ t: 'deep', prefix: k.slice(0, at + 1), leaf: k.slice(at + 4) });
        } else plain.push(k);
      }
      acc = { id: this.size++, plain, special };
      this.byKey.set(id, acc);
    }
    return acc;
  }
}

type Lowered = string | string[] | null | undefined;

function pushText(v: FieldValue, lower: boolean, out: string[]): void {
  if (v === null) return;
  if (Array.isArray(v)) {
    for (const x of v) pushText(x, lower, out);
    return;
  }
  const s = typeof v === 'string' ? v : String(v);
  out.push(lower ? s.toLowerCase() : s);
}

function textOf(v: FieldValue, lower: boolean): Lowered {
  if (v === null) return null;
  if (typeof v === 'string') return lower ? v.toLowerCase() : v;
  if (Array.isArray(v)) {
    const out: string[] = [];
    pushText(v, lower, out);
    return out;
  }
  return String(v);
}

/** Parses an auditd record (`type=EXECVE msg=audit(...): argc=2 a0="ls" a1=2F746D70`) into fields. */
export function parseAuditd(text: string): Record<string, FieldValue> {
  const out: Record<string, FieldValue> = {};
  const re = /([A-Za-z0-9_-]+)=("([^"]*)"|'([^']*)'|(\S*))/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const key = m[1];
    let value = m[3] ?? m[4] ?? m[5] ?? '';
    // Unquoted argument values of EXECVE records are hex-encoded when they hold special characters.
    if (m[5] !== undefined && /^a\d+$/.test(key) && /^([0-9A-F]{2})+$/.test(value) && value.length >= 4) {
      value = Buffer.from(value, 'hex').toString('utf8');
    }
    if (!Object.hasOwn(out, key)) setOwn(out, key, value);
  }
  if (out.type === 'EXECVE') {
    const args: string[] = [];
    for (let i = 0; Object.hasOwn(out, `a${i}`); i++) args.push(String(out[`a${i}`]));
    out.cmdline = args.join(' ');
  }
  return out;
}

/**
 * Per-event evaluation state, reused across events (one per engine; `match` is synchronous). Field values are
 * cached by accessor id with a generation stamp, so starting a new event costs nothing.
 */
export class EvalCtx {
  event!: NormalizedEvent;
  fields!: Record<string, FieldValue>;
  private gen = 1;
  private lowGen: Int32Array = new Int32Array(256);
  private lowVal: Lowered[] = new Array(256);
  private strGen: Int32Array = new Int32Array(256);
  private strVal: Lowered[] = new Array(256);
  private kwGen = [0, 0];
  private kwVal: string[][] = [[], []];
  private derivedGen = 0;
  private derivedVal: Record<string, FieldValue> = {};
  private deepGen = 0;
  private deepVal = new Map<string, Map<string, FieldValue>>();
  /** Rule match stamps: a rule reached through two routes fires once per event. */
  private stamp: Int32Array = new Int32Array(64);
  /** Candidate evaluation stamps: a candidate found through several needles is evaluated once per event. */
  private evalStamp: Int32Array = new Int32Array(64);

  /** Starts evaluating a new event. */
  reset(event: NormalizedEvent): void {
    this.event = event;
    this.fields = event.fields;
    this.gen++;
  }

  /** Makes room for `accessors` cache slots, `rules` match stamps and `candidates` evaluation stamps. */
  ensure(accessors: number, rules: number, candidates = 0): void {
    if (candidates > this.evalStamp.length) {
      const b = new Int32Array(Math.max(candidates, this.evalStamp.length * 2));
      b.set(this.evalStamp);
      this.evalStamp = b;
    }
    if (accessors > this.lowGen.length) {
      const n = Math.max(accessors, this.lowGen.length * 2);
      const grow = (a: Int32Array): Int32Array => {
        const b = new Int32Array(n);
        b.set(a);
        return b;
      };
      this.lowGen = grow(this.lowGen);
      this.strGen = grow(this.strGen);
      this.lowVal.length = n;
      this.strVal.length = n;
    }
    if (rules > this.stamp.length) {
      const b = new Int32Array(Math.max(rules, this.stamp.length * 2));
      b.set(this.stamp);
      this.stamp = b;
    }
  }

  /** True the first time a candidate is evaluated for this event. */
  firstEval(slot: number): boolean {
    if (this.evalStamp[slot] === this.gen) return false;
    this.evalStamp[slot] = this.gen;
    return true;
  }

  /** True the first time a rule is seen for this event. */
  firstVisit(rule: number): boolean {
    if (this.stamp[rule] === this.gen) return false;
    this.stamp[rule] = this.gen;
    return true;
  }

  /** The event key holding a field (its first key present), or undefined when only a derived key has it. */
  keyOf(acc: Accessor): string | undefined {
    const f = this.fields;
    for (const k of acc.plain) {
      const v = f[k];
      if (v !== undefined && typeof v !== 'function') return k;
    }
    return undefined;
  }

  /** The raw value of a field: the first of its keys present in the event. */
  raw(acc: Accessor): FieldValue | undefined {
    const f = this.fields;
    const plain = acc.plain;
    for (let i = 0; i < plain.length; i++) {
      const v = f[plain[i]];
      if (v !== undefined && typeof v !== 'function') return v;
    }
    return acc.special.length ? this.rawSpecial(acc) : undefined;
  }

  private rawSpecial(acc: Accessor): FieldValue | undefined {
    for (const s of acc.special) {
      let v: FieldValue | undefined;
      if (s.t === 'timestamp') v = this.event.timestamp;
      else if (s.t === 'derived') v = this.derived()[s.name];
      else v = this.deep(s.prefix).get(s.leaf);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  private derived(): Record<string, FieldValue> {
    if (this.derivedGen !== this.gen) {
      this.derivedGen = this.gen;
      const out: Record<string, FieldValue> = {};
      const text = typeof this.fields.message === 'string' ? this.fields.message : this.event.raw;
      if (typeof text === 'string' && /(^|\s)type=[A-Z_]+/.test(text)) {
        for (const [k, v] of Object.entries(parseAuditd(text))) out[`auditd.${k}`] = v;
      }
      this.derivedVal = out;
    }
    return this.derivedVal;
  }

  /** Leaf name -> value for every key under `prefix` (evtx `Event.UserData.<Element>.<Field>`). */
  private deep(prefix: string): Map<string, FieldValue> {
    if (this.deepGen !== this.gen) {
      this.deepGen = this.gen;
      this.deepVal.clear();
    }
    let m = this.deepVal.get(prefix);
    if (!m) {
      m = new Map();
      for (const k in this.fields) {
        if (!k.startsWith(prefix)) continue;
        const leaf = k.slice(k.lastIndexOf('.') + 1);
        if (!m.has(leaf)) m.set(leaf, this.fields[k]);
      }
      this.deepVal.set(prefix, m);
    }
    return m;
  }

  /** The lowercased text of a field (an array for array values), cached for the event. */
  lower(acc: Accessor): Lowered {
    const id = acc.id;
    if (this.lowGen[id] === this.gen) return this.lowVal[id];
    const v = this.raw(acc);
    const out = v === undefined ? undefined : textOf(v, true);
    this.lowGen[id] = this.gen;
    this.lowVal[id] = out;
    return out;
  }

  /** The text of a field as it is, cached for the event. */
  str(acc: Accessor): Lowered {
    const id = acc.id;
    if (this.strGen[id] === this.gen) return this.strVal[id];
    const v = this.raw(acc);
    const out = v === undefined ? undefined : textOf(v, false);
    this.strGen[id] = this.gen;
    this.strVal[id] = out;
    return out;
  }

  /**
   * Every text of the event for keyword searches: each field value (the message among them). The raw text is
   * searched only when the event has no fields: otherwise it holds the same values, JSON-escaped.
   */
  keywordTexts(lower: boolean): string[] {
    const slot = lower ? 0 : 1;
    if (this.kwGen[slot] === this.gen) return this.kwVal[slot];
    const out: string[] = [];
    for (const k in this.fields) {
      const v = this.fields[k];
      if (v !== undefined && typeof v !== 'function') pushText(v, lower, out);
    }
    if (out.length === 0 && this.event.raw) out.push(lower ? this.event.raw.toLowerCase() : this.event.raw);
    this.kwGen[slot] = this.gen;
    this.kwVal[slot] = out;
    return out;
  }

  /**
   * Whether a test holds for some text of the event (the keyword texts, not lowercased), without copying.
   * Texts shorter than `minLength` are skipped.
   */
  someText(test: StrTest, minLength = 0): boolean {
    const f = this.fields;
    let any = false;
    for (const k in f) {
      const v = f[k];
      if (v === null || v === undefined || typeof v === 'function') continue;
      any = true;
      if (typeof v === 'string') {
        if (v.length >= minLength && test(v)) return true;
      } else if (Array.isArray(v)) {
        const texts: string[] = [];
        pushText(v, false, texts);
        if (texts.some((t) => t.length >= minLength && test(t))) return true;
      } else {
        const t = String(v);
        if (t.length >= minLength && test(t)) return true;
      }
    }
    return !any && !!this.event.raw && test(this.event.raw);
  }
}

/** A compiled test on the current event. */
export type Pred = (ctx: EvalCtx) => boolean;

const TRUE: Pred = () => true;
const FALSE: Pred = () => false;

function someText(v: string[], t: StrTest): boolean {
  for (let i = 0; i < v.length; i++) if (t(v[i])) return true;
  return false;
}

function bindStr(item: Extract<CompiledItem, { kind: 'str' }>, acc: Accessor | undefined): Pred {
  const { raw, all, negate, nullMatches, tests, literals } = item;
  if (!acc && literals) {
    // Literal keywords search the event as received (`raw`), like a search of the raw log: one pass over one
    // text, also matching values that JSON escaped (a `\\` in a path). An event without raw text is searched
    // field by field. ASCII literals use the sampled multi-needle search; others one alternation per value.
    const tests = literals.map((g): { inRaw: StrTest; inField: StrTest; min: number } => {
      const min = Math.min(...g.map((l) => l.length));
      if (min >= 3 && g.every((l) => /^[\x00-\x7f]*$/.test(l))) {
        const forms = [...new Set(g.flatMap((l) => [l, JSON.stringify(l).slice(1, -1)]))];
        const inRaw = new MultiSearch(
          forms.map((text) => ({ text, value: true })),
          !raw,
        );
        const inField = new MultiSearch(
          g.map((text) => ({ text, value: true })),
          !raw,
        );
        return { inRaw: (s) => inRaw.some(s), inField: (s) => inField.some(s), min };
      }
      const re = new RegExp(g.map((l) => l.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), raw ? '' : 'i');
      const test = (s: string): boolean => re.test(s);
      return { inRaw: test, inField: test, min };
    });
    const one = (ctx: EvalCtx, t: { inRaw: StrTest; inField: StrTest; min: number }): boolean => {
      const text = ctx.event.raw;
      return text ? text.length >= t.min && t.inRaw(text) : ctx.someText(t.inField, t.min);
    };
    if (tests.length === 1) {
      const t = tests[0];
      return (ctx) => one(ctx, t) !== negate;
    }
    return (ctx) => tests.every((t) => one(ctx, t)) !== negate;
  }
  if (!acc) {
    // Keyword search: any text of the event (every value needs one text under `all`).
    if (all) return (ctx) => tests.every((t) => someText(ctx.keywordTexts(!raw), t)) !== negate;
    const t = tests[0];
    return (ctx) => someText(ctx.keywordTexts(!raw), t) !== negate;
  }
  if (!all) {
    const t = tests[0];
    if (!raw && !negate && !nullMatches) {
      return (ctx) => {
        const v = ctx.lower(acc);
        if (typeof v === 'string') return t(v);
        return v != null && someText(v, t);
      };
    }
    return (ctx) => {
      const v = raw ? ctx.str(acc) : ctx.lower(acc);
      let m: boolean;
      if (v === undefined || v === null) m = nullMatches;
      else if (typeof v === 'string') m = t(v);
      else m = someText(v, t);
      return m !== negate;
    };
  }
  return (ctx) => {
    const v = raw ? ctx.str(acc) : ctx.lower(acc);
    let m: boolean;
    if (v === undefined || v === null) m = nullMatches;
    else if (typeof v === 'string') m = tests.every((t) => t(v));
    else m = tests.every((t) => someText(v, t));
    return m !== negate;
  };
}

function bindFieldref(item: Extract<CompiledItem, { kind: 'fieldref' }>, acc: Accessor, refs: Accessor[]): Pred {
  const { mode, cased, all, negate } = item;
  const cmp = (a: string, b: string): boolean =>
    mode === 'eq'
      ? a === b
      : mode === 'startswith'
        ? a.startsWith(b)
        : mode === 'endswith'
          ? a.endsWith(b)
          : a.includes(b);
  const pair = (a: Lowered, b: Lowered): boolean => {
    if (a == null || b == null) return false;
    const as = typeof a === 'string' ? [a] : a;
    const bs = typeof b === 'string' ? [b] : b;
    return as.some((x) => bs.some((y) => cmp(x, y)));
  };
  return (ctx) => {
    const a = cased ? ctx.str(acc) : ctx.lower(acc);
    const m = all
      ? refs.every((r) => pair(a, cased ? ctx.str(r) : ctx.lower(r)))
      : refs.some((r) => pair(a, cased ? ctx.str(r) : ctx.lower(r)));
    return m !== negate;
  };
}

/** Binds detections to the fields of one layout/logsource variant. */
export class Binder {
  private readonly table: AccessorTable;
  private readonly resolve: FieldResolver;
  private readonly placeholders: Placeholders | undefined;
  private readonly accessors: Map<string, Accessor> | undefined;

  /**
   * `accessors`, when given, is shared by every binder of the same resolver: a field is resolved (its keys
   * expanded from the mapping's templates) once for all rules instead of once per rule and use.
   */
  constructor(
    table: AccessorTable,
    resolve: FieldResolver,
    placeholders?: Placeholders,
    accessors?: Map<string, Accessor>,
  ) {
    this.table = table;
    this.resolve = resolve;
    this.placeholders = placeholders;
    this.accessors = accessors;
  }

  /** The accessor of a Sigma field; `@timestamp`/`timestamp` fall back to the event time. */
  accessor(field: string): Accessor {
    const known = this.accessors?.get(field);
    if (known) return known;
    const keys = this.resolve(field);
    const lf = field.toLowerCase();
    if (lf === '@timestamp' || lf === 'timestamp') keys.push('$event.timestamp');
    const acc = this.table.get(keys);
    this.accessors?.set(field, acc);
    return acc;
  }

  item(def: FieldItemDef): Pred {
    // Items with placeholders are compiled again when the engine has its own placeholder values.
    const c =
      def.compiled && !(def.expand && this.placeholders) ? def.compiled : compileItem(def, this.placeholders ?? {});
    switch (c.kind) {
      case 'str':
        return bindStr(c, c.field === null ? undefined : this.accessor(c.field));
      case 'null': {
        if (c.field === null) return FALSE;
        const acc = this.accessor(c.field);
        return (ctx) => {
          const v = ctx.raw(acc);
          return (v === undefined || v === null || (Array.isArray(v) && v.length === 0)) !== c.negate;
        };
      }
      case 'exists': {
        const acc = this.accessor(c.field);
        return (ctx) => (ctx.raw(acc) !== undefined) === c.exists;
      }
      case 'fieldref':
        return bindFieldref(
          c,
          this.accessor(c.field),
          c.refs.map((r) => this.accessor(r)),
        );
    }
  }

  search(s: SearchDef): Pred {
    if (s.t === 'kw') return this.item(s.item);
    if (s.t === 'or') return orOf(s.alts.map((a) => this.search(a)));
    return andOf(s.items.map((i) => this.item(i)));
  }

  /** Binds a whole detection: the condition over its searches. */
  detection(d: ParsedDetection): { pred: Pred; searches: Map<string, Pred> } {
    const searches = new Map<string, Pred>();
    for (const [name, s] of d.searches) searches.set(name, this.search(s));
    return { pred: bindCondition(d.condition, searches), searches };
  }

  /** The fields a search tests (Sigma name and accessor), for reporting what matched. */
  searchFields(s: SearchDef, out: { field: string; acc: Accessor }[] = []): { field: string; acc: Accessor }[] {
    if (s.t === 'or') for (const a of s.alts) this.searchFields(a, out);
    else if (s.t === 'and') {
      for (const i of s.items) {
        if (i.field !== null) out.push({ field: i.field, acc: this.accessor(i.field) });
        const c = i.compiled;
        if (c?.kind === 'fieldref') for (const r of c.refs) out.push({ field: r, acc: this.accessor(r) });
      }
    }
    return out;
  }

  /**
   * A necessary condition of a detection as needles: the detection can only match when, for at least one
   * needle, the lowercased text of its field contains it. Undefined when no such condition is known.
   */
  prefilter(d: ParsedDetection): Needle[] | undefined {
    const fromItem = (it: FieldItemDef): Needle[] | undefined => {
      const c = it.compiled;
      if (c?.kind !== 'str' || c.field === null || !c.needles || it.expand) return undefined;
      const acc = this.accessor(c.field);
      const groups = c.all ? [bestGroup(c.needles)] : [c.needles.flat()];
      return [...new Set(groups[0])].map((text) => ({ acc, text }));
    };
    const fromSearch = (s: SearchDef): Needle[] | undefined => {
      if (s.t === 'kw') return fromItem(s.item);
      if (s.t === 'or') return unionNeedles(s.alts.map(fromSearch));
      return bestNeedles(s.items.map(fromItem));
    };
    const walk = (n: CondNode): Needle[] | undefined => {
      switch (n.t) {
        case 'id': {
          const s = d.searches.get(n.name);
          return s ? fromSearch(s) : undefined;
        }
        case 'and':
          return bestNeedles(n.items.map(walk));
        case 'or':
          return unionNeedles(n.items.map(walk));
        case 'not':
          return undefined;
        case 'of': {
          const sets = n.names.map((name) => walk({ t: 'id', name }));
          return n.count === 'all' ? bestNeedles(sets) : unionNeedles(sets);
        }
      }
    };
    return walk(d.condition);
  }

  /** A source's `when` test. */
  when(w: WhenCond | WhenCond[] | undefined): Pred {
    if (w === undefined) return TRUE;
    if (Array.isArray(w)) return orOf(w.map((x) => this.when(x)));
    if ('all' in w) return andOf(w.all.map((x) => this.when(x)));
    if ('any' in w) return orOf(w.any.map((x) => this.when(x)));
    const acc = this.table.get([w.field]);
    const list = (x: unknown): string[] =>
      x === undefined ? [] : (Array.isArray(x) ? x : [x]).map((y) => String(y).toLowerCase());
    const eq = new Set(list(w.equals));
    const sw = list(w.startswith);
    const ct = list(w.contains);
    const checks: StrTest[] = [];
    if (eq.size) checks.push((s) => eq.has(s));
    if (sw.length) checks.push((s) => sw.some((p) => s.startsWith(p)));
    if (ct.length) checks.push((s) => ct.some((p) => s.includes(p)));
    const exists = w.exists;
    return (ctx) => {
      const v = ctx.lower(acc);
      if (exists !== undefined && (v !== undefined) !== exists) return false;
      if (checks.length === 0) return true;
      if (v == null) return false;
      const texts = typeof v === 'string' ? [v] : v;
      return checks.every((c) => texts.some(c));
    };
  }
}

/** A substring that the lowercased text of a field must contain. */
export interface Needle {
  readonly acc: Accessor;
  readonly text: string;
}

/** How selective a needle set is: longer shortest needle first, then fewer needles. */
function needleScore(n: Needle[]): [number, number] {
  let min = Number.POSITIVE_INFINITY;
  for (const x of n) min = Math.min(min, x.text.length);
  return [Math.min(min, 12), -n.length];
}

function bestNeedles(sets: (Needle[] | undefined)[]): Needle[] | undefined {
  let best: Needle[] | undefined;
  let bestScore: [number, number] = [-1, 0];
  for (const s of sets) {
    if (!s) continue;
    const sc = needleScore(s);
    if (sc[0] > bestScore[0] || (sc[0] === bestScore[0] && sc[1] > bestScore[1])) {
      best = s;
      bestScore = sc;
    }
  }
  return best;
}

function bestGroup(groups: string[][]): string[] {
  let best = groups[0];
  for (const g of groups) {
    const a = Math.min(...g.map((x) => x.length));
    const b = Math.min(...best.map((x) => x.length));
    if (a > b || (a === b && g.length < best.length)) best = g;
  }
  return best;
}

function unionNeedles(sets: (Needle[] | undefined)[]): Needle[] | undefined {
  const out: Needle[] = [];
  for (const s of sets) {
    if (!s) return undefined;
    out.push(...s);
  }
  return out;
}

function andOf(ps: Pred[]): Pred {
  if (ps.length === 1) return ps[0];
  if (ps.length === 2) {
    const [a, b] = ps;
    return (ctx) => a(ctx) && b(ctx);
  }
  return (ctx) => {
    for (let i = 0; i < ps.length; i++) if (!ps[i](ctx)) return false;
    return true;
  };
}

function orOf(ps: Pred[]): Pred {
  if (ps.length === 1) return ps[0];
  if (ps.length === 2) {
    const [a, b] = ps;
    return (ctx) => a(ctx) || b(ctx);
  }
  return (ctx) => {
    for (let i = 0; i < ps.length; i++) if (ps[i](ctx)) return true;
    return false;
  };
}

/** Binds a condition tree to the searches' predicates. */
export function bindCondition(node: CondNode, searches: ReadonlyMap<string, Pred>): Pred {
  switch (node.t) {
    case 'id': {
      const p = searches.get(node.name);
      if (!p) throw new RuleError(`undefined search identifier '${node.name}'`);
      return p;
    }
    case 'and':
      return andOf(node.items.map((n) => bindCondition(n, searches)));
    case 'or':
      return orOf(node.items.map((n) => bindCondition(n, searches)));
    case 'not': {
      const p = bindCondition(node.item, searches);
      return (ctx) => !p(ctx);
    }
    case 'of': {
      const ps = node.names.map((n) => bindCondition({ t: 'id', name: n }, searches));
      if (node.count === 'all') return andOf(ps);
      if (node.count === 1) return orOf(ps);
      const need = node.count;
      return (ctx) => {
        let n = 0;
        for (const p of ps) if (p(ctx) && ++n >= need) return true;
        return false;
      };
    }
  }
}

/** Identifiers that count towards a match: those reached through an even number of `not`. */
export function positiveIdentifiers(node: CondNode, negated = false, out = new Set<string>()): Set<string> {
  switch (node.t) {
    case 'id':
      if (!negated) out.add(node.name);
      break;
    case 'and':
    case 'or':
      for (const n of node.items) positiveIdentifiers(n, negated, out);
      break;
    case 'not':
      positiveIdentifiers(node.item, !negated, out);
      break;
    case 'of':
      if (!negated) for (const n of node.names) out.add(n);
      break;
  }
  return out;
}

/**
 * The values of one required field for every match of a condition, or undefined when the condition does not
 * require the field to equal one of a fixed set (used to route rules by EventID).
 */
export function requiredValues(d: ParsedDetection, field: string): Set<string> | undefined {
  const fromSearch = (s: SearchDef): Set<string> | undefined => {
    if (s.t === 'kw') return undefined;
    if (s.t === 'or') return unionAll(s.alts.map(fromSearch));
    let best: Set<string> | undefined;
    for (const it of s.items) {
      const c = it.compiled;
      if (it.field === field && c?.kind === 'str' && c.equals) {
        const set = new Set(c.equals);
        if (!best || set.size < best.size) best = set;
      }
    }
    return best;
  };
  const unionAll = (sets: (Set<string> | undefined)[]): Set<string> | undefined => {
    const out = new Set<string>();
    for (const s of sets) {
      if (!s) return undefined;
      for (const v of s) out.add(v);
    }
    return out;
  };
  const pickSmallest = (sets: (Set<string> | undefined)[]): Set<string> | undefined => {
    let best: Set<string> | undefined;
    for (const s of sets) if (s && (!best || s.size < best.size)) best = s;
    return best;
  };
  const walk = (n: CondNode): Set<string> | undefined => {
    switch (n.t) {
      case 'id': {
        const s = d.searches.get(n.name);
        return s ? fromSearch(s) : undefined;
      }
      case 'and':
        return pickSmallest(n.items.map(walk));
      case 'or':
        return unionAll(n.items.map(walk));
      case 'not':
        return undefined;
      case 'of': {
        const sets = n.names.map((name) => walk({ t: 'id', name }));
        return n.count === 'all' ? pickSmallest(sets) : unionAll(sets);
      }
    }
  };
  return walk(d.condition);
}
