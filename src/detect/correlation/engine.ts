/**
 * The Sigma correlation engine: consumes Sigma rule matches, keeps per-group sliding windows over event
 * time, and emits correlation alerts.
 *
 * Decisions where the Sigma correlation specification (v2.1) is silent or ambiguous (README.md repeats them):
 *
 * 1. Windows slide over event time (`event.timestamp`), never the wall clock, and are inclusive: a match at
 *    time t is in the window of a group whose newest match is at N when N - timespan <= t <= N.
 * 2. The condition is evaluated when a match enters a group, over the group's current window (the one that
 *    ends at the newest event time of the group). There are no timers, so `lt`/`lte`/`eq`/`neq` are judged
 *    only when matches arrive: "fewer than N events" fires on the arrival that leaves fewer, never on silence.
 * 3. Out of order: a match older than `newest - timespan` of its group is ignored by that correlation
 *    (counted in `vigil_correlation_late_matches_total`); a younger one is inserted at its event time and
 *    judged against the current window. temporal_ordered orders by event time, not arrival; equal
 *    timestamps count as in order (many sources log whole seconds).
 * 4. Re-firing is edge-triggered: a group alerts when its condition goes from false to true. It does not
 *    alert again while the condition keeps holding; it re-arms when an arrival finds the condition false, or
 *    when a gap longer than the timespan empties the window. State is NOT reset after firing, because a
 *    reset makes every later decision depend on the whole history (where the last alert cut the stream),
 *    so a replay that starts mid-burst would cut elsewhere and alert again under new ids. With the edge
 *    trigger a decision depends only on the last 2 x timespan of matches, which a replay can rebuild.
 *    value_percentile without `percentile` tracks the edge per value (each rare value alerts once).
 * 5. Alert id = sha256 of ("vigil.correlation.v1", correlation id, canonical group key, id of the match that
 *    completed the condition: the event id, or for a chained correlation the alert id it consumed). One
 *    match enters a group once, so it completes at most one alert per correlation and group. The engine
 *    ignores a redelivered match (same id already in the window) and never returns an id twice.
 * 6. Replay (failover): feed, in the original order, the matches whose events are newer than
 *    `checkpoint - replayHorizonMs()` and drop the alerts returned for matches before the checkpoint (their
 *    windows are truncated); from the checkpoint on, alerts and ids are those the failed node produced or
 *    would have produced. The consumer dedupes by id. replayHorizonMs = 2 x timespan, summed along chains.
 * 7. group-by: a match lacking a group-by field (absent or null) is skipped by that correlation, as SQL
 *    `GROUP BY` / Splunk `stats by` backends do. Values compare by canonical text (1 equals "1", since
 *    sources disagree on types); the alert's `groupBy` holds the completing match's values. No group-by
 *    means one group.
 * 8. aliases: looked up by the matched rule's id or name; a rule missing from an alias's mapping uses the
 *    alias name as its field. Aliases also apply to `condition.field`.
 * 9. One event matched by several referenced rules counts once for event_count and value_*; for temporal
 *    types it counts for each rule it matched.
 * 10. value_count counts distinct canonical values (a list `field` counts distinct tuples); value_sum/avg/
 *    percentile read numbers and numeric strings. Matches without a usable value are skipped.
 * 11. value_percentile: with `percentile: P`, the P-th percentile (linear interpolation) of the numeric field
 *    is compared with the condition, as pySigma and rsigma do. Without it, the share in percent of the
 *    arriving match's value among all values in the window is compared, which is what the specification's
 *    example means ("a process name that is 1% or less of all processes on the computer": `lte: 1`).
 * 12. temporal: the default condition is `gte: <number of rules>` (pySigma); a condition compares the number
 *    of distinct referenced rules seen. temporal_ordered compares the longest prefix of `rules` seen in order.
 * 13. Chaining: an alert of A is a match of rule A at its `lastTimestamp`; its fields are A's `groupBy`, then
 *    the fields of the match that completed A. Its `eventIds` (the base events) flow into the outer alert.
 * 14. generate: `false` (the default) withholds the standalone alerts of every rule a correlation references,
 *    base rules and inner correlations alike; one referencing correlation with `generate: false` suffices,
 *    as in pySigma. `suppresses(rule)` tells the caller; inner correlations still feed their chain.
 * 15. Memory: `stateSize()` counts retained matches. The watermark is the newest event time seen (capped at
 *    now() + maxFutureSkewMs, so one clock-skewed event cannot expire everything); groups whose newest match
 *    is older than watermark - timespan are dropped. Above maxStateEntries, the least recently updated
 *    groups are evicted (`vigil_correlation_evictions_total`); an evicted group starts over.
 */
