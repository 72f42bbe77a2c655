/**
 * The outputs of the active site replicated to the standby (ADR 0009): every change of an incident (opened,
 * alert linked, status, assignee, comment) is published, as a snapshot of the incident with the rows that
 * changed, on the site's outputs stream (`<prefix>.outputs.<site>`), which the peer's stream sources over
 * the leafnode like the events; the peer applies it idempotently to its own PostgreSQL/PGlite, with the same
 * ids. Alerts themselves travel in the alert stream (sourced the same way).
 *
 * The publisher reads the incidents changed since its committed position (`updated_at`, in
 * alert_consumer_positions as `site-outputs`), from `overlap_ms` before it (a transaction that committed
 * late with an older `updated_at` is still read), and moves the position only after JetStream acknowledged
 * the snapshots. A snapshot's `Nats-Msg-Id` is the incident and its `updated_at`: re-reads are stored once.
 */
import type { Registry } from 'prom-client';
import type { Db, Queryable } from '../db/index.ts';
import { dbPositionStore } from '../db/index.ts';
import type { RecordConsumer, RecordStream, StreamRecord } from '../detect/cluster/records.ts';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge } from '../lib/metrics.ts';
import type { Site } from './index.ts';

/** Settings of the outputs replication (fixed: they are not operator knobs yet). */
export interface OutputsOptions {
  /** How often the active site looks for changed incidents. */
  intervalMs: number;
  /** How far before its position a round reads again (late commits with an older `updated_at`). */
  overlapMs: number;
  /** Incidents per query page. */
  pageSize: number;
  /** Rows of each child table in one snapshot: a larger change is sent as its newest rows (counted). */
  maxChildRows: number;
}

export const DEFAULT_OUTPUTS_OPTIONS: OutputsOptions = {
  intervalMs: 1000,
  overlapMs: 5000,
  pageSize: 200,
  maxChildRows: 1000,
};

type Row = Record<string, unknown>;

/** One incident change as published: the incident row and its child rows changed since `since`. */
export interface IncidentSnapshot {
  type: 'incident';
  site: string;
  epoch: number;
  since: number;
  incident: Row;
  alerts: Row[];
  events: string[];
  comments: Row[];
  timeline: Row[];
}

/** The replication of one site's incident changes to its peer, and of the peer's to this site. */
export interface OutputReplication extends Component {
  /** Changes of the peer not applied here yet (not copied to this stream, or not applied from it). */
  behind(): Promise<number>;
}

const INCIDENT_COLUMNS = [
  'id',
  'tenant',
  'title',
  'severity',
  'severity_rank',
  'status',
  'assignee',
  'tags',
  'group_key',
  'rule_id',
  'host',
  'window_start',
  'window_end',
  'first_alert_at',
  'last_alert_at',
  'alert_count',
  'created_by',
  'created_at',
  'updated_at',
] as const;

/** Reads the snapshot of incident `id` with its child rows of time >= `since`. */
export async function readSnapshot(
  q: Queryable,
  id: string,
  since: number,
  maxRows: number,
): Promise<Omit<IncidentSnapshot, 'type' | 'site' | 'epoch'> | undefined> {
  const [incident] = await q.query(`SELECT ${INCIDENT_COLUMNS.join(', ')} FROM incidents WHERE id = $1`, [id]);
  if (!incident) return undefined;
  const alerts = await q.query(
    `SELECT alert_id, incident_id, tenant, rule_id, level, partition, fencing_token, alert_at, linked_at
     FROM incident_alerts WHERE incident_id = $1 AND linked_at >= $2 ORDER BY linked_at DESC LIMIT $3`,
    [id, since, maxRows],
  );
  // Events have no time of their own: those of the alerts linked since `since`, and all of them the first time.
  const events = (
    await q.query<{ event_id: string }>(
      'SELECT event_id FROM incident_events WHERE incident_id = $1 ORDER BY event_id LIMIT $2',
      [id, maxRows],
    )
  ).map((r) => r.event_id);
  const comments = await q.query(
    `SELECT author, body, created_at FROM incident_comments WHERE incident_id = $1 AND created_at >= $2
     ORDER BY id DESC LIMIT $3`,
    [id, since, maxRows],
  );
  const timeline = await q.query(
    `SELECT at, actor, action, from_value, to_value, details FROM incident_timeline
     WHERE incident_id = $1 AND at >= $2 ORDER BY id DESC LIMIT $3`,
    [id, since, maxRows],
  );
  return { since, incident, alerts, events, comments: comments.reverse(), timeline: timeline.reverse() };
}

