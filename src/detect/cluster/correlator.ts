/**
 * Correlation in a cluster. Detect nodes share the event stream's `detect` consumer and run the Sigma rules
 * on their share; a match of a rule that a correlation references is published to the matches stream under
 * its partition (`<subject>.<p>`, p = hash of tenant and correlation component). Each partition is owned
 * by one node through an etcd lease; the owner feeds the partition's matches, in stream order, to its
 * correlation engines and publishes the alerts with the partition's fencing token.
 *
 * Takeover: the new owner first publishes a fence (its token) to the alert log, so alerts of a stale owner
 * are refused from then on. The partition's durable consumer `corr-<p>` has acknowledged every match the
 * previous owner finished (its alerts were published before the ack). The new owner replays, without
 * alerting, the matches stored from (time of that last match - replay horizon) up to it, which rebuilds the
 * windows exactly (engine.ts, 6), then re-creates the consumer at the next match: what follows is
 * evaluated in order, and alerts the previous owner had already published come out with the same ids.
 */
import { createHash } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { OwnershipListener, PartitionManager } from '../../cluster/index.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { NormalizedEvent } from '../../lib/event.ts';
import type { Logger } from '../../lib/logger.ts';
import { counter, gauge, histogram } from '../../lib/metrics.ts';
import type { AlertStore } from '../alerts/index.ts';
import {
  type CorrelationEngine,
  type SigmaMatch as CorrelationMatch,
  createCorrelationEngine,
  type MatchedRule,
} from '../correlation/index.ts';
import { correlationAlert, hostOf, suppressorOf } from '../evaluate.ts';
import type { CompiledRuleSet } from '../rule-set.ts';
import { type CorrelationComponents, correlationComponents } from './components.ts';
import type { RecordConsumer, RecordStream, StreamRecord } from './records.ts';
import { retry, shouldLog } from '../../lib/retry.ts';

/**
 * Stream time and event time differ (late events, queueing): the replay starts this much earlier than the
 * horizon asks, so that a window's matches stored a little out of event-time order are still rebuilt.
 */
const REPLAY_SLACK_MS = 60_000;

/** A routed match: what the owner needs to evaluate it. */
interface MatchRecord {
  tenant: string;
  component: string;
  rule: MatchedRule;
  event: NormalizedEvent;
}

