import type { Registry } from 'prom-client';
import type { NormalizedEvent } from '../lib/event.ts';
import { type Alert, alertId } from './alerts/index.ts';
import {
  type CorrelationAlert,
  type CorrelationEngine,
  type SigmaMatch as CorrelationMatch,
  createCorrelationEngine,
} from './correlation/index.ts';
import type { CompiledRuleSet } from './rule-set.ts';
import type { SigmaMatch } from './sigma/index.ts';

/** Builds alerts from Sigma and correlation matches; ids are deterministic so replays dedupe. */
export function ruleAlert(event: NormalizedEvent, m: SigmaMatch, created: number): Alert {
  return {
    id: alertId(['rule', m.rule.id, event.tenant, event.id]),
    timestamp: event.timestamp,
    created,
    tenant: event.tenant,
    kind: 'rule',
    rule: { id: m.rule.id, title: m.rule.title, level: m.rule.level, tags: [...m.rule.tags] },
    host: hostOf(event),
    status: 'new',
    matched: m.matchedFields,
    eventIds: [event.id],
    partition: 'local',
    fencingToken: 0,
  };
}

export function correlationAlert(tenant: string, a: CorrelationAlert, created: number, host: string): Alert {
  return {
    id: alertId(['correlation', tenant, a.id]),
    timestamp: a.lastTimestamp,
    created,
    tenant,
    kind: 'correlation',
    rule: {
      id: a.correlation.id,
      title: a.correlation.title,
      level: a.correlation.level,
      tags: [...a.correlation.tags],
    },
    host,
    status: 'new',
    matched: { ...a.groupBy, ...(a.value === undefined ? {} : { 'correlation.value': a.value }) },
    eventIds: a.eventIds,
    partition: 'local',
    fencingToken: 0,
  };
}

/** What one evaluation produced. */
export interface Evaluation {
  alerts: Alert[];
  events: number;
  matches: number;
}

/**
 * Runs a rule set over events (global rules on each, a tenant's rules on its own events only; every alert
 * carries the event's tenant): Sigma matches become alerts (unless a correlation with `generate: false`
 * withholds them) and feed the correlations of the event's tenant, kept in `correlators`.
 */
export function evaluateEvents(
  batch: Iterable<NormalizedEvent>,
  set: CompiledRuleSet,
  correlators: Map<string, CorrelationEngine>,
  opts: {
    maxCorrelationState: number;
    metrics?: Registry;
    /**
     * Cluster mode: matches of rules that correlations reference go here (to their partition's owner)
     * instead of into `correlators`; standalone alerts are still withheld per `generate: false`.
     */
    route?: (match: CorrelationMatch) => void;
  },
): Evaluation {
  const created = Date.now();
  const alerts: Alert[] = [];
  let events = 0;
  let matches = 0;
  const correlator = (tenant: string) => {
    let engine = correlators.get(tenant);
    if (!engine) {
      engine = createCorrelationEngine(set.correlations, {
        maxStateEntries: opts.maxCorrelationState,
        metrics: opts.metrics,
        fieldValue: (event, field) => set.engine.fieldValue(event, field),
      });
      correlators.set(tenant, engine);
    }
    return engine;
  };
  for (const event of batch) {
    events++;
    // Global rules run on every event; a tenant's own rules on that tenant's events only.
    const own = set.tenants.get(event.tenant);
    // Concatenated only when both matched: most events match nothing, and this runs per event.
    const global = set.engine.match(event);
    const mine = own?.engine.match(event);
    const found = !mine || mine.length === 0 ? global : global.length === 0 ? mine : global.concat(mine);
    if (found.length === 0) continue;
    matches += found.length;
    if (opts.route) {
      const suppressor = set.correlations.length > 0 ? suppressorOf(set) : undefined;
      for (const m of found) {
        if (!suppressor?.suppresses(m.rule)) alerts.push(ruleAlert(event, m, created));
        if (suppressor) opts.route({ rule: m.rule, event });
      }
      continue;
    }
    const corr = set.correlations.length > 0 ? correlator(event.tenant) : undefined;
    for (const m of found) {
      if (!corr?.suppresses(m.rule)) alerts.push(ruleAlert(event, m, created));
      if (!corr) continue;
      for (const a of corr.onMatch({ rule: m.rule, event })) {
        alerts.push(correlationAlert(event.tenant, a, created, hostOf(event)));
      }
    }
  }
  return { alerts, events, matches };
}

/** A stateless engine of a rule set, asked only which standalone alerts `generate: false` withholds. */
const suppressors = new WeakMap<CompiledRuleSet, CorrelationEngine>();
export function suppressorOf(set: CompiledRuleSet): CorrelationEngine {
  let engine = suppressors.get(set);
  if (!engine) {
    engine = createCorrelationEngine(set.correlations);
    suppressors.set(set, engine);
  }
  return engine;
}

export function hostOf(event: NormalizedEvent): string {
  const host = event.fields['host.name'];
  return typeof host === 'string' ? host : '';
}