/**
 * Applies a snapshot in one transaction: the incident row replaces the stored one only when newer
 * (`updated_at`), child rows are inserted once (keys, or their content for comments and timeline entries,
 * whose serial ids are each database's own). Applying a snapshot twice changes nothing.
 */
export async function applySnapshot(tx: Queryable, s: IncidentSnapshot): Promise<void> {
  const i = s.incident;
  const cols = INCIDENT_COLUMNS;
  const values = cols.map((c) => i[c]);
  await tx.query(
    `INSERT INTO incidents (${cols.join(', ')}) VALUES (${cols.map((_, n) => `$${n + 1}`).join(', ')})
     ON CONFLICT (id) DO UPDATE SET ${cols
       .filter((c) => c !== 'id')
       .map((c) => `${c} = EXCLUDED.${c}`)
       .join(', ')}
     WHERE incidents.updated_at < EXCLUDED.updated_at`,
    values,
  );
  for (const a of s.alerts) {
    await tx.query(
      `INSERT INTO incident_alerts (alert_id, incident_id, tenant, rule_id, level, partition, fencing_token, alert_at, linked_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant, alert_id) DO NOTHING`,
      [a.alert_id, a.incident_id, a.tenant, a.rule_id, a.level, a.partition, a.fencing_token, a.alert_at, a.linked_at],
    );
  }
  if (s.events.length > 0) {
    await tx.query(
      `INSERT INTO incident_events (incident_id, event_id) SELECT $1, e FROM unnest($2::text[]) AS e
       ON CONFLICT DO NOTHING`,
      [i.id, s.events],
    );
  }
  for (const c of s.comments) {
    await tx.query(
      `INSERT INTO incident_comments (incident_id, author, body, created_at)
       SELECT $1, $2, $3, $4 WHERE NOT EXISTS (
         SELECT 1 FROM incident_comments WHERE incident_id = $1 AND author = $2 AND body = $3 AND created_at = $4)`,
      [i.id, c.author, c.body, c.created_at],
    );
  }
  for (const t of s.timeline) {
    await tx.query(
      `INSERT INTO incident_timeline (incident_id, at, actor, action, from_value, to_value, details)
       SELECT $1, $2, $3, $4, $5, $6, $7::jsonb WHERE NOT EXISTS (
         SELECT 1 FROM incident_timeline WHERE incident_id = $1 AND at = $2 AND actor = $3 AND action = $4
           AND to_value IS NOT DISTINCT FROM $6)`,
      [i.id, t.at, t.actor, t.action, t.from_value, t.to_value, t.details === null ? null : JSON.stringify(t.details)],
    );
  }
}

/**
 * Creates the replication of incident changes: the publisher runs while `site` is active, the applier of
 * the peer's changes always (durable consumer `durable`, shared by the nodes of one database).
 */
