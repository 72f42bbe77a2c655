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
  /**
   * The last sequence of this site's events stream when it was last activated: a detection consumer made
   * after the activation starts after it, so no event received once the command answered is missed.
   */
  activated_after_seq?: number;
}

/** The peer as this site sees it now. */
export interface PeerView {
  site: string;
  reachable: boolean;
  /** The peer's role and epoch, when it answered. */
  role?: SiteRole;
  epoch?: number;
  /**
   * Events the peer received that this site's stream does not hold yet (the server's source lag); null while
   * the peer is unreachable: the server's figure is the one of the last contact, and what the peer received
   * since is unknown.
   */
  lag_events: number | null;
  /**
   * 0 when nothing is behind; else seconds since the copy from the peer last made progress. While the peer is
   * unreachable: seconds since the copy last heard from it (what it received since is at risk).
   */
  lag_seconds: number | null;
  /** The last event message copied from the peer: its sequence here and when it was stored here. */
  last_received: { seq: number; at: string } | null;
  /**
   * Events this site received that the peer's stream does not hold yet (the peer's source lag, as it
   * answered): the replication lag towards the peer.
   */
  lag_to_peer_events?: number | null;
  /** Why the peer or the lag could not be read. */
  error?: string;
}

/** What `vigil dr status` prints. */
export interface SiteStatus {
  site: string;
  role: SiteRole;
  epoch: number;
  peer: PeerView;
  /** Why the role and epoch shown are the last ones read rather than etcd's now (it did not answer). */
  error?: string;
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
   * Returns detection to this site from its active peer: refused while the peer is unreachable or this site
   * is behind it (events of the peer not yet here, or `behind()` says so); with `confirm`, asks the peer to
   * turn standby, then activates this site (epoch above the peer's).
   */
  failback(opts: { confirm: boolean }): Promise<ActivationPlan>;
  /** The epoch of this site's record (0 before it is read). */
  epoch(): number;
  /** The events stream's last sequence at the last activation (undefined: not recorded). */
  activatedAfterSeq(): number | undefined;
  /** When this site's role last changed (epoch ms; for an active site, when its epoch began), 0 before read. */
  changedAt(): number;
  /** The greatest epoch known of either site: an alert or notification of a lower epoch is stale. */
  highestEpoch(): number;
  /**
   * Adds a count of the peer's outputs (alert records, incident changes) not applied here yet: the failback
   * guard refuses while any is not 0. Without one, only events are checked.
   */
  trackOutputs(behind: () => Promise<number>): void;
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
  /** The last sequence of this site's events stream (recorded at each activation). */
  eventsLastSeq?: () => Promise<number>;

  metrics: Registry;
  logger: Logger;
}

const statusSubject = (site: string) => `vigil.dr.${site}.status`;
/** A failback asks the active peer to step down over this subject (the body names the epoch it saw). */
const handoverSubject = (site: string) => `vigil.dr.${site}.handover`;

/** The peer's answer to a status request: anything else counts as no answer. */
const peerAnswerSchema = z.object({
  role: z.enum(['active', 'standby']),
  epoch: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** The answering site's source lag of this site's events (older nodes do not send it). */
  lag_events: z.number().int().min(0).nullable().optional(),
});

/** Reads the peer's answer to a status request; throws (with what is wrong) when it is not a valid one. */
export function parsePeerAnswer(text: string): { role: SiteRole; epoch: number; lag_events?: number | null } {
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
  const lagToGauge = gauge(
    deps.metrics,
    'vigil_site_replication_lag_to_peer_events',
    "Events received by this site not yet in the peer site's events stream (as the peer answered).",
  );
  const lagSecondsGauge = gauge(
    deps.metrics,
    'vigil_site_replication_lag_seconds',
    'Seconds since the copy of events from the peer site last made progress while behind (0: caught up).',
  );
  const selfDemotions = counter(
    deps.metrics,
    'vigil_site_self_demotions_total',
    'Times this site turned standby by itself on hearing a greater epoch from its peer.',
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
  // Listeners hear the role only once the start check settled it (a returning old site may turn standby).
  let settled = false;
  let told: SiteRole | undefined;
  let poller: NodeJS.Timeout | undefined;
  let polling: Promise<void> | undefined;
  let lastPeerLag: number | null = null;
  const trackers: (() => Promise<number>)[] = [];
  /** The events stream's position for an activation's record; none when it cannot be read. */
  const eventsSeq = async (): Promise<Pick<SiteRecord, 'activated_after_seq'>> => {
    if (!deps.eventsLastSeq) return {};
    try {
      return { activated_after_seq: await deps.eventsLastSeq() };
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'The events stream position cannot be read for the activation.');
      return {};
    }
  };
  const outputsBehind = async () => {
    let n = 0;
    for (const t of trackers) n += await t();
    return n;
  };

  const tell = () => {
    if (!settled || !record || told === record.role) return;
    told = record.role;
    for (const l of roleListeners) {
      try {
        l(record.role);
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'A site role listener failed.');
      }
    }
  };

