/**
 * Vigil watches itself: the node's own health (replica and consumer lag, spool, lease losses, failovers,
 * backup age, disk, refused intake, peer site lag) becomes events of the logsource `product: vigil,
 * service: health`, published on the node's bus like any event, so they are stored, searched and detected;
 * the starter rules of `src/detect/starter/rules/vigil/` turn a stale backup or a lagging replica into an
 * alert and an incident. No intake takes that logsource from a client (src/intake/reserved.ts).
 */
import type { Registry } from 'prom-client';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { settleBy } from '../lib/deadline.ts';
import { errorMessage } from '../lib/errors.ts';
import type { FieldValue, NormalizedEvent } from '../lib/event.ts';
import type { Logger } from '../lib/logger.ts';
import { counter } from '../lib/metrics.ts';
import { newEventId } from '../parse/index.ts';
import type { SelfmonConfig } from './config.ts';
import { createSignalReader, type HealthSample, type SignalSources } from './signals.ts';

export { type SelfmonConfig, selfmonConfigSchema } from './config.ts';
export { type HealthCheck, type HealthSample, magnitude, type PeerLag, type SpoolFigures } from './signals.ts';

/** The logsource of health events; only Vigil emits it. */
export const HEALTH_LOGSOURCE = Object.freeze({ product: 'vigil', service: 'health' });

/** The `source` of health events (the intake field of events that came from outside). */
const SOURCE = 'selfmon';

/**
 * Most events of one check: the signals are a fixed list (intake rejections by source and reason, a few
 * consumers and peers), so this is never reached in practice; it bounds a registry that grows labels.
 */
export const MAX_EVENTS_PER_CHECK = 100;

/** What self-monitoring reads and where its events go. */
export interface SelfmonDeps extends Omit<SignalSources, 'metrics'> {
  /** The node's bus: resolves once the events are committed. */
  publish(events: NormalizedEvent[]): Promise<void>;
  /** The tenant whose pipeline takes the events. */
  tenant: string;
  nodeId: string;
  /** `cluster.site` of a two-site deployment. */
  site?: string;
  metrics: Registry;
  logger: Logger;
  now?: () => number;
}

/** The self-monitoring component; `check()` runs one reading at once (tests, and the loop). */
export interface Selfmon extends Component {
  check(): Promise<number>;
}

/**
 * Creates self-monitoring: from start, the signals are read every `check_interval_ms`; a sample is sent when
 * its level changed or a counter grew, and every `interval_ms` anyway. What was sent is remembered only once
 * the bus committed it, so a failed publish is sent again at the next check (with the counts it carried).
 */
export function createSelfmon(config: SelfmonConfig, deps: SelfmonDeps): Selfmon {
  const now = deps.now ?? Date.now;
  const log = deps.logger.child({ component: 'selfmon' });
  const emitted = counter(deps.metrics, 'vigil_selfmon_events_total', 'Health events this node published.', ['check']);
  const failures = counter(
    deps.metrics,
    'vigil_selfmon_failures_total',
    'Health checks that could not read a signal or publish their events.',
  );
  let reader: ReturnType<typeof createSignalReader> | undefined;
  /** Per sample key: when and at which level it was last sent. */
  const sent = new Map<string, { at: number; level?: string }>();
  /** Per counter key: the total the last sent event counted up to. */
  const baseline = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<unknown> | undefined;
  let running = false;
  let lastFailure: string | undefined;

  const common = (sample: HealthSample): Record<string, FieldValue> => ({
    'event.kind': 'metric',
    'event.module': 'vigil',
    'event.dataset': 'vigil.health',
    'host.name': deps.nodeId,
    'vigil.health.check': sample.check,
    ...(deps.site ? { 'vigil.health.site': deps.site } : {}),
    'vigil.health.interval_seconds': Math.round(config.interval_ms / 1000),
  });

  function toEvent(sample: HealthSample, message: string, extra: Record<string, FieldValue>, at: number) {
    const fields: Record<string, FieldValue> = { ...common(sample), ...sample.fields, ...extra, message };
    const event: NormalizedEvent = {
      id: newEventId(at),
      timestamp: at,
      ingested: at,
      tenant: deps.tenant,
      source: SOURCE,
      layout: 'json',
      logsource: { ...HEALTH_LOGSOURCE },
      raw: JSON.stringify(fields),
      fields,
    };
    return event;
  }

  async function check(): Promise<number> {
    const at = now();
    reader ??= createSignalReader({ ...deps, metrics: deps.metrics }, at);
    const { samples, errors } = await reader.read(at);
    if (errors.length > 0) {
      failures.inc();
      lastFailure = `signals unread: ${errors.join('; ')}`;
      log.warn({ errors }, 'Some health signals could not be read; the others are sent.');
    }
    const due: { sample: HealthSample; event: NormalizedEvent }[] = [];
    for (const s of samples) {
      if (due.length >= MAX_EVENTS_PER_CHECK) break;
      const last = sent.get(s.key);
      if (s.counter) {
        const count = s.counter.total - (baseline.get(s.key) ?? 0);
        if (count <= 0) continue;
        const extra = { 'vigil.health.count': count, 'vigil.health.total': s.counter.total };
        due.push({ sample: s, event: toEvent(s, s.counter.describe(count), extra, at) });
      } else if (!last || last.level !== s.level || at - last.at >= config.interval_ms) {
        due.push({ sample: s, event: toEvent(s, s.message ?? s.check, {}, at) });
      }
    }
    if (due.length === 0) return 0;
    try {
      await deps.publish(due.map((d) => d.event));
    } catch (err) {
      // Nothing is marked sent: the same samples (and counts) go again at the next check.
      failures.inc();
      lastFailure = `health events not published: ${errorMessage(err)}`;
      throw err;
    }
    for (const { sample } of due) {
      sent.set(sample.key, { at, level: sample.level });
      if (sample.counter) baseline.set(sample.key, sample.counter.total);
      emitted.inc({ check: sample.check });
    }
    if (errors.length === 0) lastFailure = undefined;
    return due.length;
  }

  function schedule(delayMs: number): void {
    if (!running) return;
    timer = setTimeout(() => {
      current = check()
        .catch((err: unknown) => {
          // Counted and kept for health by check(); what was not sent goes again at the next check.
          log.warn(
            { err: errorMessage(err) },
            'Health events could not be published; they are sent at the next check.',
          );
        })
        .finally(() => {
          current = undefined;
          schedule(config.check_interval_ms);
        });
    }, delayMs);
    timer.unref();
  }

  return {
    name: 'selfmon',
    async start() {
      running = true;
      // The first reading right away: the node says how it is as soon as it runs.
      schedule(0);
      log.info(
        { tenant: deps.tenant, check_interval_ms: config.check_interval_ms, interval_ms: config.interval_ms },
        'Vigil sends its own health as events (product: vigil, service: health).',
      );
    },
    async stop(deadline) {
      running = false;
      if (timer) clearTimeout(timer);
      await settleBy(current, deadline);
    },
    health(): ComponentHealth {
      // Self-monitoring never makes the node unready: a problem is a warning in the detail.
      return lastFailure ? { ok: true, detail: `warning: ${lastFailure}` } : { ok: true };
    },
    check,
  };
}
