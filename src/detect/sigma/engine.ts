/**
 * The streaming Sigma engine: rules are bound to event fields once per layout (lazily, on the first event of
 * that layout) and indexed by route, so an event is only evaluated against the rules of its logsource:
 * - Windows events (`windows`, `evtx`, and `ecs` with `winlog.channel`) by (channel, EventID), EventID taken
 *   from the mapping variant or from the rule's own `EventID` selection;
 * - events that declare a logsource by that logsource;
 * - other events by the mapping sources whose `when` test recognizes them.
 */
import type { EventLayout, FieldValue, Logsource, NormalizedEvent } from '../../lib/event.ts';
import { setOwn } from '../../lib/lookup.ts';
import {
  type Accessor,
  AccessorTable,
  Binder,
  EvalCtx,
  type Needle,
  type Pred,
  positiveIdentifiers,
  requiredValues,
} from './compile.ts';
import { compileItem, type FieldItemDef, type Placeholders, RuleError } from './detection.ts';
import {
  defaultSigmaMappings,
  type FieldResolver,
  logsourceCovers,
  type SigmaMappings,
  type SourceLayoutMapping,
  type SourceMapping,
  sourceResolver,
  WINDOWS_LAYOUTS,
  type WindowsLayoutMapping,
  type WindowsVariant,
  windowsResolver,
} from './mapping.ts';
import { MultiSearch } from './multisearch.ts';
import type { RejectedRule, SigmaFilter, SigmaMatch, SigmaRule, SigmaRuleRef } from './types.ts';

export interface SigmaEngineOptions {
  /** Loaded rules (`loadSigmaRules(...).rules`); deprecated and unsupported ones match like the others. */
  rules: readonly SigmaRule[];
  /** Sigma filters; each is added as `and not` to the rules it names whose logsource it covers. */
  filters?: readonly SigmaFilter[];
  /** Values for `%placeholder%`s of `expand` items; rules with an unresolvable placeholder are rejected. */
  placeholders?: Placeholders;
  /** Logsource and field mappings; the shipped ones (src/detect/mappings) by default. */
  mappings?: SigmaMappings;
  /**
   * Skip rules whose required text is absent from the event (default true). Turning it off evaluates every
   * rule of the route: same results, slower; for tests and diagnosis.
   */
  prefilter?: boolean;
}

/** Counters for operators and benchmarks. */
export interface SigmaEngineStats {
  rules: number;
  rejected: number;
  events: number;
  evaluations: number;
  matches: number;
  /** Layouts whose routes have been built, with the number of bound candidates. */
  layouts: Record<string, number>;
}

/** The engine: `match` is synchronous and evaluates one event at a time. */
export interface SigmaEngine {
  /** The rules that fired on the event (each once), in the order of `rules`. */
  match(event: NormalizedEvent): SigmaMatch[];
  /** Rules accepted by the engine. */
  readonly rules: readonly SigmaRule[];
  /** Rules the engine could not compile (unresolvable placeholders). */
  readonly rejected: readonly RejectedRule[];
  /** Reads a Sigma field of an event through the layout's generic field mapping (for correlation group-by). */
  fieldValue(event: NormalizedEvent, sigmaField: string): FieldValue | undefined;
  stats(): SigmaEngineStats;
}

interface Candidate {
  /** The rule's position in `rules`. */
  readonly index: number;
  /** Unique per bound candidate: the evaluation stamp slot. */
  readonly slot: number;
  readonly ref: SigmaRuleRef;
  readonly pred: Pred;
  readonly explain: (ctx: EvalCtx) => Record<string, FieldValue>;
  /** The rule can only match when one of these needles is in its field's lowercased text. */
  readonly needles: Needle[] | undefined;
}

interface NeedleEntry {
  readonly text: string;
  readonly candidates: Candidate[];
}

/** The needles of one field in a route. */
interface FieldScan {
  readonly acc: Accessor;
  /** Needles searched together in one sampled pass over the text. */
  readonly hashed: MultiSearch<NeedleEntry>;
  /** Needles shorter than three characters, or all needles when they are few: tested with `includes`. */
  readonly short: NeedleEntry[];
}

/** Up to this many needles a field is searched with `includes` per needle (native and fast), past it by hashing. */
const INCLUDES_MAX = 16;

/**
 * A route's candidates split for evaluation: those without a needle are always evaluated; the others only when
 * a scan of their fields finds one of their needles (one pass per field instead of one test per rule value).
 */
interface RouteIndex {
  readonly always: Candidate[];
  readonly scans: FieldScan[];
}