import { createHash } from 'node:crypto';
import type { Registry } from 'prom-client';
import { InputError } from '../../lib/errors.ts';
import type { FieldValue, NormalizedEvent } from '../../lib/event.ts';
import { setOwn } from '../../lib/lookup.ts';
import { counter, gauge } from '../../lib/metrics.ts';
import type { CompiledCorrelation, CorrelationType } from './compile.ts';
import { type Aggregation, type Entry, GroupIndex, GroupWindow } from './window.ts';

/** The rule of a Sigma match, as the Sigma engine reports it. */
export interface MatchedRule {
  id: string;
  name?: string;
  title: string;
  level: string;
  tags: readonly string[];
}

/** One Sigma rule match: what the Sigma engine produces for each event a rule matches. */
export interface SigmaMatch {
  rule: MatchedRule;
  event: NormalizedEvent;
}

/** An alert of a correlation rule. */
export interface CorrelationAlert {
  /** Deterministic: sha256 of correlation id, group key and the completing match id (see engine.ts, 5). */
  id: string;
  correlation: { id: string; name?: string; title: string; level: string; tags: string[]; type: CorrelationType };
  /** group-by name (or alias) -> value, from the match that completed the condition. */
  groupBy: Record<string, FieldValue>;
  /** The base events in the window when it fired, in event-time order; at most 100 (the newest, always
   *  including the completing ones). */
  eventIds: string[];
  /** Event time of the oldest and newest match in the window, epoch ms. */
  firstTimestamp: number;
  lastTimestamp: number;
  /** The aggregate compared with the condition: count, distinct count, sum, average, percentile or share. */
  value?: number;
}

/** Options of `createCorrelationEngine`. */
export interface CorrelationEngineOptions {
  /** Retained matches across all groups before the least recently updated groups are evicted. Default 100000. */
  maxStateEntries?: number;
  /** Registers the engine's metrics there; metrics already registered are reused. */
  metrics?: Registry;
  /** Wall clock, epoch ms; only bounds how far ahead of it event time may move the watermark. Default Date.now. */
  now?: () => number;
  /** How far ahead of now() event time may move the watermark. Default 300000 (5 min). */
  maxFutureSkewMs?: number;
  /**
   * Reads a group-by field of an event. Default: `event.fields[name]`. Vigil passes the Sigma engine's
   * layout mapping, so `TargetUserName` is found in flat Windows, evtx and ECS events alike.
   */
  fieldValue?: (event: NormalizedEvent, field: string) => FieldValue | undefined;
}

/** A running correlation engine. Single-threaded; not safe to share across replicas (each rebuilds by replay). */
export interface CorrelationEngine {
  /** Feeds one Sigma match; returns the alerts it completed (chained correlations included), in order. */
  onMatch(match: SigmaMatch): CorrelationAlert[];
  /** Whether standalone alerts of this rule (Sigma rule or correlation) are withheld per `generate: false`. */
  suppresses(rule: { id: string; name?: string }): boolean;
  /** Matches retained across all group windows. */
  stateSize(): number;
  /** How far back (event time, ms) a replay must start to rebuild the state exactly (engine.ts, 6). */
  replayHorizonMs(): number;
}

