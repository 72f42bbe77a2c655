import type { Registry } from 'prom-client';
import { readDiskUsage } from '../lib/disk-metrics.ts';
import type { FieldValue } from '../lib/event.ts';

/** The signals a health event reports, in `vigil.health.check`. */
export type HealthCheck =
  | 'consumer_lag'
  | 'spool'
  | 'lease_loss'
  | 'failover'
  | 'backup'
  | 'disk'
  | 'intake_rejected'
  | 'site_lag';

/** One reading of one signal, before it becomes an event. */
export interface HealthSample {
  check: HealthCheck;
  /** Tells samples of one check apart (the consumer, the intake source and reason, the peer site). */
  key: string;
  /** Fields of the event besides the common ones (`vigil.health.*`). */
  fields: Record<string, FieldValue>;
  /**
   * Gauges: a coarse state (the order of magnitude of a lag, the tens of a disk percentage, stale or not).
   * A new level is sent at the next check; the same level again only every `interval_ms`.
   */
  level?: string;
  message?: string;
  /**
   * Counters (lease losses, failovers, refused events): the process total. The event reports what was added
   * since the last sent one (`vigil.health.count`), and is sent only when that is more than 0.
   */
  counter?: { total: number; describe(count: number): string };
}

/** The spool figures of the JetStream bus (src/bus/spool). */
export interface SpoolFigures {
  events: number;
  batches: number;
  bytes: number;
  oldestAt?: number;
}

/** The peer site's copy into this site's events stream (src/bus/jetstream `replication()`). */
export interface PeerLag {
  name: string;
  lag: number;
  activeAgoMs?: number;
}

/** Where the signals are read; a source the node does not have is left out (no spool on the in-process bus). */
export interface SignalSources {
  metrics: Registry;
  dataDir: string;
  spool?: () => SpoolFigures;
  peerLags?: () => Promise<PeerLag[]>;
  /** The data folder's file system (default: statfs of `dataDir`). */
  readDisk?: () => { ratio: number; free: number } | undefined;
  /** `backup.schedule` when the node runs backups with one: its text and its usual period at a time. */
  backupSchedule?: { text: string; periodMs(at: number): number };
}

/** The order of magnitude of a non-negative count: `0`, `1` (1-9), `10` (10-99)... */
export function magnitude(n: number): string {
  return n <= 0 ? '0' : String(10 ** Math.floor(Math.log10(n)));
}

const h = (name: string) => `vigil.health.${name}`;

/** A metric's current values (collect callbacks run), or none when this node does not register it. */
async function values(metrics: Registry, name: string): Promise<{ value: number; labels: Record<string, string> }[]> {
  const metric = metrics.getSingleMetric(name);
  if (!metric) return [];
  const got = await metric.get();
  return got.values.map((v) => ({ value: v.value, labels: v.labels as Record<string, string> }));
}

/**
 * Reads every signal of the node once. `startedAt` is when self-monitoring started: a node that never took a
 * backup is overdue two periods after it, as its backup health says.
 */