function buildRouteIndex(list: readonly Candidate[]): RouteIndex {
  const always: Candidate[] = [];
  const byAcc = new Map<number, { acc: Accessor; texts: Map<string, Candidate[]> }>();
  for (const c of list) {
    if (!c.needles || c.needles.length === 0) {
      always.push(c);
      continue;
    }
    for (const n of c.needles) {
      let f = byAcc.get(n.acc.id);
      if (!f) {
        f = { acc: n.acc, texts: new Map() };
        byAcc.set(n.acc.id, f);
      }
      const cs = f.texts.get(n.text);
      if (!cs) f.texts.set(n.text, [c]);
      else if (!cs.includes(c)) cs.push(c);
    }
  }
  const scans: FieldScan[] = [];
  for (const { acc, texts } of byAcc.values()) {
    const few = texts.size <= INCLUDES_MAX;
    const hashed: { text: string; value: NeedleEntry }[] = [];
    const short: NeedleEntry[] = [];
    for (const [text, candidates] of texts) {
      const entry = { text, candidates };
      if (few || text.length < 3) short.push(entry);
      else hashed.push({ text, value: entry });
    }
    scans.push({ acc, hashed: new MultiSearch(hashed), short });
  }
  return { always, scans };
}

interface ChannelRoutes {
  byEventId: Map<string, Candidate[]>;
  any: Candidate[];
}

interface WindowsRoutes {
  channelAcc: ReturnType<AccessorTable['get']>;
  eventIdAcc: ReturnType<AccessorTable['get']>;
  byChannel: Map<string, ChannelRoutes>;
  wildcard: ChannelRoutes;
  merged: Map<string, Map<string, Candidate[]>>;
  mergedSize: number;
  bound: number;
}

interface SourceRoute {
  when: Pred;
  candidates: Candidate[];
}

/** Merged route lists kept per layout; past this many (channel, EventID) pairs they are rebuilt per event. */
const MAX_MERGED_ROUTES = 20_000;
const MAX_DECLARED_ROUTES = 2_000;

const EMPTY: Candidate[] = [];

/** A field resolver and the accessors bound through it, shared by the binders of every rule that uses it. */
interface SharedResolver {
  readonly resolve: FieldResolver;
  readonly accessors: Map<string, Accessor>;
}

/** The resolver key of rules bound without a source layout mapping (fields used as they are named). */
const NO_SOURCE_LAYOUT = {};

function ruleRef(r: SigmaRule): SigmaRuleRef {
  return Object.freeze({
    id: r.id,
    name: r.name,
    title: r.title,
    level: r.level,
    tags: r.tags,
    status: r.status,
    file: r.file,
  });
}

function lowerText(v: FieldValue | undefined): string {
  if (v === undefined || v === null) return '';
  if (Array.isArray(v)) return v.length ? lowerText(v[0]) : '';
  return (typeof v === 'string' ? v : String(v)).toLowerCase();
}

/** Whether a filter applies to a rule: it names the rule and every logsource attribute it sets is the rule's. */
function filterApplies(f: SigmaFilter, r: SigmaRule): boolean {
  const named = f.rules.some((x) => x === r.id || (r.name !== undefined && x === r.name));
  if (!named) return false;
  const fl = f.logsource;
  const rl = r.logsource;
  return (
    (!fl.product || fl.product === rl.product) &&
    (!fl.service || fl.service === rl.service) &&
    (!fl.category || fl.category === rl.category)
  );
}

class Engine implements SigmaEngine {
  readonly rules: SigmaRule[] = [];
  readonly rejected: RejectedRule[] = [];
  private readonly refs: SigmaRuleRef[] = [];
  private readonly refIndex = new Map<SigmaRuleRef, number>();
  private readonly eventIds: (Set<string> | undefined)[] = [];
  private readonly filtersOf: SigmaFilter[][] = [];
  private readonly positives: Set<string>[] = [];
  private readonly mappings: SigmaMappings;
  private readonly placeholders: Placeholders | undefined;
  private readonly prefilter: boolean;
  private readonly table = new AccessorTable();
  private readonly ctx = new EvalCtx();
  private readonly windows = new Map<EventLayout, WindowsRoutes>();
  private readonly sources = new Map<EventLayout, SourceRoute[]>();
  private readonly declared = new Map<string, Candidate[]>();
  private readonly counters = { events: 0, evaluations: 0, matches: 0 };
  private readonly indexes = new WeakMap<readonly Candidate[], RouteIndex>();
  private slots = 0;
  private lastCached = true;
  private readonly lastRoute: {
    routes?: WindowsRoutes;
    channel?: FieldValue;
    eventId?: FieldValue;
    list?: Candidate[];
  } = {};
  private out: SigmaMatch[] | undefined;
  private readonly fieldKeys = new Map<string, string[]>();
  private readonly resolvers = new Map<object, Map<string | undefined, Map<object | undefined, SharedResolver>>>();

