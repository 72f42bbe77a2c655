import { createHash, randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Alert } from '../detect/alerts/index.ts';
import { severityRank } from '../detect/alerts/severity.ts';
import { type Db, withDbRetry } from '../db/index.ts';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { redactedErrorMessage, redactUrls } from '../lib/redact.ts';
import { counter, histogram } from '../lib/metrics.ts';
import type { AuditLog } from '../users/index.ts';
import type { Destination, NotifyConfig } from './config.ts';
import { createSender, DeliveryError, type Sender } from './senders.ts';
import { backoffDelay } from '../lib/retry.ts';

export type DeliveryStatus = 'pending' | 'sending' | 'delivered' | 'dead';

/** A delivery of one alert to one destination, as the API shows it. */
export interface DeliveryInfo {
  id: string;
  alertId: string;
  destination: string;
  tenant: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  createdAt: number;
  updatedAt: number;
  deliveredAt: number | null;
}

/**
 * Notifications through an outbox: a delivery row per (alert, destination) is committed before anything
 * is sent, and a worker claims due rows (FOR UPDATE SKIP LOCKED, so nodes share the work), sends them and
 * marks them delivered. A delivery's id is the same on every attempt and node, for receivers to dedupe.
 */
export interface Notifier extends Component {
  /** Records a delivery for each alert and matching destination (once each, however often called). */
  enqueue(alerts: readonly Alert[]): Promise<number>;
  /** Claims and sends due deliveries once; returns how many were attempted. */
  runOnce(): Promise<number>;
  get(id: string, tenants: string[]): Promise<DeliveryInfo | undefined>;
  deadLetters(tenants: string[], limit: number): Promise<DeliveryInfo[]>;
  /** Sends a dead-lettered delivery again from its first attempt. */
  replay(id: string, tenants: string[], actor: string): Promise<DeliveryInfo>;
}

interface DeliveryRow {
  id: string;
  alert_id: string;
  destination: string;
  tenant: string;
  payload: Alert;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number;
  lease_until: number | null;
  claimed_by: string | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
  delivered_at: number | null;
}

const toInfo = (r: DeliveryRow): DeliveryInfo => ({
  id: r.id,
  alertId: r.alert_id,
  destination: r.destination,
  tenant: r.tenant,
  status: r.status,
  attempts: Number(r.attempts),
  nextAttemptAt: Number(r.next_attempt_at),
  // Redacted on the way out too: rows written before URLs were redacted on the way in.
  lastError: r.last_error === null ? null : redactUrls(r.last_error),
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
  deliveredAt: r.delivered_at === null ? null : Number(r.delivered_at),
});

const INFO_COLUMNS =
  'id, alert_id, destination, tenant, status, attempts, next_attempt_at, lease_until, last_error, created_at, updated_at, delivered_at';

/** The delivery id of an alert at a destination: deterministic, so every node and attempt agree. */
export function deliveryId(alertId: string, destination: string): string {
  return createHash('sha256').update(`${alertId}\u0000${destination}`).digest('hex').slice(0, 32);
}

/** Whether `destination` takes `alert` (min_level and tags, combined by `match`). */
export function destinationMatches(d: Destination, alert: Alert): boolean {
  const checks: boolean[] = [];
  if (d.min_level !== undefined) checks.push(severityRank(alert.rule.level) >= severityRank(d.min_level));
  if (d.tags.length > 0) {
    const tags = alert.rule.tags.map((t) => t.toLowerCase());
    checks.push(
      d.tags.some((want) => {
        const w = want.toLowerCase();
        return w.endsWith('*') ? tags.some((t) => t.startsWith(w.slice(0, -1))) : tags.includes(w);
      }),
    );
  }
  if (checks.length === 0) return true;
  return d.match === 'any' ? checks.some(Boolean) : checks.every(Boolean);
}

/** Two sites: whether this node's site may notify now, and which alerts are of a stale site epoch. */
export interface NotifyGate {
  sending(): boolean;
  stale(alert: Alert): boolean;
}

/**
 * Creates the notifier (opens nothing; start() runs the worker when `worker_enabled`). `nodeId` names this
 * node across restarts (cluster.node_id or the host name): at start the worker takes back the deliveries an
 * earlier process of the same node left in 'sending'. Without it, claims of earlier processes wait out their
 * lease, as other nodes' claims always do.
 */