const MAX_EVENT_IDS = 100;
const DEFAULT_MAX_STATE_ENTRIES = 100_000;
const DEFAULT_MAX_FUTURE_SKEW_MS = 5 * 60_000;
const NUMERIC = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;

/** What a correlation sees of a match: a Sigma rule match or an alert of an inner correlation. */
interface Observation {
  id: string;
  t: number;
  refs: readonly string[];
  eventIds: readonly string[];
  get(field: string): FieldValue | undefined;
}

interface Runtime {
  c: CompiledCorrelation;
  agg: Aggregation;
  /** Groups, least recently updated first. */
  groups: GroupIndex;
  /** Correlations that reference this one. */
  consumers: Runtime[];
  /** False when a correlation referencing this one has generate: false. */
  output: boolean;
  horizonMs: number;
}

interface Metrics {
  evictions(correlation: string, n: number): void;
  late(correlation: string): void;
  alerts(correlation: string): void;
  state(n: number): void;
}

/**
 * Creates a correlation engine over compiled correlations. Throws InputError (`invalid_correlation`) when
 * two correlations share an id or name, or when correlations reference each other in a cycle.
 */
export function createCorrelationEngine(
  correlations: readonly CompiledCorrelation[],
  opts: CorrelationEngineOptions = {},
): CorrelationEngine {
  const maxStateEntries = opts.maxStateEntries ?? DEFAULT_MAX_STATE_ENTRIES;
  if (!Number.isSafeInteger(maxStateEntries) || maxStateEntries < 1) {
    throw new InputError('invalid_option', `maxStateEntries must be a positive integer, got ${maxStateEntries}`);
  }
  const now = opts.now ?? Date.now;
  const maxFutureSkewMs = opts.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS;
  const fieldValue = opts.fieldValue ?? ((event: NormalizedEvent, f: string) => event.fields[f]);
  const metrics = createMetrics(opts.metrics);

  const runtimes = correlations.map(
    (c): Runtime => ({ c, agg: aggregationOf(c), groups: new GroupIndex(), consumers: [], output: true, horizonMs: 0 }),
  );
  const byKey = new Map<string, Runtime>();
  for (const rt of runtimes) {
    for (const key of keysOf(rt.c)) {
      const other = byKey.get(key);
      if (other && other !== rt) {
        throw new InputError(
          'invalid_correlation',
          `${rt.c.file}: correlation "${rt.c.title}" uses the id or name "${key}" already used by "${other.c.title}" in ${other.c.file}`,
        );
      }
      byKey.set(key, rt);
    }
  }
  for (const rt of runtimes) {
    for (const ref of rt.c.rules) {
      const inner = byKey.get(ref);
      if (inner && !inner.consumers.includes(rt)) inner.consumers.push(rt);
    }
  }
  checkAcyclic(runtimes, byKey);
  for (const rt of runtimes) computeHorizon(rt, byKey);

  /** rule reference -> correlations referencing it, with the rule's index in their `rules`. */
  const targets = new Map<string, Array<{ rt: Runtime; ruleIdx: number }>>();
  const suppressedRefs = new Set<string>();
  for (const rt of runtimes) {
    rt.c.rules.forEach((ref, ruleIdx) => {
      const list = targets.get(ref) ?? [];
      list.push({ rt, ruleIdx });
      targets.set(ref, list);
      if (!rt.c.generate) suppressedRefs.add(ref);
    });
  }
  for (const rt of runtimes) rt.output = !keysOf(rt.c).some((k) => suppressedRefs.has(k));
  const longestTimespan = Math.max(0, ...runtimes.map((rt) => rt.c.timespanMs));

  let watermark = Number.NEGATIVE_INFINITY;
  let seq = 0;
  let entries = 0;
  /** Ids of emitted alerts, and the same in emission order with lastTimestamp; pruned by watermark, capped. */
  const emitted = new Set<string>();
  let emittedOrder: Array<{ id: string; t: number }> = [];
  let emittedHead = 0;

  function observe(rt: Runtime, ruleIdx: number, obs: Observation): CorrelationAlert | undefined {
    const c = rt.c;
    const groupValues: FieldValue[] = [];
    for (const name of c.groupBy) {
      const v = obs.get(fieldFor(c, name, obs.refs));
      if (v === undefined || v === null) return undefined;
      groupValues.push(v);
    }
    let value: string | number | undefined;
    if (rt.agg === 'distinct' || rt.agg === 'share') {
      const parts: FieldValue[] = [];
      for (const f of c.condition.field ?? []) {
        const v = obs.get(fieldFor(c, f, obs.refs));
        if (v === undefined || v === null) return undefined;
        parts.push(v);
      }
      value = parts.length === 1 ? canonical(parts[0]) : JSON.stringify(parts.map(canonical));
    } else if (rt.agg === 'sum' || rt.agg === 'avg' || rt.agg === 'percentile') {
      value = numeric(obs.get(fieldFor(c, c.condition.field?.[0] ?? '', obs.refs)));
      if (value === undefined) return undefined;
    }

    const groupKey = JSON.stringify(groupValues.map(canonical));
    let g = rt.groups.get(groupKey);
    if (!g) {
      g = new GroupWindow(groupKey, rt.agg);
    } else if (obs.t < g.newest - c.timespanMs) {
      metrics.late(c.id);
      return undefined;
    }
    const temporal = rt.agg === 'rules' || rt.agg === 'ordered';
    const key = temporal ? `${ruleIdx}\u0000${obs.id}` : obs.id;
    if (g.has(key)) return undefined;

    if (obs.t > g.newest && g.size > 0) {
      entries -= g.evictBefore(obs.t - c.timespanMs);
      if (g.size === 0) {
        // A gap longer than the timespan ends the episode: the group re-arms.
        g.active = false;
        g.activeValues.clear();
      }
    }
    const entry: Entry = { t: obs.t, seq: ++seq, key, ruleIdx, value, eventIds: obs.eventIds };
    g.insert(entry);
    entries++;
    g.lastSeq = seq;
    rt.groups.touch(g);

    const arriving = typeof value === 'string' ? value : undefined;
    const agg = g.value(arriving, c.rules.length, c.condition.percentile ?? 50);
    const holds = agg !== undefined && satisfies(c.condition.ops, agg);
    let fire: boolean;
    if (rt.agg === 'share' && arriving !== undefined) {
      fire = holds && !g.activeValues.has(arriving);
      if (holds) g.activeValues.add(arriving);
      else g.activeValues.delete(arriving);
    } else {
      fire = holds && !g.active;
      g.active = holds;
    }
    if (!fire) return undefined;

    const groupBy: Record<string, FieldValue> = {};
    c.groupBy.forEach((name, i) => {
      setOwn(groupBy, name, groupValues[i]);
    });
    return {
      id: alertId(c.id, groupKey, obs.id),
      correlation: {
        id: c.id,
        ...(c.name === undefined ? {} : { name: c.name }),
        title: c.title,
        level: c.level,
        tags: [...c.tags],
        type: c.type,
      },
      groupBy,
      eventIds: triggeringEventIds(g.view(), obs.eventIds),
      firstTimestamp: g.first()?.t ?? obs.t,
      lastTimestamp: g.last()?.t ?? obs.t,
      ...(agg === undefined ? {} : { value: agg }),
    };
  }

  function feed(obs: Observation, out: CorrelationAlert[]): void {
    const seen = new Set<Runtime>();
    for (const ref of obs.refs) {
      for (const { rt, ruleIdx } of targets.get(ref) ?? []) {
        // A rule referenced twice (by id and by name) enters a correlation once.
        if (seen.has(rt)) continue;
        seen.add(rt);
        const alert = observe(rt, ruleIdx, obs);
        if (!alert || emitted.has(alert.id)) continue;
        emitted.add(alert.id);
        emittedOrder.push({ id: alert.id, t: alert.lastTimestamp });
        metrics.alerts(rt.c.id);
        if (rt.output) out.push(alert);
        if (rt.consumers.length > 0) feed(alertObservation(rt.c, alert, obs), out);
      }
    }
  }

  function expire(): void {
    for (const rt of runtimes) {
      const cutoff = watermark - rt.c.timespanMs;
      for (let g = rt.groups.oldest(); g && g.newest < cutoff; g = rt.groups.oldest()) {
        rt.groups.delete(g);
        entries -= g.size;
      }
    }
    const idCutoff = watermark - longestTimespan;
    while (emittedHead < emittedOrder.length) {
      const { id, t } = emittedOrder[emittedHead];
      if (t >= idCutoff && emitted.size <= maxStateEntries) break;
      emitted.delete(id);
      emittedHead++;
    }
    if (emittedHead > 1024 && emittedHead * 2 > emittedOrder.length) {
      emittedOrder = emittedOrder.slice(emittedHead);
      emittedHead = 0;
    }
  }

  function enforceCap(): void {
    while (entries > maxStateEntries) {
      let victim: { rt: Runtime; g: GroupWindow } | undefined;
      for (const rt of runtimes) {
        const g = rt.groups.oldest();
        if (g && (!victim || g.lastSeq < victim.g.lastSeq)) victim = { rt, g };
      }
      if (!victim) break;
      victim.rt.groups.delete(victim.g);
      entries -= victim.g.size;
      metrics.evictions(victim.rt.c.id, 1);
    }
  }

  return {
    onMatch(match) {
      const { rule, event } = match;
      if (!Number.isFinite(event.timestamp)) return [];
      const out: CorrelationAlert[] = [];
      const refs = rule.name === undefined ? [rule.id] : [rule.id, rule.name];
      if (refs.some((r) => targets.has(r))) {
        feed(
          {
            id: event.id,
            t: event.timestamp,
            refs,
            eventIds: [event.id],
            get: (f) => fieldValue(event, f),
          },
          out,
        );
      }
      const capped = Math.min(event.timestamp, now() + maxFutureSkewMs);
      if (capped > watermark) watermark = capped;
      expire();
      enforceCap();
      metrics.state(entries);
      return out;
    },
    suppresses(rule) {
      return suppressedRefs.has(rule.id) || (rule.name !== undefined && suppressedRefs.has(rule.name));
    },
    stateSize() {
      return entries;
    },
    replayHorizonMs() {
      return Math.max(0, ...runtimes.map((rt) => rt.horizonMs));
    },
  };
}