  constructor(opts: SigmaEngineOptions) {
    this.mappings = opts.mappings ?? defaultSigmaMappings();
    this.placeholders = opts.placeholders;
    this.prefilter = opts.prefilter ?? true;
    const filters = opts.filters ?? [];
    for (const rule of opts.rules) {
      let eventIds: Set<string> | undefined;
      let positives: Set<string>;
      try {
        this.checkPlaceholders(rule);
        eventIds = requiredValues(rule.detection, 'EventID');
        positives = positiveIdentifiers(rule.detection.condition);
      } catch (err) {
        this.rejected.push({
          file: rule.file,
          line: rule.line,
          ruleId: rule.id,
          title: rule.title,
          reason: err instanceof RuleError ? err.message : `the rule could not be compiled: ${(err as Error).message}`,
          ...(err instanceof RuleError ? {} : { unexpected: true }),
        });
        continue;
      }
      this.rules.push(rule);
      const ref = ruleRef(rule);
      this.refIndex.set(ref, this.refs.length);
      this.refs.push(ref);
      this.eventIds.push(eventIds);
      this.filtersOf.push(filters.filter((f) => filterApplies(f, rule)));
      this.positives.push(positives);
    }
  }

  /** Rules with `expand` items are compiled with the engine's placeholder values when it has some. */
  private checkPlaceholders(rule: SigmaRule): void {
    if (!this.placeholders) return;
    const walk = (items: FieldItemDef[]): void => {
      for (const it of items) if (it.expand) compileItem(it, this.placeholders);
    };
    for (const s of rule.detection.searches.values()) {
      const stack = [s];
      while (stack.length) {
        const x = stack.pop()!;
        if (x.t === 'and') walk(x.items);
        else if (x.t === 'kw') walk([x.item]);
        else stack.push(...x.alts);
      }
    }
  }

  /**
   * The resolver of one mapping target (a Windows layout with a category and variant, or a source layout) with
   * the accessors bound through it so far: binding a layout's thousands of rules resolves each field once.
   * `key` is the mapping object the resolver reads; `sub` and `variant` refine it.
   */
  private resolver(
    key: object,
    sub: string | undefined,
    variant: object | undefined,
    make: () => FieldResolver,
  ): SharedResolver {
    let bySub = this.resolvers.get(key);
    if (!bySub) {
      bySub = new Map();
      this.resolvers.set(key, bySub);
    }
    let byVariant = bySub.get(sub);
    if (!byVariant) {
      byVariant = new Map();
      bySub.set(sub, byVariant);
    }
    let r = byVariant.get(variant);
    if (!r) {
      r = { resolve: make(), accessors: new Map() };
      byVariant.set(variant, r);
    }
    return r;
  }

  private windowsResolverOf(
    lm: WindowsLayoutMapping,
    category: string | undefined,
    variant: WindowsVariant | undefined,
  ): SharedResolver {
    return this.resolver(lm, category, variant, () => windowsResolver(lm, category, variant));
  }

  private sourceResolverOf(lm: SourceLayoutMapping | undefined): SharedResolver {
    return this.resolver(lm ?? NO_SOURCE_LAYOUT, undefined, undefined, () => sourceResolver(lm));
  }

