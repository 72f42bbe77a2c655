import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { VigilError } from './errors.ts';

type MetricClass<M> = new (cfg: {
  name: string;
  help: string;
  labelNames: readonly string[];
  registers: Registry[];
  buckets?: number[];
  collect?: () => void | Promise<void>;
}) => M;

/**
 * Returns the metric registered under `name`, creating it on first use, so components that share a
 * metric (every intake counts `vigil_intake_events_received_total`) share one instance. Throws if the
 * name is taken by a metric of another type or other labels.
 */
function shared<M extends object>(
  registry: Registry,
  kind: MetricClass<M>,
  name: string,
  help: string,
  labelNames: readonly string[],
  buckets?: number[],
  collect?: () => void | Promise<void>,
): M {
  const existing = registry.getSingleMetric(name);
  if (existing === undefined) return new kind({ name, help, labelNames, registers: [registry], buckets, collect });
  // prom-client keeps the label names on the instance without declaring them in its types.
  const existingLabels = (existing as unknown as { labelNames?: readonly string[] }).labelNames ?? [];
  const sameLabels = existingLabels.length === labelNames.length && labelNames.every((l) => existingLabels.includes(l));
  if (!(existing instanceof kind) || !sameLabels) {
    throw new VigilError(
      'metric_conflict',
      `metric ${name} is already registered as ${existing.constructor.name} with labels ` +
        `${existingLabels.join(',') || 'none'}; expected ${kind.name} with labels ${labelNames.join(',') || 'none'}`,
    );
  }
  return existing as M;
}

/** A shared counter (see `shared`). */
export function counter<L extends string = string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[] = [],
): Counter<L> {
  return shared(registry, Counter, name, help, labelNames) as Counter<L>;
}

/**
 * A shared gauge (see `shared`). `collect` runs at every scrape, before the value is read (a gauge read
 * from elsewhere: the engine's own tables); only the first registration's is kept.
 */
export function gauge<L extends string = string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[] = [],
  collect?: (this: Gauge<L>) => void | Promise<void>,
): Gauge<L> {
  return shared(registry, Gauge, name, help, labelNames, undefined, collect as () => void | Promise<void>) as Gauge<L>;
}

/** A shared histogram (see `shared`); buckets are in seconds. */
export function histogram<L extends string = string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[] = [],
  buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
): Histogram<L> {
  return shared(registry, Histogram, name, help, labelNames, buckets) as Histogram<L>;
}