  const remember = (r: SiteRecord) => {
    record = r;
    tell();
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
      const status = nc.subscribe(statusSubject(name as string), {
        callback: (err, msg) => {
          if (err) return;
          void (record ? Promise.resolve(record) : read().then((r) => r?.value))
            .catch(() => record)
            .then(async (r) => {
              if (!r) return;
              // The peer learns from this answer how far this site's copy of its events is behind.
              const l = await lag();
              msg.respond(JSON.stringify({ site: r.site, role: r.role, epoch: r.epoch, lag_events: l.lag_events }));
            });
        },
      });
      const handover = nc.subscribe(handoverSubject(name as string), {
        callback: (err, msg) => {
          if (err) return;
          void handOver(msg.string()).then(
            (r) => msg.respond(JSON.stringify(r)),
            (e) => msg.respond(JSON.stringify({ error: errorMessage(e) })),
          );
        },
      });
      answering = {
        unsubscribe() {
          status.unsubscribe();
          handover.unsubscribe();
        },
      };
    })()
      .catch((err) => log.error({ err: errorMessage(err) }, 'The site cannot answer status requests.'))
      .finally(() => {
        subscribing = undefined;
      });
  }

  /**
   * The peer's failback request: this site steps down if it is still active at the epoch the peer saw
   * (a request made on an older view changes nothing).
   */
  async function handOver(text: string): Promise<{ site: string; role: SiteRole; epoch: number }> {
    const want = z.object({ epoch: z.number().int().min(0) }).parse(JSON.parse(text));
    for (;;) {
      const { value, revision } = await load();
      if (value.role !== 'active' || value.epoch !== want.epoch) {
        return { site: value.site, role: value.role, epoch: value.epoch };
      }
      const next: SiteRecord = { ...value, role: 'standby', changed_at: new Date().toISOString() };
      if (await write(next, revision)) {
        log.warn({ epoch: next.epoch, peer }, 'This site stepped down: the peer site fails back.');
        return { site: next.site, role: next.role, epoch: next.epoch };
      }
    }
  }

  /**
   * Records an epoch heard from the peer: a greater one than this site's means the peer was activated after
   * this site was (it was dead or cut off meanwhile), so an active site turns standby.
   */
  async function observe(peerEpoch: number): Promise<void> {
    for (;;) {
      const { value, revision } = await load();
      const stale = value.role === 'active' && peerEpoch > value.epoch;
      if (peerEpoch <= value.peer_epoch && !stale) return;
      const next: SiteRecord = {
        ...value,
        peer_epoch: Math.max(value.peer_epoch, peerEpoch),
        ...(stale ? { role: 'standby' as const, changed_at: new Date().toISOString() } : {}),
      };
      if (await write(next, revision)) {
        if (stale) {
          selfDemotions.inc();
          log.warn(
            { epoch: value.epoch, peer_epoch: peerEpoch, peer },
            'The peer site was activated with a greater epoch: this site turned standby.',
          );
        }
        return;
      }
    }
  }

  async function askPeer(): Promise<{
    role?: SiteRole;
    epoch?: number;
    lag_events?: number | null;
    reachable: boolean;
    error?: string;
  }> {
    try {
      const { nc } = deps.connection.clients();
      const msg = await nc.request(statusSubject(peer as string), '', { timeout: config.peer_timeout_ms });
      const body = parsePeerAnswer(msg.string());
      lastPeerLag = body.lag_events ?? null;
      if (body.lag_events != null) lagToGauge.set(body.lag_events);
      await observe(body.epoch);
      return { reachable: true, role: body.role, epoch: body.epoch, lag_events: body.lag_events };
    } catch (err) {
      if (err instanceof VigilError && err.code === 'site_bad_peer_answer') {
        badAnswers.inc();
        log.warn({ peer, err: err.message }, 'The peer site answered a status request with something else.');
        return { reachable: false, error: `peer site ${peer} answered badly: ${err.message}` };
      }
      return { reachable: false, error: `peer site ${peer} did not answer: ${errorMessage(err)}` };
    }
  }

  type Lag = Pick<PeerView, 'lag_events' | 'lag_seconds' | 'last_received'> & {
    /** Seconds since the copy last heard from the peer (made progress or had its heartbeat). */
    heard_seconds?: number;
    error?: string;
  };
  async function lag(): Promise<Lag> {
    const none = { lag_events: null, lag_seconds: null, last_received: null };
    try {
      const src = (await deps.replication()).find((s) => s.domain === peer);
      if (!src) return { ...none, error: 'the events stream does not source the peer' };
      lagGauge.set(src.lag);
      const seconds = src.lag === 0 ? 0 : src.activeAgoMs === undefined ? null : src.activeAgoMs / 1000;
      if (seconds !== null) lagSecondsGauge.set(seconds);
      return {
        lag_events: src.lag,
        lag_seconds: seconds,
        ...(src.activeAgoMs === undefined ? {} : { heard_seconds: src.activeAgoMs / 1000 }),
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
      // Cut off, the server still reports the lag of its last contact with the peer (0 throughout the
      // partition fault test, while the peer kept receiving): the count is unknown, and what the peer
      // received since that contact is at risk.
      lag_events: p.reachable ? l.lag_events : null,
      lag_seconds: p.reachable ? l.lag_seconds : (l.heard_seconds ?? l.lag_seconds),
      last_received: l.last_received,
      lag_to_peer_events: p.reachable ? (p.lag_events ?? lastPeerLag) : null,
      ...(error ? { error } : {}),
    };
  }

  /**
   * Settles the role at start: a site recorded active waits (up to start_peer_wait_ms) to hear its peer, so
   * a returning old site learns the greater epoch and comes back standby before anything detects.
   */
  async function settle(): Promise<void> {
    const until = Date.now() + config.start_peer_wait_ms;
    while (!stopped && record?.role === 'active' && Date.now() < until) {
      if (deps.connection.ready()) {
        const p = await askPeer();
        if (p.reachable) break;
      } else await deps.connection.wait(Math.min(1000, Math.max(0, until - Date.now())), deps.connection.ready);
      if (!stopped && Date.now() < until) await new Promise((r) => setTimeout(r, 250));
    }
    if (stopped) return;
    if (record?.role === 'active' && Date.now() >= until) {
      log.warn(
        { peer, waited_ms: config.start_peer_wait_ms },
        'The peer site did not answer at start: this site runs active.',
      );
    }
    settled = true;
    tell();
  }

  /** Asks the peer's epoch and lag now and then (a greater epoch turns an active site standby). */
  function poll(): void {
    if (stopped) return;
    poller = setTimeout(() => {
      // Keeps the lag gauges of /metrics current both ways, and lets an active site hear a greater epoch.
      polling = (async () => {
        if (deps.connection.ready()) await askPeer();
        await lag();
        await outputsBehind();
      })()
        .catch((err) => log.warn({ err: errorMessage(err) }, 'Asking the peer site failed.'))
        .finally(() => {
          polling = undefined;
          poll();
        });
    }, config.peer_poll_ms);
    poller.unref();
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
      void settle()
        .catch((err) => {
          log.error(
            { err: errorMessage(err) },
            'Settling the site role at start failed; the record is followed as is.',
          );
          settled = true;
          tell();
        })
        .finally(poll);
    },
    async stop() {
      stopped = true;
      clearTimeout(poller);
      await polling;
      await stopWatch?.();
      stopWatch = undefined;
      answering?.unsubscribe();
      answering = undefined;
      await subscribing;
    },
    health(): ComponentHealth {
      return { ok: true, ...(record ? {} : { detail: 'site record not read yet' }) };
    },
    role: () => (settled ? (record?.role ?? 'standby') : 'standby'),
    epoch: () => record?.epoch ?? 0,
    activatedAfterSeq: () => record?.activated_after_seq,
    changedAt: () => (record ? Date.parse(record.changed_at) || 0 : 0),
    trackOutputs(behind) {
      trackers.push(behind);
    },
    highestEpoch: () => Math.max(record?.epoch ?? 0, record?.peer_epoch ?? 0),
    onRole(listener) {
      roleListeners.add(listener);
      if (settled && record && told) listener(told);
      return () => roleListeners.delete(listener);
    },

    async status() {
      const [loaded, view] = await Promise.all([
        load().then(
          (r) => ({ value: r.value, error: undefined }),
          (err: unknown) => ({ value: record, error: err }),
        ),
        peerView(),
      ]);
      // The operator's view during a fault: etcd slow or away answers with the record last read, saying so.
      const value = loaded.value;
      if (!value) throw loaded.error;
      return {
        site: value.site,
        role: value.role,
        epoch: value.epoch,
        peer: view,
        ...(loaded.error === undefined
          ? {}
          : {
              error: `the site record could not be read again (${errorMessage(loaded.error)}): the last one read is shown`,
            }),
      };
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
          ...(await eventsSeq()),
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

    async failback({ confirm }) {
      for (;;) {
        const [{ value, revision }, view] = await Promise.all([load(), peerView()]);
        // A failure to read the outputs' position refuses the failback with its reason (never as if caught up).
        const behindOutputs = await outputsBehind().then(
          (n) => ({ n, err: undefined }),
          (err: unknown) => ({ n: undefined, err: errorMessage(err) }),
        );
        const epochAfter = Math.max(value.epoch, value.peer_epoch, view.epoch ?? 0) + 1;
        const plan: ActivationPlan = {
          site: value.site,
          dry_run: !confirm,
          changed: false,
          role_before: value.role,
          role_after: 'active',
          epoch_before: value.epoch,
          epoch_after: epochAfter,
          peer: view,
          data_at_risk: {
            lag_events: view.lag_events,
            lag_seconds: view.lag_seconds,
            last_received: view.last_received,
          },
        };
        const refuse = (why: string): ActivationPlan => ({
          ...plan,
          role_after: value.role,
          epoch_after: value.epoch,
          refused: why,
        });
        if (value.role === 'active') return refuse(`site ${value.site} is active already`);
        if (!view.reachable) {
          return refuse(`peer site ${peer} is unreachable: a failback needs it (use activate if it is lost)`);
        }
        if (view.lag_events !== 0) {
          return refuse(`site ${value.site} is behind its peer: ${view.lag_events ?? '?'} events not copied yet`);
        }
        if (behindOutputs.err !== undefined) {
          return refuse(`site ${value.site} cannot tell whether it applied its peer's outputs: ${behindOutputs.err}`);
        }
        if (behindOutputs.n !== 0) {
          return refuse(`site ${value.site} is behind its peer: ${behindOutputs.n} outputs not applied yet`);
        }
        if (!confirm) return plan;
        // The peer steps down first (only if still at the epoch seen here), then this site activates.
        if (view.role === 'active') {
          const { nc } = deps.connection.clients();
          const msg = await nc.request(handoverSubject(peer as string), JSON.stringify({ epoch: view.epoch }), {
            timeout: config.peer_timeout_ms,
          });
          const answer = JSON.parse(msg.string()) as { role?: string; epoch?: number; error?: string };
          if (answer.role !== 'standby') {
            return refuse(`peer site ${peer} did not step down: ${answer.error ?? JSON.stringify(answer)}`);
          }
        }
        const next: SiteRecord = {
          ...value,
          role: 'active',
          epoch: epochAfter,
          peer_epoch: Math.max(value.peer_epoch, view.epoch ?? 0),
          changed_at: new Date().toISOString(),
          ...(await eventsSeq()),
        };
        if (await write(next, revision)) {
          log.warn({ epoch: next.epoch, peer }, 'This site failed back: it is active again.');
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