export function createNotifier(
  config: NotifyConfig,
  deps: { db: Db; metrics: Registry; logger: Logger; audit?: AuditLog; nodeId?: string; gate?: NotifyGate },
): Notifier {
  const { db } = deps;
  // One notifier is one incarnation of its node; node ids have no ':' (cluster.node_id's pattern, host names).
  const node = deps.nodeId ?? `unnamed-${randomUUID()}`;
  const claimer = `${node}:${randomUUID()}`;
  const logger = deps.logger.child({ component: 'notify' });
  const destinations = new Map(config.destinations.map((d) => [d.name, d]));
  const senders = new Map<string, Sender>();
  const results = counter(
    deps.metrics,
    'vigil_notify_deliveries_total',
    'Delivery attempts, by destination and result (delivered, retry, dead).',
    ['destination', 'result'],
  );
  const enqueued = counter(deps.metrics, 'vigil_notify_enqueued_total', 'Deliveries recorded in the outbox.', [
    'destination',
  ]);
  const seconds = histogram(deps.metrics, 'vigil_notify_send_seconds', 'Time to send one delivery.', ['destination']);
  const reclaimed = counter(
    deps.metrics,
    'vigil_notify_reclaimed_total',
    "Deliveries an earlier process of this node left in 'sending', taken back at start.",
    ['destination'],
  );

  let running = false;
  let loop: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  let lastFailure: string | undefined;
  const inflight = new Map<string, AbortController>();

  const sender = (d: Destination) => {
    let s = senders.get(d.name);
    if (!s) {
      s = createSender(d);
      senders.set(d.name, s);
    }
    return s;
  };

  const backoff = (attempts: number) =>
    backoffDelay(Math.max(0, attempts - 1), {
      initialMs: config.backoff_initial_ms,
      maxMs: config.backoff_max_ms,
      jitter: 'equal',
    });

  /** Sends one claimed delivery and records the outcome, if this worker still holds its lease. */
  const deliver = async (row: DeliveryRow) => {
    const lease = Number(row.lease_until);
    const d = destinations.get(row.destination);
    const abort = new AbortController();
    inflight.set(row.id, abort);
    let outcome: { status: DeliveryStatus; error: string | null; delay: number };
    const started = process.hrtime.bigint();
    try {
      if (!d) throw new DeliveryError(`destination ${row.destination} is not configured`, false);
      if (deps.gate?.stale(row.payload)) {
        throw new DeliveryError(
          `alert ${row.alert_id} was raised at site epoch ${row.payload.epoch}, older than this site's: not sent`,
          false,
        );
      }
      await sender(d).send({ deliveryId: row.id, alert: row.payload, attempt: Number(row.attempts) }, abort.signal);
      outcome = { status: 'delivered', error: null, delay: 0 };
    } catch (err) {
      const retryable = !(err instanceof VigilError) || err.retryable;
      if (abort.signal.aborted) {
        // Stopped mid-send: give the attempt back; the next worker sends it again under the same id.
        await db.query(
          `UPDATE deliveries SET status = 'pending', attempts = GREATEST(attempts - 1, 0), lease_until = NULL,
             next_attempt_at = $3, updated_at = $3
           WHERE id = $1 AND status = 'sending' AND lease_until = $2 AND claimed_by = $4`,
          [row.id, lease, Date.now(), claimer],
        );
        return;
      }
      const dead = !retryable || Number(row.attempts) >= config.max_attempts;
      // lastError is read by analysts and logged: no URL in it keeps credentials or query values.
      outcome = {
        status: dead ? 'dead' : 'pending',
        error: redactedErrorMessage(err),
        delay: backoff(Number(row.attempts)),
      };
    } finally {
      inflight.delete(row.id);
      seconds.observe({ destination: row.destination }, Number(process.hrtime.bigint() - started) / 1e9);
    }
    // The outcome is known only here: a database that is away for a moment must not leave a sent delivery
    // 'sending' until its lease runs out (a minute by default), so the mark is retried while the lease holds.
    const marked = await withDbRetry(
      () => {
        const t = Date.now();
        return db.query(
          `UPDATE deliveries SET status = $3, last_error = $4, lease_until = NULL, next_attempt_at = $5, updated_at = $6,
             delivered_at = CASE WHEN $3 = 'delivered' THEN $6 ELSE delivered_at END
           WHERE id = $1 AND status = 'sending' AND lease_until = $2 AND claimed_by = $7 RETURNING id`,
          [row.id, lease, outcome.status, outcome.error, t + outcome.delay, t, claimer],
        );
      },
      {
        initialMs: 200,
        maxMs: 2000,
        deadline: () => lease - 1000,
        onRetry: (err, attempt) => {
          if (attempt === 1)
            logger.warn({ delivery: row.id, err: errorMessage(err) }, 'A delivery outcome waits for the database.');
        },
      },
    );
    if (marked.length === 0) {
      logger.warn({ delivery: row.id }, 'A delivery outlived its lease; another worker owns it now.');
      return;
    }
    const result = outcome.status === 'pending' ? 'retry' : outcome.status;
    results.inc({ destination: row.destination, result });
    if (outcome.status === 'dead') {
      logger.error(
        {
          delivery: row.id,
          alert: row.alert_id,
          destination: row.destination,
          attempts: row.attempts,
          err: outcome.error,
        },
        'A notification went to the dead-letter list.',
      );
    } else if (outcome.status === 'pending') {
      logger.warn(
        {
          delivery: row.id,
          destination: row.destination,
          attempts: row.attempts,
          retryInMs: outcome.delay,
          err: outcome.error,
        },
        'A notification failed; it will be retried.',
      );
    }
  };

  const runOnce = async (): Promise<number> => {
    // A standby site sends nothing (its outbox waits for its activation).
    if (deps.gate && !deps.gate.sending()) return 0;
    const t = Date.now();
    // Due pending rows, and rows whose worker died while sending (their lease ran out), of destinations
    // this node knows: a node with an older config leaves the others' deliveries alone.
    const claimed = await db.query<DeliveryRow>(
      `UPDATE deliveries SET status = 'sending', attempts = attempts + 1, lease_until = $2, claimed_by = $5,
         updated_at = $1
       WHERE id IN (
         SELECT id FROM deliveries
         WHERE ((status = 'pending' AND next_attempt_at <= $1) OR (status = 'sending' AND lease_until <= $1))
           AND destination = ANY($4::text[])
         ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
       RETURNING *`,
      [t, t + config.lease_ms, config.batch_size, [...destinations.keys()], claimer],
    );
    let next = 0;
    const worker = async () => {
      while (next < claimed.length) await deliver(claimed[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(config.concurrency, claimed.length) }, worker));
    return claimed.length;
  };

  /**
   * Gives back the deliveries an earlier process of this node claimed and never marked: that process is gone,
   * so its sends are dead, and waiting out their lease (lease_ms, a minute by default) only delays them. Some
   * may have reached the receiver before the process died; they are sent again under the same delivery id
   * (at-least-once; receivers dedupe on X-Vigil-Delivery). The attempt they spent stays counted.
   */
  const reclaimEarlierClaims = async () => {
    const t = Date.now();
    const rows = await db.query<{ destination: string }>(
      `UPDATE deliveries SET status = 'pending', lease_until = NULL, claimed_by = NULL, next_attempt_at = $3,
         updated_at = $3
       WHERE status = 'sending' AND left(claimed_by, length($1) + 1) = $1 || ':' AND claimed_by <> $2
       RETURNING destination`,
      [node, claimer, t],
    );
    for (const r of rows) reclaimed.inc({ destination: r.destination });
    if (rows.length > 0)
      logger.info({ deliveries: rows.length }, 'Deliveries an earlier process of this node was sending are due again.');
  };

  const work = async () => {
    let reclaimDone = false;
    while (running) {
      let n = 0;
      try {
        if (!reclaimDone) {
          await reclaimEarlierClaims();
          reclaimDone = true;
        }
        n = await runOnce();
        lastFailure = undefined;
      } catch (err) {
        lastFailure = errorMessage(err);
        logger.error({ err: lastFailure }, 'The notification worker failed a round; it goes on.');
      }
      if (!running) break;
      if (n < config.batch_size) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, config.poll_interval_ms);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    }
  };

  const rowsOf = async (sql: string, params: unknown[]) => (await db.query<DeliveryRow>(sql, params)).map(toInfo);

  return {
    name: 'notify',
    async start() {
      // Without destinations there is nothing to deliver: no polling (and no database opened for it).
      if (!config.worker_enabled || running || destinations.size === 0) return;
      running = true;
      loop = work();
    },
    async stop(deadline) {
      running = false;
      wake?.();
      // In-flight sends finish (and are marked) until the deadline; then they are aborted and given back.
      const timer = setTimeout(
        () => {
          for (const a of inflight.values()) a.abort();
        },
        Math.max(0, deadline - Date.now()),
      );
      await loop;
      clearTimeout(timer);
      loop = undefined;
      // Best effort at stop: every delivery has been marked or given back above; a sender only frees sockets.
      for (const s of senders.values()) {
        await s
          .close()
          .catch((err: unknown) => logger.debug({ err: errorMessage(err) }, 'Closing a notification sender failed.'));
      }
      senders.clear();
    },
    health(): ComponentHealth {
      if (destinations.size === 0) return { ok: true, detail: 'no destinations configured' };
      if (config.worker_enabled && !running) return { ok: false, detail: 'stopped' };
      return lastFailure ? { ok: true, detail: `degraded: the delivery worker fails: ${lastFailure}` } : { ok: true };
    },

    async enqueue(alerts) {
      const rows: unknown[][] = [];
      const t = Date.now();
      for (const a of alerts) {
        for (const d of config.destinations) {
          if (destinationMatches(d, a))
            rows.push([deliveryId(a.id, d.name), a.id, d.name, a.tenant, JSON.stringify(a)]);
        }
      }
      if (rows.length === 0) return 0;
      const insert = () =>
        db.transaction(async (tx) => {
          let n = 0;
          for (const r of rows) {
            const done = await tx.query<{ destination: string }>(
              `INSERT INTO deliveries (id, alert_id, destination, tenant, payload, status, attempts, next_attempt_at,
                 created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5::jsonb, 'pending', 0, $6, $6, $6)
               ON CONFLICT DO NOTHING RETURNING destination`,
              [...r, t],
            );
            for (const x of done) {
              enqueued.inc({ destination: x.destination });
              n++;
            }
          }
          return n;
        });
      try {
        const n = await withDbRetry(insert, {
          initialMs: 100,
          maxMs: 5000,
          deadline: () => t + 300_000,
          onRetry: (err, attempt) =>
            logger.warn({ err: errorMessage(err), attempt }, 'Recording notifications failed; retrying.'),
        });
        wake?.();
        return n;
      } catch (err) {
        logger.error(
          { err: errorMessage(err), alerts: alerts.length, alertIds: alerts.slice(0, 20).map((a) => a.id) },
          'Notifications for these alerts could not be recorded.',
        );
        throw err;
      }
    },
    runOnce,
    async get(id, tenants) {
      return (
        await rowsOf(`SELECT ${INFO_COLUMNS} FROM deliveries WHERE id = $1 AND tenant = ANY($2::text[])`, [id, tenants])
      )[0];
    },
    deadLetters: (tenants, limit) =>
      rowsOf(
        `SELECT ${INFO_COLUMNS} FROM deliveries WHERE status = 'dead' AND tenant = ANY($1::text[])
         ORDER BY updated_at DESC, id LIMIT $2`,
        [tenants, limit],
      ),
    async replay(id, tenants, actor) {
      const info = await db.transaction(async (tx) => {
        const t = Date.now();
        const rows = await tx.query<DeliveryRow>(
          `UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $3, last_error = NULL, updated_at = $3
           WHERE id = $1 AND tenant = ANY($2::text[]) AND status = 'dead' RETURNING ${INFO_COLUMNS}`,
          [id, tenants, t],
        );
        if (!rows[0]) {
          const exists = await tx.query<{ status: string }>(
            'SELECT status FROM deliveries WHERE id = $1 AND tenant = ANY($2::text[])',
            [id, tenants],
          );
          if (!exists[0]) throw new VigilError('not_found', `no delivery ${id}`, { status: 404 });
          throw new VigilError('not_dead', `delivery ${id} is ${exists[0].status}, not in the dead-letter list`, {
            status: 409,
          });
        }
        await deps.audit?.record(
          actor,
          'notification.replay',
          `delivery:${id}`,
          { destination: rows[0].destination },
          {
            tenant: rows[0].tenant,
            tx,
          },
        );
        return toInfo(rows[0]);
      });
      wake?.();
      return info;
    },
  };
}