function aggregationOf(c: CompiledCorrelation): Aggregation {
  switch (c.type) {
    case 'event_count':
      return 'count';
    case 'value_count':
      return 'distinct';
    case 'value_sum':
      return 'sum';
    case 'value_avg':
      return 'avg';
    case 'value_percentile':
      return c.condition.percentile === undefined ? 'share' : 'percentile';
    case 'temporal':
      return 'rules';
    case 'temporal_ordered':
      return 'ordered';
  }
}

function keysOf(c: CompiledCorrelation): string[] {
  return c.name === undefined || c.name === c.id ? [c.id] : [c.id, c.name];
}

function checkAcyclic(runtimes: readonly Runtime[], byKey: Map<string, Runtime>): void {
  const state = new Map<Runtime, 'visiting' | 'done'>();
  const visit = (rt: Runtime, path: Runtime[]): void => {
    if (state.get(rt) === 'done') return;
    if (state.get(rt) === 'visiting') {
      const cycle = [...path.slice(path.indexOf(rt)), rt].map((r) => r.c.name ?? r.c.id).join(' -> ');
      throw new InputError(
        'invalid_correlation',
        `${rt.c.file}: correlations reference each other in a cycle: ${cycle}`,
      );
    }
    state.set(rt, 'visiting');
    for (const ref of rt.c.rules) {
      const inner = byKey.get(ref);
      if (inner) visit(inner, [...path, rt]);
    }
    state.set(rt, 'done');
  };
  for (const rt of runtimes) visit(rt, []);
}

