/**
 * The site of a two-site deployment: its name, its role (`active` runs detection, `standby` waits) and its
 * epoch, kept in one record in the site's own etcd (`<key_prefix>site`), changed only by a guarded command
 * (`vigil dr activate --confirm`, `vigil dr demote --confirm`), never automatically. Each node of the site
 * answers the peer's status requests over NATS (`vigil.dr.<site>.status`, through the leafnode that links
 * the sites), which is how a site knows whether its peer is reachable and active.
 */
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { JetStreamConnection, SourceLag } from '../bus/index.ts';
import type { ClusterConfig, EtcdSession } from '../cluster/index.ts';
import type { Component, ComponentHealth } from '../lib/component.ts';
import { errorMessage, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter, gauge } from '../lib/metrics.ts';

/** A site's role: the active site runs detection, alerting and notification; the standby does not. */
export type SiteRole = 'active' | 'standby';

/** The site record in the site's etcd. */
export interface SiteRecord {
  site: string;
  role: SiteRole;
  /** Bumped by every activation, always above the greatest epoch seen from the peer. */
  epoch: number;
  /** The greatest epoch the peer reported (0: never heard). */
  peer_epoch: number;
  /** When the role last changed (ISO time). */
  changed_at: string;
}

/** The peer as this site sees it now. */
export interface PeerView {
  site: string;
  reachable: boolean;
  /** The peer's role and epoch, when it answered. */
  role?: SiteRole;
  epoch?: number;
  /** Events the peer received that this site's stream does not hold yet (the server's source lag). */
  lag_events: number | null;
  /** 0 when nothing is behind; else seconds since the copy from the peer last made progress. */
  lag_seconds: number | null;
  /** The last event message copied from the peer: its sequence here and when it was stored here. */
  last_received: { seq: number; at: string } | null;
  /** Why the peer or the lag could not be read. */
  error?: string;
}

/** What `vigil dr status` prints. */
export interface SiteStatus {
  site: string;
  role: SiteRole;
  epoch: number;
  peer: PeerView;
}

/** What an activation would do (dry run) or did. */
export interface ActivationPlan {
  site: string;
  dry_run: boolean;
  /** False when the guard refuses it (`refused` says why) or when the site is active already. */
  changed: boolean;
  role_before: SiteRole;
  role_after: SiteRole;
  epoch_before: number;
  epoch_after: number;
  peer: PeerView;
  /** Data received by the peer and not yet copied here, which an activation now would not hold. */
  data_at_risk: Pick<PeerView, 'lag_events' | 'lag_seconds' | 'last_received'>;
  refused?: string;
}

/** One site's role and its peer. */
export interface Site extends Component {
  /** This site's name (`cluster.site`). */
  readonly siteName: string;
  readonly peer: string;
  /** The role as last read from etcd (the record is re-read by every status call). */
  role(): SiteRole;
  status(): Promise<SiteStatus>;
  /** Without `confirm`, only says what would change. Refused while the peer is reachable and active. */
  activate(opts: { confirm: boolean }): Promise<ActivationPlan>;
  /** Makes this site standby (a planned switchover starts here). */
  demote(): Promise<SiteRecord>;
  /**
   * Told the role once the record is read at start, then at every change, made by any node of the site
   * (the record is watched in etcd). Returns a function that removes the listener.
   */
  onRole(listener: (role: SiteRole) => void): () => void;
}

/** What the site needs from the node. */
export interface SiteDeps {
  session: EtcdSession;
  connection: JetStreamConnection;
  /** The events stream's source lags (the bus's `replication()`). */
  replication: () => Promise<SourceLag[]>;
  metrics: Registry;
  logger: Logger;
}

const statusSubject = (site: string) => `vigil.dr.${site}.status`;

/** The peer's answer to a status request: anything else counts as no answer. */
const peerAnswerSchema = z.object({
  role: z.enum(['active', 'standby']),
  epoch: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});

/** Reads the peer's answer to a status request; throws (with what is wrong) when it is not a valid one. */
export function parsePeerAnswer(text: string): { role: SiteRole; epoch: number } {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new VigilError('site_bad_peer_answer', 'the answer is not JSON');
  }
  const parsed = peerAnswerSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new VigilError(
      'site_bad_peer_answer',
      `the answer is not a site status (${issue.path.join('.') || 'body'}: ${issue.message})`,
    );
  }
  return parsed.data;
}

/** The role a site's record starts with: `auto` makes the site whose name sorts first active. */
export function initialRole(config: Pick<ClusterConfig, 'site' | 'peer_site' | 'site_role_at_start'>): SiteRole {
  if (config.site_role_at_start !== 'auto') return config.site_role_at_start;
  return (config.site ?? '') < (config.peer_site ?? '') ? 'active' : 'standby';
}

