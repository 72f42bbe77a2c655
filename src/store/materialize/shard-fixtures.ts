/**
 * Fakes shared by the shard replica tests (sharded.test.ts, sharded-sole.test.ts): a stream fed by hand, a
 * shard map set by hand, and events whose ids fall in a given shard. Node n1 is the node under test.
 */
import type { EventStream, StreamBatchHandler, StreamConsumeOptions } from '../../bus/jetstream/index.ts';
import { type ReplicaState, type ShardMap, type ShardMapService, shardOf } from '../../cluster/shards/index.ts';
import type { NormalizedEvent } from '../../lib/event.ts';

/** A stream whose consumers the test feeds by hand, by consumer name. */
export function fakeStream() {
  const handlers = new Map<string, StreamBatchHandler>();
  const subscribed: { name: string; opts?: StreamConsumeOptions }[] = [];
  const deleted: string[] = [];
  const stream: EventStream = {
    subscribeStream(name, h, opts) {
      handlers.set(name, h);
      subscribed.push({ name, opts });
      return { name, stop: async () => void handlers.delete(name) };
    },
    async streamPosition() {
      return { stream: 'E', created: 'c1', firstSeq: 1, lastSeq: 0, messages: 0 };
    },
    async consumerPosition() {
      return undefined;
    },
    async deleteConsumer(name) {
      deleted.push(name);
    },
    shardFilter: (shard) => `E.s${shard}.>`,
  };
  return { stream, handlers, subscribed, deleted };
}

/** A shard map the test sets by hand. */
export function fakeMap(S: number) {
  let map: ShardMap = { revision: 0, shards: S, replicas: 1, assignment: [] };
  const listeners = new Set<(m: ShardMap) => void>();
  const reports: { lags: Map<number, number>; since: Map<number, number> }[] = [];
  const service: ShardMapService = {
    name: 'fake-map',
    shards: S,
    current: () => map,
    onChange(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    report: (lags, since) => void reports.push({ lags: new Map(lags), since: new Map(since) }),
    isCoordinator: () => false,
    reconcile: async () => undefined,
    start: async () => undefined,
    stop: async () => undefined,
    health: () => ({ ok: true }),
  };
  return {
    service,
    reports,
    set(revision: number, mine: number[]) {
      this.setStates(revision, Object.fromEntries(mine.map((s) => [s, 'serving' as const])));
    },
    /** n1 holds the shards of `states` in those states; n2 serves the others. */
    setStates(revision: number, states: Record<number, ReplicaState>) {
      map = {
        revision,
        shards: S,
        replicas: 1,
        assignment: Array.from({ length: S }, (_, s) => ({
          shard: s,
          replicas: [{ node: states[s] ? 'n1' : 'n2', state: states[s] ?? 'serving', lag_messages: 0 }],
        })),
      };
      for (const l of listeners) l(map);
    },
  };
}

/** `count` events of `tenant` whose ids (`<prefix>-<i>`, the tenant by default) fall in `shard` of `S`. */
export function eventsOf(tenant: string, shard: number, count: number, S: number, prefix = tenant): NormalizedEvent[] {
  const out: NormalizedEvent[] = [];
  for (let i = 0; out.length < count; i++) {
    const id = `${prefix}-${i}`;
    if (shardOf(id, S) !== shard) continue;
    out.push({
      id,
      timestamp: 1700000000000 + i,
      ingested: Date.now(),
      tenant,
      source: 'http',
      layout: 'json',
      raw: `event ${i}`,
      fields: {},
    });
  }
  return out;
}