function computeHorizon(rt: Runtime, byKey: Map<string, Runtime>): number {
  if (rt.horizonMs > 0) return rt.horizonMs;
  let inner = 0;
  for (const ref of rt.c.rules) {
    const r = byKey.get(ref);
    if (r) inner = Math.max(inner, computeHorizon(r, byKey));
  }
  rt.horizonMs = 2 * rt.c.timespanMs + inner;
  return rt.horizonMs;
}

/** The field a group-by name (or condition field) denotes in matches of the rule with these refs. */
function fieldFor(c: CompiledCorrelation, name: string, refs: readonly string[]): string {
  const mapping = c.aliases[name];
  if (!mapping) return name;
  for (const ref of refs) {
    const field = mapping[ref];
    if (field !== undefined) return field;
  }
  return name;
}

function alertObservation(c: CompiledCorrelation, alert: CorrelationAlert, completing: Observation): Observation {
  return {
    id: alert.id,
    t: alert.lastTimestamp,
    refs: keysOf(c),
    eventIds: alert.eventIds,
    get: (f) => (Object.hasOwn(alert.groupBy, f) ? alert.groupBy[f] : completing.get(f)),
  };
}

function alertId(correlationId: string, groupKey: string, completingId: string): string {
  return createHash('sha256')
    .update(JSON.stringify(['vigil.correlation.v1', correlationId, groupKey, completingId]))
    .digest('hex');
}

