import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

type Labels = readonly string[];

/** Returns the counter registered under `name`, creating it on first use (components may share names). */
export function counter(registry: Registry, name: string, help: string, labelNames: Labels = []): Counter<string> {
  return (
    (registry.getSingleMetric(name) as Counter<string> | undefined) ??
    new Counter({ name, help, labelNames, registers: [registry] })
  );
}

/** Returns the gauge registered under `name`, creating it on first use. */
export function gauge(registry: Registry, name: string, help: string, labelNames: Labels = []): Gauge<string> {
  return (
    (registry.getSingleMetric(name) as Gauge<string> | undefined) ??
    new Gauge({ name, help, labelNames, registers: [registry] })
  );
}

/** Returns the histogram registered under `name`, creating it on first use; buckets are in seconds. */
export function histogram(
  registry: Registry,
  name: string,
  help: string,
  labelNames: Labels = [],
  buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
): Histogram<string> {
  return (
    (registry.getSingleMetric(name) as Histogram<string> | undefined) ??
    new Histogram({ name, help, labelNames, buckets, registers: [registry] })
  );
}