export function createSignalReader(src: SignalSources, startedAt: number) {
  /** The spool's events at the last reading, to tell a growing spool from one draining. */
  let lastSpoolEvents: number | undefined;

  async function consumerLag(): Promise<HealthSample[]> {
    const out: HealthSample[] = [];
    for (const { value } of await values(src.metrics, 'vigil_store_replica_lag_messages')) {
      out.push({
        check: 'consumer_lag',
        key: 'consumer_lag:store',
        level: magnitude(value),
        fields: { [h('consumer')]: 'store', [h('lag_messages')]: value },
        message: `The store replica is ${value} messages behind the event stream.`,
      });
    }
    for (const { value, labels } of await values(src.metrics, 'vigil_alerts_consumer_backlog_alerts')) {
      const consumer = labels.consumer ?? 'alerts';
      out.push({
        check: 'consumer_lag',
        key: `consumer_lag:${consumer}`,
        level: magnitude(value),
        fields: { [h('consumer')]: consumer, [h('lag_messages')]: value },
        message: `The ${consumer} consumer of the alert log has ${value} alerts not yet committed.`,
      });
    }
    return out;
  }

  function spool(now: number): HealthSample[] {
    if (!src.spool) return [];
    const s = src.spool();
    const age = s.oldestAt === undefined ? 0 : Math.max(0, Math.round((now - s.oldestAt) / 1000));
    const growing = lastSpoolEvents !== undefined && s.events > lastSpoolEvents;
    lastSpoolEvents = s.events;
    return [
      {
        check: 'spool',
        key: 'spool',
        level: `${magnitude(s.events)}:${growing}`,
        fields: {
          [h('spool.events')]: s.events,
          [h('spool.batches')]: s.batches,
          [h('spool.bytes')]: s.bytes,
          [h('spool.oldest_age_seconds')]: age,
          [h('spool.growing')]: growing,
        },
        message:
          s.events === 0
            ? 'The local spool is empty: publishes reach JetStream.'
            : `The local spool holds ${s.events} events not yet forwarded to JetStream, the oldest for ${age} s${growing ? ', and it is growing' : ''}.`,
      },
    ];
  }

  async function counterSamples(
    check: HealthCheck,
    name: string,
    describe: (count: number, labels: Record<string, string>) => string,
    keyOf: (labels: Record<string, string>) => string = () => check,
    fieldsOf: (labels: Record<string, string>) => Record<string, FieldValue> = () => ({}),
  ): Promise<HealthSample[]> {
    return (await values(src.metrics, name)).map(({ value, labels }) => ({
      check,
      key: keyOf(labels),
      fields: fieldsOf(labels),
      counter: { total: value, describe: (count) => describe(count, labels) },
    }));
  }

  async function backup(now: number): Promise<HealthSample[]> {
    const [gauge] = await values(src.metrics, 'vigil_backup_last_success_timestamp_seconds');
    if (!gauge) return [];
    const lastAt = gauge.value * 1000;
    const schedule = src.backupSchedule;
    // As the backup component's health: overdue past twice the schedule's period, counted from the node's
    // start when it never took one. Without a schedule backups are on request and never overdue.
    const stale = schedule !== undefined && now - (lastAt || startedAt) > 2 * schedule.periodMs(now);
    const last = lastAt > 0 ? new Date(lastAt).toISOString() : 'never';
    return [
      {
        check: 'backup',
        key: 'backup',
        level: String(stale),
        fields: {
          [h('backup.last_success')]: lastAt > 0 ? last : null,
          [h('backup.age_seconds')]: lastAt > 0 ? Math.round((now - lastAt) / 1000) : null,
          [h('backup.schedule')]: schedule?.text ?? '',
          [h('backup.stale')]: stale,
        },
        message: stale
          ? `The last good backup (${last}) is older than twice the backup schedule (${schedule?.text}).`
          : `The last good backup was taken ${last === 'never' ? 'never' : `at ${last}`}.`,
      },
    ];
  }

  function disk(): HealthSample[] {
    const usage = src.readDisk ? src.readDisk() : readDiskUsage(src.dataDir);
    if (!usage) return [];
    const percent = Math.round(usage.ratio * 1000) / 10;
    return [
      {
        check: 'disk',
        key: 'disk',
        level: String(Math.floor(percent / 10)),
        fields: { [h('disk.used_percent')]: percent, [h('disk.free_bytes')]: usage.free },
        message: `The data folder's file system is ${percent}% full (${usage.free} bytes free).`,
      },
    ];
  }

  async function siteLag(): Promise<HealthSample[]> {
    if (!src.peerLags) return [];
    return (await src.peerLags()).map((l) => {
      const seconds = l.lag === 0 ? 0 : l.activeAgoMs === undefined ? null : Math.round(l.activeAgoMs / 1000);
      return {
        check: 'site_lag',
        key: `site_lag:${l.name}`,
        level: `${magnitude(l.lag)}:${magnitude(seconds ?? 0)}`,
        fields: { [h('site.source')]: l.name, [h('lag_messages')]: l.lag, [h('lag_seconds')]: seconds },
        message: `This site's events stream is ${l.lag} events behind ${l.name}${seconds === null ? '' : ` (${seconds} s)`}.`,
      };
    });
  }

  return {
    /** One reading of every signal; a source that fails is left out and its error reported with the others. */
    async read(now: number): Promise<{ samples: HealthSample[]; errors: string[] }> {
      const errors: string[] = [];
      const guard = async (what: string, f: () => HealthSample[] | Promise<HealthSample[]>) => {
        try {
          return await f();
        } catch (err) {
          errors.push(`${what}: ${(err as Error).message}`);
          return [];
        }
      };
      const parts = await Promise.all([
        guard('consumer lag', consumerLag),
        guard('spool', () => spool(now)),
        guard('lease losses', () =>
          counterSamples(
            'lease_loss',
            'vigil_cluster_lease_losses_total',
            (n) => `This node lost its etcd lease ${n} time(s) and stopped acting on its partitions.`,
          ),
        ),
        guard('failovers', () =>
          counterSamples(
            'failover',
            'vigil_cluster_failovers_total',
            (n) => `This node took over ${n} partition(s) from an owner whose lease had expired.`,
          ),
        ),
        guard('backup', () => backup(now)),
        guard('disk', disk),
        guard('intake rejections', () =>
          counterSamples(
            'intake_rejected',
            'vigil_intake_events_rejected_total',
            (n, l) => `The ${l.source} intake refused ${n} event(s): ${l.reason}.`,
            (l) => `intake_rejected:${l.source}:${l.reason}`,
            (l) => ({ [h('intake.source')]: l.source ?? '', [h('intake.reason')]: l.reason ?? '' }),
          ),
        ),
        guard('site lag', siteLag),
      ]);
      return { samples: parts.flat(), errors };
    },
  };
}