function satisfies(ops: CompiledCorrelation['condition']['ops'], v: number): boolean {
  return (
    (ops.gt === undefined || v > ops.gt) &&
    (ops.gte === undefined || v >= ops.gte) &&
    (ops.lt === undefined || v < ops.lt) &&
    (ops.lte === undefined || v <= ops.lte) &&
    (ops.eq === undefined || v === ops.eq) &&
    (ops.neq === undefined || v !== ops.neq)
  );
}

function canonical(v: FieldValue): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function numeric(v: FieldValue | undefined): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'string' && NUMERIC.test(v)) {
    const n = Number(v);
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}

/** Unique base event ids of the window in event-time order; the newest MAX_EVENT_IDS, completing ones kept. */
function triggeringEventIds(window: readonly Entry[], completing: readonly string[]): string[] {
  const ordered: string[] = [];
  const seen = new Set<string>();
  for (const e of window) {
    for (const id of e.eventIds) {
      if (!seen.has(id)) {
        seen.add(id);
        ordered.push(id);
      }
    }
  }
  if (ordered.length <= MAX_EVENT_IDS) return ordered;
  const keep = new Set(completing.slice(0, MAX_EVENT_IDS));
  for (let i = ordered.length - 1; i >= 0 && keep.size < MAX_EVENT_IDS; i--) keep.add(ordered[i]);
  return ordered.filter((id) => keep.has(id));
}

function createMetrics(registry: Registry | undefined): Metrics {
  if (!registry) return { evictions() {}, late() {}, alerts() {}, state() {} };
  const evictions = counter(
    registry,
    'vigil_correlation_evictions_total',
    'Correlation groups evicted because the state exceeded maxStateEntries.',
    ['correlation'],
  );
  const late = counter(
    registry,
    'vigil_correlation_late_matches_total',
    'Matches ignored by a correlation because they were older than its window.',
    ['correlation'],
  );
  const alerts = counter(registry, 'vigil_correlation_alerts_total', 'Correlation alerts produced.', ['correlation']);
  const state = gauge(registry, 'vigil_correlation_state_entries', 'Matches retained in correlation windows.');
  return {
    evictions: (correlation, n) => evictions.inc({ correlation }, n),
    late: (correlation) => late.inc({ correlation }),
    alerts: (correlation) => alerts.inc({ correlation }),
    state: (n) => state.set(n),
  };
}