export interface PartitionedCorrelation extends OwnershipListener {
  /** Routes matches to their partitions: resolves once the matches stream has them all. */
  publish(matches: readonly CorrelationMatch[]): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface Worker {
  token: number;
  engines: Map<string, CorrelationEngine>;
  consumer?: RecordConsumer;
  lost: boolean;
  /** Aborted when the partition is lost: a takeover waiting to retry gives up. */
  halt: AbortController;
}

export function createPartitionedCorrelation(deps: {
  records: RecordStream;
  alerts: AlertStore;
  partitions: PartitionManager;
  ruleSet: () => CompiledRuleSet;
  maxCorrelationState: number;
  metrics: Registry;
  logger: Logger;
}): PartitionedCorrelation {
  const { records, partitions } = deps;
  const log = deps.logger.child({ component: 'correlation-partitions' });
  const workers = new Map<number, Worker>();
  let components: { set: CompiledRuleSet; value: CorrelationComponents } | undefined;
  let unsubscribe: (() => void) | undefined;
  const routed = counter(deps.metrics, 'vigil_correlation_matches_routed_total', 'Matches sent to their partition.');
  const replayed = counter(
    deps.metrics,
    'vigil_correlation_matches_replayed_total',
    'Matches replayed to rebuild a partition after a takeover.',
  );
  const replaySeconds = histogram(
    deps.metrics,
    'vigil_correlation_takeover_seconds',
    'Time from acquiring a partition to evaluating its new matches (fence, replay, consumer).',
  );
  const owned = gauge(deps.metrics, 'vigil_correlation_partitions_active', 'Partitions this node correlates now.');

  const componentsOf = (set: CompiledRuleSet) => {
    if (components?.set !== set) components = { set, value: correlationComponents(set.correlations) };
    return components.value;
  };

  const engineFor = (w: Worker, set: CompiledRuleSet, tenant: string, component: string) => {
    const key = `${set.correlationDigest}\u0000${tenant}\u0000${component}`;
    let engine = w.engines.get(key);
    if (!engine) {
      const list = componentsOf(set).correlations(component);
      if (list.length === 0) return undefined;
      engine = createCorrelationEngine(list, {
        maxStateEntries: deps.maxCorrelationState,
        metrics: deps.metrics,
        fieldValue: (event, field) => set.engine.fieldValue(event, field),
      });
      w.engines.set(key, engine);
    }
    return engine;
  };

  /** Feeds records to the worker's engines; returns the alerts they completed. */
  const feed = (p: number, w: Worker, batch: StreamRecord<MatchRecord>[]) => {
    const set = deps.ruleSet();
    const created = Date.now();
    const out = [];
    for (const r of batch) {
      const { tenant, component, rule, event } = r.value;
      const engine = engineFor(w, set, tenant, component);
      if (!engine) continue;
      for (const a of engine.onMatch({ rule, event })) {
        out.push({
          ...correlationAlert(tenant, a, created, hostOf(event)),
          partition: String(p),
          fencingToken: w.token,
        });
      }
    }
    return out;
  };

  const takeOver = async (p: number, w: Worker) => {
    const t0 = performance.now();
    const durable = `corr-${p}`;
    const subject = `${records.subject}.${p}`;
    // Every alert of an older owner published after this is refused by every replica.
    await deps.alerts.fence(String(p), w.token);
    const floor = (await records.ackFloor(durable)) ?? 0;
    const resumeAt = floor + 1;
    if (floor > 0) {
      const lastTime = (await records.timeOf(floor)) ?? Date.now();
      const horizon = suppressorOf(deps.ruleSet()).replayHorizonMs() + REPLAY_SLACK_MS;
      let n = 0;
      const batch: StreamRecord<MatchRecord>[] = [];
      await records.replay<MatchRecord>(subject, lastTime - horizon, floor, (r) => {
        batch.push(r);
        n++;
      });
      // The alerts of these matches were published by the previous owner before it acknowledged them.
      feed(p, w, batch);
      replayed.inc(n);
      log.info({ partition: p, replayed: n, ack_floor: floor }, 'Rebuilt a partition from its matches.');
    }
    if (w.lost) return;
    // Re-created at the first unfinished match: deliveries pending for the previous owner are dropped with
    // the old consumer, so matches come in stream order from here.
    await records.deleteConsumer(durable);
    if (w.lost) return;
    w.consumer = records.consume<MatchRecord>(
      durable,
      async (batch) => {
        if (w.lost || partitions.tokenOf(p) !== w.token) throw new Error(`partition ${p} is no longer owned`);
        const alerts = feed(p, w, batch);
        if (alerts.length > 0) await deps.alerts.save(alerts);
      },
      { filterSubject: subject, startSeq: resumeAt, ackWaitMs: 5000 },
    );
    replaySeconds.observe((performance.now() - t0) / 1000);
  };

  return {
    async publish(matches) {
      if (matches.length === 0) return;
      const comps = componentsOf(deps.ruleSet());
      const sends: Promise<number>[] = [];
      for (const m of matches) {
        const refs = m.rule.name ? [m.rule.id, m.rule.name] : [m.rule.id];
        for (const component of comps.fedBy(refs)) {
          const tenant = m.event.tenant;
          const p = partitions.partitionOf(tenant, component);
          const record: MatchRecord = { tenant, component, rule: ruleOf(m.rule), event: m.event };
          const id = createHash('sha256')
            .update(JSON.stringify([tenant, component, m.rule.id, m.event.id]))
            .digest('hex')
            .slice(0, 32);
          sends.push(records.publish(`${records.subject}.${p}`, record, `m:${id}`));
          routed.inc();
        }
      }
      await Promise.all(sends);
    },
    onAcquire(p, token) {
      const w: Worker = { token, engines: new Map(), lost: false, halt: new AbortController() };
      workers.set(p, w);
      owned.set(workers.size);
      // Retried until it succeeds or the partition is lost (then a failure is the new owner's to finish).
      retry(() => takeOver(p, w), {
        backoff: { initialMs: 100, maxMs: 2000 },
        signal: w.halt.signal,
        onRetry: (err, attempt) => {
          if (shouldLog(attempt))
            log.warn({ partition: p, err: errorMessage(err), attempt }, 'Taking over a partition failed; retrying.');
        },
      }).catch((err: unknown) => {
        if (!w.lost) log.error({ partition: p, err: errorMessage(err) }, 'Taking over a partition stopped.');
      });
    },
    async onLose(p) {
      const w = workers.get(p);
      if (!w) return;
      w.lost = true;
      w.halt.abort();
      workers.delete(p);
      owned.set(workers.size);
      await w.consumer?.stop();
    },
    async start() {
      // Early creation only: a takeover ensures the stream again, and retries until it can.
      await records
        .ensure()
        .catch((err: unknown) =>
          log.warn({ err: errorMessage(err) }, 'Creating the correlation record stream failed; takeovers retry it.'),
        );
      unsubscribe = partitions.subscribe(this);
    },
    async stop() {
      unsubscribe?.();
      await Promise.all([...workers.keys()].map((p) => this.onLose(p)));
    },
  };
}

function ruleOf(r: MatchedRule): MatchedRule {
  return { id: r.id, ...(r.name ? { name: r.name } : {}), title: r.title, level: r.level, tags: [...r.tags] };
}