  /** Binds one rule (with its filters and an optional variant guard) through a field resolver. */
  private bind(index: number, resolver: SharedResolver, guard?: Record<string, unknown>): Candidate | undefined {
    const rule = this.rules[index];
    const binder = new Binder(this.table, resolver.resolve, this.placeholders, resolver.accessors);
    try {
      const { pred: rulePred, searches } = binder.detection(rule.detection);
      let pred = rulePred;
      for (const f of this.filtersOf[index]) {
        const fp = binder.detection(f.detection).pred;
        const inner = pred;
        pred = (ctx) => inner(ctx) && !fp(ctx);
      }
      if (guard) {
        const guards = Object.entries(guard).map(([field, v]) =>
          binder.item({
            field,
            modifiers: [],
            values: (Array.isArray(v) ? v : [v]) as string[],
            path: [],
            expand: false,
          }),
        );
        const inner = pred;
        pred = (ctx) => guards.every((g) => g(ctx)) && inner(ctx);
      }
      const explainers: { pred: Pred; fields: { field: string; acc: Accessor }[] }[] = [];
      for (const id of this.positives[index]) {
        const def = rule.detection.searches.get(id);
        const sp = searches.get(id);
        if (def && sp) explainers.push({ pred: sp, fields: binder.searchFields(def) });
      }
      // Runs only for matches: re-evaluates the positive searches to report the fields of those that hold.
      const explain = (ctx: EvalCtx): Record<string, FieldValue> => {
        const out: Record<string, FieldValue> = {};
        for (const e of explainers) {
          if (!e.pred(ctx)) continue;
          for (const { field, acc } of e.fields) {
            const v = ctx.raw(acc);
            if (v !== undefined) setOwn(out, ctx.keyOf(acc) ?? field, v);
          }
        }
        return out;
      };
      const needles = this.prefilter ? binder.prefilter(rule.detection) : undefined;
      const slot = this.slots++;
      this.ctx.ensure(this.table.size, this.rules.length, this.slots);
      return { index, slot, ref: this.refs[index], pred, explain, needles };
    } catch (err) {
      // Any failure, expected or not, costs this rule only.
      if (!this.rejected.some((r) => r.ruleId === rule.id && r.file === rule.file)) {
        this.rejected.push({
          file: rule.file,
          line: rule.line,
          ruleId: rule.id,
          title: rule.title,
          reason: err instanceof RuleError ? err.message : `the rule could not be compiled: ${(err as Error).message}`,
          ...(err instanceof RuleError ? {} : { unexpected: true }),
        });
      }
      return undefined;
    }
  }

  private windowsRoutes(layout: EventLayout): WindowsRoutes | undefined {
    const cached = this.windows.get(layout);
    if (cached) return cached;
    const lm = this.mappings.windows.layouts[layout as 'windows' | 'evtx' | 'ecs'];
    if (!lm) return undefined;
    const routes: WindowsRoutes = {
      channelAcc: this.table.get(lm.channel),
      eventIdAcc: this.table.get(lm.eventId),
      byChannel: new Map(),
      wildcard: { byEventId: new Map(), any: [] },
      merged: new Map(),
      mergedSize: 0,
      bound: 0,
    };
    const add = (channels: string[] | '*', eventIds: string[] | undefined, c: Candidate): void => {
      const targets: ChannelRoutes[] = [];
      if (channels === '*') targets.push(routes.wildcard);
      else {
        for (const ch of channels) {
          const key = ch.toLowerCase();
          let r = routes.byChannel.get(key);
          if (!r) {
            r = { byEventId: new Map(), any: [] };
            routes.byChannel.set(key, r);
          }
          targets.push(r);
        }
      }
      for (const t of targets) {
        if (!eventIds) t.any.push(c);
        else
          for (const id of eventIds) {
            const list = t.byEventId.get(id);
            if (list) list.push(c);
            else t.byEventId.set(id, [c]);
          }
      }
      routes.bound++;
    };
    const { services, categories } = this.mappings.windows;
    for (let i = 0; i < this.rules.length; i++) {
      const ls = this.rules[i].logsource;
      const ruleIds = this.eventIds[i] ? [...this.eventIds[i]!] : undefined;
      if (ls.category) {
        const variants = (categories[ls.category] ?? []).filter(
          (v) =>
            (ls.product === 'windows' || (!ls.product && v.anyProduct)) && (!ls.service || v.service === ls.service),
        );
        for (const v of variants) {
          const channels = services[v.service];
          if (!channels) continue;
          const ids = intersectIds(v, ruleIds);
          if (ids && ids.length === 0) continue;
          const c = this.bind(i, this.windowsResolverOf(lm, ls.category, v), v.conditions);
          if (c) add(channels, ids, c);
        }
      } else if (ls.product === 'windows') {
        const channels = ls.service ? services[ls.service] : '*';
        if (!channels) continue;
        const c = this.bind(i, this.windowsResolverOf(lm, undefined, undefined));
        if (c) add(channels, ruleIds, c);
      }
    }
    this.windows.set(layout, routes);
    return routes;
  }