export function createOutputReplication(
  opts: OutputsOptions,
  deps: {
    db: Db;
    records: RecordStream;
    /** The subject of the peer's snapshots (what the applier reads). */
    peerSubject: string;
    site: Site;
    durable: string;
    metrics: Registry;
    logger: Logger;
  },
): OutputReplication {
  const { db, records, site } = deps;
  const log = deps.logger.child({ component: 'site-outputs' });
  const positions = dbPositionStore(db, 'site-outputs');
  const published = counter(
    deps.metrics,
    'vigil_site_outputs_published_total',
    'Incident changes published to the peer site (snapshots acknowledged by JetStream).',
  );
  const applied = counter(
    deps.metrics,
    'vigil_site_outputs_applied_total',
    'Incident changes of the peer site applied here.',
  );
  const truncated = counter(
    deps.metrics,
    'vigil_site_outputs_truncated_total',
    'Incident snapshots that held only the newest rows of a child table (maxChildRows).',
  );
  const lagGauge = gauge(
    deps.metrics,
    'vigil_site_outputs_lag_records',
    'Incident changes of the peer site not applied here yet (copy lag plus applier backlog).',
  );
  let running = false;
  let timer: NodeJS.Timeout | undefined;
  let round: Promise<void> | undefined;
  let consumer: RecordConsumer | undefined;
  let activeSince: number | undefined;
  let lastFailure: string | undefined;
  // Snapshots published by this process (id:updated_at), so that the overlap is not sent again each round.
  const sent = new Map<string, number>();

  const publishRound = async () => {
    if (site.role() !== 'active') {
      activeSince = undefined;
      return;
    }
    activeSince ??= Date.now();
    const saved = await positions.load();
    // Without a position (never published), from this activation on: older changes came from the peer.
    const floor = Math.max(0, (saved?.created ?? activeSince) - opts.overlapMs);
    let cursor = { t: floor, id: '' };
    let last = saved?.created ?? 0;
    for (;;) {
      const rows = await db.query<{ id: string; updated_at: number }>(
        `SELECT id, updated_at FROM incidents WHERE (updated_at, id) > ($1, $2) ORDER BY updated_at, id LIMIT $3`,
        [cursor.t, cursor.id, opts.pageSize],
      );
      const sends: Promise<unknown>[] = [];
      for (const r of rows) {
        const at = Number(r.updated_at);
        const key = `${r.id}:${at}`;
        if (sent.has(key)) continue;
        sends.push(
          (async () => {
            const snap = await readSnapshot(db, r.id, floor, opts.maxChildRows);
            if (!snap || Number(snap.incident.updated_at) !== at) return; // changed again: the next page has it
            if ([snap.alerts, snap.comments, snap.timeline].some((l) => l.length >= opts.maxChildRows)) truncated.inc();
            const value: IncidentSnapshot = { type: 'incident', site: site.siteName, epoch: site.epoch(), ...snap };
            await records.publish(records.subject, value, `incident:${key}`);
            sent.set(key, at);
            published.inc();
          })(),
        );
      }
      await Promise.all(sends);
      if (rows.length === 0) break;
      const tail = rows[rows.length - 1];
      cursor = { t: Number(tail.updated_at), id: tail.id };
      last = Math.max(last, cursor.t);
      if (rows.length < opts.pageSize) break;
    }
    if (last > (saved?.created ?? 0)) await positions.save({ created: last, ts: 0, id: cursor.id });
    for (const [k, at] of sent) if (at < floor) sent.delete(k);
  };

  const loop = () => {
    if (!running) return;
    timer = setTimeout(() => {
      round = publishRound()
        .then(() => {
          lastFailure = undefined;
        })
        .catch((err) => {
          lastFailure = errorMessage(err);
          log.warn({ err: lastFailure }, 'Publishing incident changes to the peer site failed; retrying.');
        })
        .finally(() => {
          round = undefined;
          loop();
        });
    }, opts.intervalMs);
  };

  return {
    name: 'site-outputs',
    async start() {
      running = true;
      consumer = records.consume<IncidentSnapshot>(
        deps.durable.replace(/[^A-Za-z0-9_-]/g, '_'),
        async (batch: StreamRecord<IncidentSnapshot>[]) => {
          await db.transaction(async (tx) => {
            for (const r of batch) if (r.value.type === 'incident') await applySnapshot(tx, r.value);
          });
          applied.inc(batch.length);
        },
        { filterSubject: deps.peerSubject },
      );
      loop();
    },
    async stop() {
      running = false;
      clearTimeout(timer);
      await round;
      await consumer?.stop();
      consumer = undefined;
    },
    health(): ComponentHealth {
      return lastFailure ? { ok: true, detail: `degraded: publishing incident changes: ${lastFailure}` } : { ok: true };
    },
    async behind() {
      await records.ensure();
      const lags = await records.sourceLags();
      const copy = lags.find((l) => l.domain === site.peer)?.lag ?? 0;
      const position = await records.consumerPending(deps.durable.replace(/[^A-Za-z0-9_-]/g, '_'));
      const n = copy + (position ?? 0);
      lagGauge.set(n);
      return n;
    },
  };
}