/** Creates the site of this node; opens nothing until start(). Needs `cluster.site` and `cluster.peer_site`. */
export function createSite(config: ClusterConfig, deps: SiteDeps): Site {
  const name = config.site;
  const peer = config.peer_site;
  if (!name || !peer) throw new VigilError('site_not_configured', 'cluster.site and cluster.peer_site are not set');
  const log = deps.logger.child({ component: 'site', site: name });
  const key = `${config.key_prefix}site`;
  const epochGauge = gauge(deps.metrics, 'vigil_site_epoch', 'The site epoch in the site record.');
  const activeGauge = gauge(deps.metrics, 'vigil_site_active', '1 while this site is the active site.');
  const lagGauge = gauge(
    deps.metrics,
    'vigil_site_replication_lag_events',
    "Events received by the peer site not yet in this site's events stream.",
  );
  const badAnswers = counter(
    deps.metrics,
    'vigil_site_peer_bad_answers_total',
    'Status answers from the peer site that were not a valid site status (counted as unreachable).',
  );
  let record: SiteRecord | undefined;
  let stopWatch: (() => Promise<void>) | undefined;
  const roleListeners = new Set<(role: SiteRole) => void>();
  let answering: { unsubscribe(): void } | undefined;
  let subscribing: Promise<void> | undefined;
  let stopped = false;

  const remember = (r: SiteRecord) => {
    const changed = record?.role !== r.role;
    record = r;
    if (changed) {
      for (const l of roleListeners) {
        try {
          l(r.role);
        } catch (err) {
          log.error({ err: errorMessage(err) }, 'A site role listener failed.');
        }
      }
    }
    epochGauge.set(r.epoch);
    activeGauge.set(r.role === 'active' ? 1 : 0);
  };

  async function read(): Promise<{ value: SiteRecord; revision: string } | undefined> {
    const res = await deps.session.run('site_read', (e) => e.get(key).exec());
    const kv = res.kvs[0];
    if (!kv) return undefined;
    const value = JSON.parse(kv.value.toString()) as SiteRecord;
    remember(value);
    return { value, revision: kv.mod_revision };
  }

  /** Replaces the record if nobody changed it since `revision`; false when someone did. */
  async function write(next: SiteRecord, revision: string): Promise<boolean> {
    const res = await deps.session.run('site_write', (e) =>
      e
        .if(key, 'Mod', '==', revision)
        .then(e.put(key).value(JSON.stringify(next)))
        .commit(),
    );
    if (res.succeeded) remember(next);
    return res.succeeded;
  }

  /** Reads the record, creating it with the starting role the first time this site runs. */
  async function load(): Promise<{ value: SiteRecord; revision: string }> {
    for (;;) {
      const found = await read();
      if (found) return found;
      const first: SiteRecord = {
        site: name as string,
        role: initialRole(config),
        epoch: 1,
        peer_epoch: 0,
        changed_at: new Date().toISOString(),
      };
      const res = await deps.session.run('site_create', (e) =>
        e
          .if(key, 'Create', '==', 0)
          .then(e.put(key).value(JSON.stringify(first)))
          .commit(),
      );
      if (res.succeeded) log.info({ role: first.role, epoch: 1 }, 'The site record was created.');
    }
  }

  /**
   * Answers the peer's status requests with the record kept current by the etcd watch (no etcd read per
   * request: the peer cannot make this site's etcd busy); read from etcd only while none is known yet.
   */
  function answer(): void {
    if (answering || subscribing || stopped) return;
    subscribing = (async () => {
      while (!stopped && !deps.connection.ready()) await deps.connection.wait(1000, deps.connection.ready);
      if (stopped) return;
      const { nc } = deps.connection.clients();
      answering = nc.subscribe(statusSubject(name as string), {
        callback: (err, msg) => {
          if (err) return;
          void (record ? Promise.resolve(record) : read().then((r) => r?.value))
            .catch(() => record)
            .then((r) => {
              if (r) msg.respond(JSON.stringify({ site: r.site, role: r.role, epoch: r.epoch }));
            });
        },
      });
    })()
      .catch((err) => log.error({ err: errorMessage(err) }, 'The site cannot answer status requests.'))
      .finally(() => {
        subscribing = undefined;
      });
  }

  async function askPeer(): Promise<{ role?: SiteRole; epoch?: number; reachable: boolean; error?: string }> {
    try {
      const { nc } = deps.connection.clients();
      const msg = await nc.request(statusSubject(peer as string), '', { timeout: config.peer_timeout_ms });
      const body = parsePeerAnswer(msg.string());
      return { reachable: true, role: body.role, epoch: body.epoch };
    } catch (err) {
      if (err instanceof VigilError && err.code === 'site_bad_peer_answer') {
        badAnswers.inc();
        log.warn({ peer, err: err.message }, 'The peer site answered a status request with something else.');
        return { reachable: false, error: `peer site ${peer} answered badly: ${err.message}` };
      }
      return { reachable: false, error: `peer site ${peer} did not answer: ${errorMessage(err)}` };
    }
  }

  type Lag = Pick<PeerView, 'lag_events' | 'lag_seconds' | 'last_received'> & { error?: string };
  async function lag(): Promise<Lag> {
    const none = { lag_events: null, lag_seconds: null, last_received: null };
    try {
      const src = (await deps.replication()).find((s) => s.domain === peer);
      if (!src) return { ...none, error: 'the events stream does not source the peer' };
      lagGauge.set(src.lag);
      return {
        lag_events: src.lag,
        lag_seconds: src.lag === 0 ? 0 : src.activeAgoMs === undefined ? null : src.activeAgoMs / 1000,
        last_received: src.lastReceived
          ? { seq: src.lastReceived.seq, at: new Date(src.lastReceived.time).toISOString() }
          : null,
      };
    } catch (err) {
      return { ...none, error: `replication lag unavailable: ${errorMessage(err)}` };
    }
  }

  async function peerView(): Promise<PeerView> {
    const [p, l] = await Promise.all([askPeer(), lag()]);
    const error = [p.error, l.error].filter(Boolean).join('; ');
    return {
      site: peer as string,
      reachable: p.reachable,
      ...(p.role ? { role: p.role, epoch: p.epoch } : {}),
      lag_events: l.lag_events,
      lag_seconds: l.lag_seconds,
      last_received: l.last_received,
      ...(error ? { error } : {}),
    };
  }

  return {
    name: 'site',
    siteName: name,
    get peer() {
      return peer as string;
    },
    async start() {
      const { value } = await load();
      log.info({ role: value.role, epoch: value.epoch, peer }, 'This node belongs to a site of a two-site deployment.');
      stopWatch = deps.session.watchPrefix(key, {
        put(kv) {
          try {
            remember(JSON.parse(kv.value.toString()) as SiteRecord);
          } catch (err) {
            log.error({ err: errorMessage(err) }, 'The site record in etcd cannot be read.');
          }
        },
        delete() {
          log.error({ key }, 'The site record was deleted from etcd; the last role read is kept.');
        },
        resync() {
          void read().catch((err) => log.warn({ err: errorMessage(err) }, 'The site record cannot be re-read.'));
        },
      });
      answer();
    },
    async stop() {
      stopped = true;
      await stopWatch?.();
      stopWatch = undefined;
      answering?.unsubscribe();
      answering = undefined;
      await subscribing;
    },
    health(): ComponentHealth {
      return { ok: true, ...(record ? {} : { detail: 'site record not read yet' }) };
    },
    role: () => record?.role ?? 'standby',
    onRole(listener) {
      roleListeners.add(listener);
      if (record) listener(record.role);
      return () => roleListeners.delete(listener);
    },

    async status() {
      const [{ value }, view] = await Promise.all([load(), peerView()]);
      return { site: value.site, role: value.role, epoch: value.epoch, peer: view };
    },

    async activate({ confirm }) {
      for (;;) {
        const [{ value, revision }, view] = await Promise.all([load(), peerView()]);
        const epochAfter = Math.max(value.epoch, value.peer_epoch, view.epoch ?? 0) + 1;
        const plan: ActivationPlan = {
          site: value.site,
          dry_run: !confirm,
          changed: false,
          role_before: value.role,
          role_after: 'active',
          epoch_before: value.epoch,
          epoch_after: value.role === 'active' ? value.epoch : epochAfter,
          peer: view,
          data_at_risk: {
            lag_events: view.lag_events,
            lag_seconds: view.lag_seconds,
            last_received: view.last_received,
          },
        };
        if (value.role === 'active') return { ...plan, refused: `site ${value.site} is active already` };
        if (view.reachable && view.role === 'active') {
          return {
            ...plan,
            role_after: 'standby',
            epoch_after: value.epoch,
            refused: `peer site ${peer} is reachable and active: demote it first (vigil dr demote --confirm there)`,
          };
        }
        if (!confirm) return plan;
        const next: SiteRecord = {
          ...value,
          role: 'active',
          epoch: epochAfter,
          peer_epoch: Math.max(value.peer_epoch, view.epoch ?? 0),
          changed_at: new Date().toISOString(),
        };
        if (await write(next, revision)) {
          log.warn(
            { epoch: next.epoch, peer_reachable: view.reachable, lag_events: view.lag_events },
            'This site was activated.',
          );
          return { ...plan, changed: true };
        }
      }
    },

    async demote() {
      for (;;) {
        const { value, revision } = await load();
        if (value.role === 'standby') return value;
        const next: SiteRecord = { ...value, role: 'standby', changed_at: new Date().toISOString() };
        if (await write(next, revision)) {
          log.warn({ epoch: next.epoch }, 'This site was demoted to standby.');
          return next;
        }
      }
    },
  };
}