  /** The candidates of the current Windows event; `lastCached` tells whether the list is kept (and indexed). */
  private windowsCandidates(routes: WindowsRoutes): Candidate[] {
    const ctx = this.ctx;
    const rawChannel = ctx.raw(routes.channelAcc);
    const rawEventId = ctx.raw(routes.eventIdAcc);
    // Consecutive events mostly share their route: compare the raw values before lowercasing and looking up.
    const last = this.lastRoute;
    if (last.routes === routes && last.channel === rawChannel && last.eventId === rawEventId && last.list) {
      this.lastCached = true;
      return last.list;
    }
    const list = this.lookupWindows(routes, lowerText(rawChannel), lowerText(rawEventId));
    last.routes = routes;
    last.channel = rawChannel;
    last.eventId = rawEventId;
    last.list = this.lastCached ? list : undefined;
    return list;
  }

  private lookupWindows(routes: WindowsRoutes, channel: string, eventId: string): Candidate[] {
    let byId = routes.merged.get(channel);
    const hit = byId?.get(eventId);
    this.lastCached = true;
    if (hit) return hit;
    const ch = routes.byChannel.get(channel);
    const w = routes.wildcard;
    const list = [
      ...(ch?.byEventId.get(eventId) ?? EMPTY),
      ...(ch?.any ?? EMPTY),
      ...(w.byEventId.get(eventId) ?? EMPTY),
      ...w.any,
    ];
    if (routes.mergedSize >= MAX_MERGED_ROUTES) {
      this.lastCached = false;
      return list;
    }
    if (!byId) {
      byId = new Map();
      routes.merged.set(channel, byId);
    }
    byId.set(eventId, list);
    routes.mergedSize++;
    return list;
  }

  /** The resolver for a rule routed by a declared logsource in a layout. */
  private declaredResolver(layout: EventLayout, rule: SigmaRule, declared: Logsource): SharedResolver {
    const lm = this.mappings.windows.layouts[layout as 'windows' | 'evtx' | 'ecs'];
    if (lm && rule.logsource.product === 'windows')
      return this.windowsResolverOf(lm, rule.logsource.category, undefined);
    let best: SourceMapping | undefined;
    for (const s of this.mappings.sources) {
      if (!s.layouts[layout] || !logsourceCovers(s.logsource, rule.logsource)) continue;
      if (!best || logsourceCovers(declared, s.logsource)) best = s;
    }
    return this.sourceResolverOf(best?.layouts[layout]);
  }

  private declaredCandidates(layout: EventLayout, ls: Logsource): Candidate[] {
    const p = ls.product?.toLowerCase();
    const s = ls.service?.toLowerCase();
    const c = ls.category?.toLowerCase();
    const key = `${layout}|${p ?? ''}|${s ?? ''}|${c ?? ''}`;
    const cached = this.declared.get(key);
    if (cached) return cached;
    const declared: Logsource = { product: p, service: s, category: c };
    const out: Candidate[] = [];
    for (let i = 0; i < this.rules.length; i++) {
      const rule = this.rules[i];
      if (!logsourceCovers(declared, rule.logsource)) continue;
      const cand = this.bind(i, this.declaredResolver(layout, rule, declared));
      if (cand) out.push(cand);
    }
    if (this.declared.size < MAX_DECLARED_ROUTES) this.declared.set(key, out);
    return out;
  }

  private sourceRoutes(layout: EventLayout): SourceRoute[] {
    const cached = this.sources.get(layout);
    if (cached) return cached;
    const routes: SourceRoute[] = [];
    const identity = new Binder(this.table, (f) => [f]);
    for (const s of this.mappings.sources) {
      const lm = s.layouts[layout];
      if (!lm) continue;
      const candidates: Candidate[] = [];
      for (let i = 0; i < this.rules.length; i++) {
        if (!logsourceCovers(s.logsource, this.rules[i].logsource)) continue;
        const c = this.bind(i, this.sourceResolverOf(lm));
        if (c) candidates.push(c);
      }
      routes.push({ when: identity.when(lm.when), candidates });
    }
    this.ctx.ensure(this.table.size, this.rules.length);
    this.sources.set(layout, routes);
    return routes;
  }

  /** Evaluates one candidate; the rule fires once per event even when reached twice. */
  private evaluate(c: Candidate): void {
    const ctx = this.ctx;
    if (!ctx.firstEval(c.slot)) return;
    this.counters.evaluations++;
    if (!c.pred(ctx) || !ctx.firstVisit(c.index)) return;
    const match: SigmaMatch = { rule: c.ref, matchedFields: c.explain(ctx) };
    if (this.out) this.out.push(match);
    else this.out = [match];
  }

