/**
 * Where an intake gap was spent, read from the nodes' own histograms: ingest answers slower than a second
 * and event-log publishes slower than a second, by where they were committed (JetStream or the local
 * spool). Counted between two readings of every node's /metrics; a node restarted in between (its counters
 * back to zero) counts from zero.
 */
import type { TestDevCluster as DevCluster } from '../harness/dev-cluster.ts';

export interface SlowCounts {
  ingest_answers: number;
  ingest_answers_over_1s: number;
  publishes_over_1s_jetstream: number;
  publishes_over_1s_spool: number;
  /** Longest event-loop stall of the node between the two readings (the histogram resets on each scrape). */
  event_loop_delay_max_ms: number;
}

/** A reading of one node: its counts and when its process started (a restart zeroes the counters). */
interface NodeReading extends SlowCounts {
  started: number;
}

type Reading = Map<string, NodeReading>;

/** Sum of the samples of `name` whose labels include every one of `want`. */
const metric = (text: string, name: string, want: Record<string, string>): number => {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const close = line.lastIndexOf('}');
    const labels = new Map(
      [...line.slice(name.length + 1, Math.max(close, name.length)).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [
        m[1],
        m[2],
      ]),
    );
    if (Object.entries(want).every(([k, v]) => labels.get(k) === v))
      sum += Number(line.slice(Math.max(close + 1, name.length)).trim()) || 0;
  }
  return sum;
};

function countsOf(text: string): NodeReading {
  const ingest = { route: '/api/v1/ingest' };
  const total = metric(text, 'vigil_http_request_duration_seconds_count', ingest);
  const published = (via: string) =>
    metric(text, 'vigil_bus_publish_seconds_count', { via }) -
    metric(text, 'vigil_bus_publish_seconds_bucket', { via, le: '1' });
  return {
    ingest_answers: total,
    ingest_answers_over_1s: total - metric(text, 'vigil_http_request_duration_seconds_bucket', { ...ingest, le: '1' }),
    publishes_over_1s_jetstream: published('jetstream'),
    publishes_over_1s_spool: published('spool'),
    event_loop_delay_max_ms: Math.round(metric(text, 'vigil_process_nodejs_eventloop_lag_max_seconds', {}) * 1000),
    started: metric(text, 'vigil_process_process_start_time_seconds', {}),
  };
}

/** Reads every node's counts now; a node that does not answer is left out. */
export async function readSlowCounts(dc: DevCluster): Promise<Reading> {
  const out: Reading = new Map();
  await Promise.all(
    dc.nodes.map(async (n) => {
      const res = await dc.api(n.name, 'GET', '/metrics').catch(() => undefined);
      if (res?.status === 200 && typeof res.body === 'string') out.set(n.name, countsOf(res.body));
    }),
  );
  return out;
}

/** Per node, what happened between two readings. */
export function slowBetween(before: Reading, after: Reading): Record<string, SlowCounts> {
  const out: Record<string, SlowCounts> = {};
  for (const [node, a] of after) {
    const b = before.get(node);
    const restarted = !b || a.started !== b.started;
    const delta = (k: keyof SlowCounts) => (restarted ? a[k] : a[k] - b[k]);
    out[node] = {
      ingest_answers: delta('ingest_answers'),
      ingest_answers_over_1s: delta('ingest_answers_over_1s'),
      publishes_over_1s_jetstream: delta('publishes_over_1s_jetstream'),
      publishes_over_1s_spool: delta('publishes_over_1s_spool'),
      event_loop_delay_max_ms: a.event_loop_delay_max_ms,
    };
  }
  return out;
}