  /** Evaluates the candidates of a route: those without needles, then those whose needles the scans find. */
  private run(list: readonly Candidate[], cache: boolean): void {
    let index = this.indexes.get(list);
    if (!index) {
      if (!cache) {
        for (const c of list) this.evaluate(c);
        return;
      }
      index = buildRouteIndex(list);
      this.indexes.set(list, index);
    }
    const always = index.always;
    for (let i = 0; i < always.length; i++) this.evaluate(always[i]);
    const scans = index.scans;
    for (let f = 0; f < scans.length; f++) {
      const scan = scans[f];
      const v = this.ctx.lower(scan.acc);
      if (v === undefined || v === null) continue;
      if (typeof v === 'string') this.scanText(scan, v);
      else for (const s of v) this.scanText(scan, s);
    }
  }

  private scanText(scan: FieldScan, s: string): void {
    scan.hashed.forEach(s, this.fire);
    const short = scan.short;
    for (let e = 0; e < short.length; e++) {
      const entry = short[e];
      if (s.includes(entry.text)) this.fire(entry);
    }
  }

  /** Evaluates the candidates of a needle found in the event. */
  private readonly fire = (entry: NeedleEntry): void => {
    const cs = entry.candidates;
    for (let j = 0; j < cs.length; j++) this.evaluate(cs[j]);
  };

  match(event: NormalizedEvent): SigmaMatch[] {
    const ctx = this.ctx;
    ctx.reset(event);
    this.counters.events++;
    this.out = undefined;
    const layout = event.layout;
    const ls = event.logsource;
    const lsProduct = ls?.product?.toLowerCase();
    let routed = false;
    if (WINDOWS_LAYOUTS.has(layout) && (!lsProduct || lsProduct === 'windows')) {
      const routes = this.windowsRoutes(layout);
      if (routes) {
        const hasChannel = ctx.raw(routes.channelAcc) !== undefined;
        // Without a channel, a declared service or category routes the event; an ECS event without either is
        // not a Windows event log record (Elastic Defend, auditbeat...) and goes to the mapping sources.
        if (hasChannel || (layout !== 'ecs' && !ls?.service && !ls?.category)) {
          this.run(this.windowsCandidates(routes), this.lastCached);
          routed = true;
        }
      }
    }
    if (!routed) {
      if (ls && (ls.product || ls.service || ls.category)) this.run(this.declaredCandidates(layout, ls), true);
      else for (const r of this.sourceRoutes(layout)) if (r.when(ctx)) this.run(r.candidates, true);
    }
    const out = this.out as SigmaMatch[] | undefined;
    this.out = undefined;
    if (!out) return [];
    this.counters.matches += out.length;
    // Needle scans find rules in text order; report them in rule order.
    if (out.length > 1) out.sort((x, y) => (this.refIndex.get(x.rule) ?? 0) - (this.refIndex.get(y.rule) ?? 0));
    return out;
  }

  fieldValue(event: NormalizedEvent, sigmaField: string): FieldValue | undefined {
    const cacheKey = `${event.layout}\u0000${sigmaField}`;
    let keys = this.fieldKeys.get(cacheKey);
    if (!keys) {
      const lm = this.mappings.windows.layouts[event.layout as 'windows' | 'evtx' | 'ecs'];
      keys = lm ? windowsResolver(lm, undefined, undefined)(sigmaField) : [sigmaField];
      if (this.fieldKeys.size < 10_000) this.fieldKeys.set(cacheKey, keys);
    }
    for (const k of keys) {
      if (k.startsWith('$') || k.includes('.**.')) continue;
      const v = event.fields[k];
      if (v !== undefined && typeof v !== 'function') return v;
    }
    return undefined;
  }

  stats(): SigmaEngineStats {
    const layouts: Record<string, number> = {};
    for (const [l, r] of this.windows) layouts[l] = r.bound;
    for (const [l, r] of this.sources) layouts[`${l}:sources`] = r.reduce((n, x) => n + x.candidates.length, 0);
    return { rules: this.rules.length, rejected: this.rejected.length, layouts, ...this.counters };
  }
}

function intersectIds(v: WindowsVariant, ruleIds: string[] | undefined): string[] | undefined {
  const own = v.eventIds?.map((x) => String(x).toLowerCase());
  if (!own) return ruleIds;
  if (!ruleIds) return own;
  return own.filter((x) => ruleIds.includes(x));
}

/** Creates the engine; opens nothing and starts nothing. Rules are bound lazily per layout on first use. */
export function createSigmaEngine(opts: SigmaEngineOptions): SigmaEngine {
  return new Engine(opts);
}
