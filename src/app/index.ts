import { join } from 'node:path';
import { hostname } from 'node:os';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { resolveAdminToken } from '../api/auth.ts';
import { healthRoutes } from '../api/routes/health.ts';
import { ingestRoutes } from '../api/routes/ingest.ts';
import { type SearchReplicas, searchRoutes } from '../api/routes/search.ts';
import { type ApiServer, createApiServer, type RouteGroup } from '../api/server.ts';
import { backupRoutes } from '../api/routes/backups.ts';
import { createBackups, engineBackupArgs } from '../backup/index.ts';
import { type Bus, createJetStreamBus, createMemoryBus, type EventStream, type JetStreamBus } from '../bus/index.ts';
import { type Cluster, createCluster } from '../cluster/index.ts';
import type { VigilConfig } from '../config/schema.ts';
import { adminRoutes } from '../api/routes/admin.ts';
import { alertRoutes } from '../api/routes/alerts.ts';
import { consoleRoutes } from '../api/routes/console.ts';
import { huntRoutes } from '../api/routes/hunt.ts';
import { ruleRoutes } from '../api/routes/rules.ts';
import { incidentRoutes, notificationRoutes } from '../api/routes/incidents.ts';
import { userRoutes } from '../api/routes/users.ts';
import {
  createDatabase,
  createIncidentService,
  type Database,
  dbPositionStore,
  POSITION_MIGRATIONS,
  INCIDENT_MIGRATIONS,
  type IncidentComponent,
} from '../incidents/index.ts';
import { createNotifier, NOTIFY_MIGRATIONS, type Notifier } from '../notify/index.ts';
import {
  type AuditLog,
  createAuditLog,
  createUserAuthenticator,
  createUserService,
  USER_MIGRATIONS,
} from '../users/index.ts';
import { createAlertConsumer } from '../detect/alerts/consumer.ts';
import { createAlertLog, createAlertStreamConsumer } from '../detect/cluster/alert-log.ts';
import { createLocalDetectionFeed } from '../detect/position.ts';
import { createPartitionedCorrelation } from '../detect/cluster/correlator.ts';
import { createRecordStream } from '../detect/cluster/records.ts';
import {
  type Alert,
  type AlertStore,
  type CompiledRuleSet,
  createAlertStore,
  createDetector,
} from '../detect/index.ts';
import { createHttpIntake, createIdempotencyKeys, type HttpIntake } from '../intake/http/index.ts';
import { createSyslogIntake } from '../intake/syslog/index.ts';
import { type Component, componentGroup } from '../lib/component.ts';
import { errorMessage, OverloadError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { VERSION } from '../lib/version.ts';
import { createNormalizer } from '../parse/index.ts';
import { createEventStore, type EventStore } from '../store/index.ts';
import { createMaterializer, type Materializer } from '../store/materialize/index.ts';
import { type ModuleDef, resolveModules } from './registry.ts';

/** What modules share while the app is built: config, telemetry, and the components built so far. */
interface Ctx {
  config: Readonly<VigilConfig>;
  logger: Logger;
  metrics: Registry;
  adminToken: string;
  routes: RouteGroup[];
  components: Component[];
  normalizer: ReturnType<typeof createNormalizer>;
  store?: EventStore;
  bus?: Bus;
  httpIntake?: HttpIntake;
  cluster?: Cluster;
  stream?: EventStream;
  materializer?: Materializer;
  database?: Database;
  audit?: AuditLog;
  incidents?: IncidentComponent;
  notifier?: Notifier;
  /** Built by the detect module for the alert-path module: the local alert table and the alert stream. */
  detection?: {
    detector: ReturnType<typeof createDetector>;
    local: ReturnType<typeof createAlertStore>;
    records?: ReturnType<typeof createRecordStream>;
  };
}

/** Every module of Vigil and how they depend on each other: the one place that knows the whole. */
const MODULES: ModuleDef<Ctx>[] = [
  {
    // Runs only when cluster.enabled: membership, partition leases and maintenance on etcd.
    name: 'cluster',
    deps: [],
    roles: ['ingest', 'store', 'detect', 'api'],
    init(ctx) {
      const cluster = createCluster(ctx.config.cluster, {
        roles: ctx.config.roles,
        version: VERSION,
        httpAddr: ctx.config.http.addr,
        metrics: ctx.metrics,
        logger: ctx.logger.child({ component: 'cluster' }),
        inflight: () => ctx.bus?.pending() ?? 0,
        dataDir: ctx.config.data_dir,
      });
      ctx.cluster = cluster;
      ctx.routes.push(
        adminRoutes({
          cluster,
          providers: {
            replicas: () => (ctx.materializer ? [{ node: cluster.nodeId, ...ctx.materializer.lag() }] : []),
            streams: () => (ctx.config.bus.kind === 'jetstream' ? { bus: (ctx.bus as JetStreamBus).stats() } : null),
          },
        }),
      );
      return cluster;
    },
  },
  {
    name: 'store',
    deps: [],
    roles: ['store', 'api'],
    init(ctx) {
      ctx.store = createEventStore(ctx.config.store, {
        dataDir: ctx.config.data_dir,
        metrics: ctx.metrics,
        logger: ctx.logger,
        engineArgs: engineBackupArgs(ctx.config.backup.dir),
      });
      ctx.routes.push(
        searchRoutes({ store: ctx.store, metrics: ctx.metrics, maxLimit: 10000, replicas: searchReplicas(ctx) }),
      );
      return ctx.store;
    },
  },
  {
    name: 'bus',
    deps: [],
    roles: ['ingest', 'store', 'detect'],
    init(ctx) {
      if (ctx.config.bus.kind === 'jetstream') {
        // The replicated log: publishes are acknowledged by JetStream (or the local spool); store
        // nodes materialize the stream into their own replica (the materialize module).
        const bus = createJetStreamBus(ctx.config.bus.jetstream, {
          dataDir: ctx.config.data_dir,
          metrics: ctx.metrics,
          logger: ctx.logger.child({ component: 'bus' }),
        });
        ctx.bus = bus;
        ctx.stream = bus;
        return bus;
      }
      const bus = createMemoryBus(ctx.config.bus, { metrics: ctx.metrics, logger: ctx.logger });
      const store = ctx.store;
      if (store) bus.subscribe('store', (events) => store.write(events), { durable: true });
      ctx.bus = bus;
      return bus;
    },
  },
  {
    name: 'materialize',
    deps: ['bus', 'store'],
    roles: ['store'],
    init(ctx) {
      ctx.materializer = createMaterializer(ctx.config.store.materialize, {
        stream: ctx.stream!,
        store: ctx.store!,
        nodeId: ctx.config.cluster.node_id ?? hostname(),
        metrics: ctx.metrics,
        logger: ctx.logger.child({ component: 'materialize' }),
      });
      return ctx.materializer;
    },
  },
  {
    // Incidents, users, the audit log and the notification outbox: PGlite in <data_dir>/pg, or
    // PostgreSQL at postgres.url (VIGIL_POSTGRES_URL). Migrations run at start under an advisory lock.
    name: 'postgres',
    deps: [],
    roles: ['detect', 'api'],
    init(ctx) {
      if (ctx.config.cluster.enabled && !ctx.config.postgres.url) {
        // Each node's PGlite is its own: behind a balancer, analysts would see one node's incidents at a time.
        ctx.logger.warn(
          'Cluster mode with the embedded PGlite: incidents, users, sessions and notifications stay on this node. Set postgres.url (VIGIL_POSTGRES_URL) on every node to share them.',
        );
      }
      ctx.database = createDatabase(ctx.config.postgres, {
        dataDir: ctx.config.data_dir,
        logger: ctx.logger,
        migrations: [...INCIDENT_MIGRATIONS, ...USER_MIGRATIONS, ...NOTIFY_MIGRATIONS, ...POSITION_MIGRATIONS],
      });
      ctx.audit = createAuditLog(ctx.database.db);
      return ctx.database;
    },
  },
  {
    name: 'incidents',
    deps: ['postgres'],
    roles: ['detect', 'api'],
    init(ctx) {
      ctx.incidents = createIncidentService(ctx.config.incidents, {
        db: ctx.database!.db,
        metrics: ctx.metrics,
        logger: ctx.logger,
        audit: ctx.audit,
      });
      ctx.routes.push(incidentRoutes({ incidents: ctx.incidents }));
      return ctx.incidents;
    },
  },
  {
    name: 'notify',
    deps: ['postgres'],
    roles: ['detect', 'api'],
    init(ctx) {
      ctx.notifier = createNotifier(ctx.config.notify, {
        db: ctx.database!.db,
        metrics: ctx.metrics,
        logger: ctx.logger,
        audit: ctx.audit,
      });
      ctx.routes.push(notificationRoutes({ notifier: ctx.notifier }));
      return ctx.notifier;
    },
  },
  {
    name: 'detect',
    deps: ['bus', 'store', 'incidents', 'notify'],
    roles: ['detect'],
    init(ctx) {
      const store = ctx.store!;
      const logger = ctx.logger.child({ component: 'detect' });
      const jetstream = ctx.config.bus.kind === 'jetstream';
      // On a single node the local alert table is the alert log that incidents and notify consume.
      const local = createAlertStore(store, { metrics: ctx.metrics, logger, outbox: !jetstream });
      const { alerts, correlation, records } = clusterDetection(ctx, local, logger, () => detector.ruleSet());
      const detector = createDetector(ctx.config.detect, {
        dataDir: ctx.config.data_dir,
        alerts,
        metrics: ctx.metrics,
        logger,
        correlation,
      });
      // In a cluster every detect node shares the durable `detect` consumer, acknowledged once the alerts are
      // in the alert stream; in-process, the alert-path module subscribes it with a committed position.
      if (jetstream) ctx.bus!.subscribe('detect', (events) => detector.handle(events), { durable: true });
      ctx.detection = { detector, local, records };
      ctx.routes.push(
        alertRoutes({ alerts }),
        ruleRoutes({ detector, audit: ctx.audit }),
        huntRoutes({
          detector,
          store,
          maxEvents: ctx.config.detect.hunt_max_events,
          placeholders: ctx.config.detect.placeholders,
        }),
      );
      return detector;
    },
  },
  {
    // Alerts reach incidents and notifications as consumers of the alert log with committed positions, and
    // detection (single node) consumes the event log with its own (ADR 0004). Started before any intake.
    name: 'alert-path',
    deps: ['detect', 'incidents', 'notify'],
    roles: ['detect'],
    init(ctx) {
      const { detector, local, records } = ctx.detection!;
      const logger = ctx.logger.child({ component: 'alert-path' });
      const db = ctx.database!.db;
      const { incidents, notifier } = ctx;
      const targets = [
        { name: 'incidents', handle: (alerts: Alert[]) => incidents!.ingestAlerts(alerts) },
        { name: 'notify', handle: (alerts: Alert[]) => notifier!.enqueue(alerts) },
      ];
      if (records) {
        // One durable consumer per database: shared by the nodes of one PostgreSQL, per node with PGlite.
        const suffix = ctx.config.postgres.url ? '' : `-${ctx.config.cluster.node_id ?? hostname()}`;
        return componentGroup(
          'alert-path',
          targets.map((t) => createAlertStreamConsumer({ records, durable: `${t.name}${suffix}`, handle: t.handle })),
        );
      }
      const inc = ctx.config.incidents;
      const consumers = targets.map((t) =>
        createAlertConsumer({
          name: t.name,
          outbox: local,
          positions: dbPositionStore(db, t.name),
          handle: t.handle,
          batchMaxAlerts: Math.min(inc.batch_max_alerts, inc.max_pending_alerts),
          retryInitialMs: inc.retry_initial_ms,
          retryMaxMs: inc.retry_max_ms,
          metrics: ctx.metrics,
          logger,
        }),
      );
      const feed = createLocalDetectionFeed({
        dataDir: ctx.config.data_dir,
        bus: ctx.bus!,
        store: ctx.store!,
        handle: (events) => detector.handle(events),
        metrics: ctx.metrics,
        logger,
      });
      return componentGroup('alert-path', [...consumers, feed]);
    },
  },
  {
    name: 'intake-http',
    deps: ['bus'],
    roles: ['ingest'],
    init(ctx) {
      const bus = ctx.bus!;
      ctx.httpIntake = createHttpIntake(ctx.config.ingest, {
        normalizer: ctx.normalizer,
        publish: (events) => {
          // A node in maintenance takes no intake: 503 `draining` sends the client (or its balancer) elsewhere.
          if (ctx.cluster && !ctx.cluster.maintenance.accepting()) {
            throw new OverloadError('this node is in maintenance; send to another node', 1, 503, 'draining');
          }
          return bus.publish(events);
        },
        metrics: ctx.metrics,
        keys: createIdempotencyKeys({
          dir: join(ctx.config.data_dir, 'ingest-keys'),
          maxKeys: ctx.config.ingest.idempotency_max_keys,
          metrics: ctx.metrics,
          logger: ctx.logger,
          store: ctx.store,
        }),
      });
      ctx.routes.push(ingestRoutes({ intake: ctx.httpIntake, metrics: ctx.metrics }));
      return ctx.httpIntake;
    },
  },
  {
    name: 'intake-syslog',
    deps: ['bus'],
    roles: ['ingest'],
    init(ctx) {
      const bus = ctx.bus!;
      return createSyslogIntake(ctx.config.syslog, {
        publish: (events) => bus.publish(events),
        parse: (line, pctx) => ctx.normalizer.fromSyslog(line, pctx),
        admitting: () => !ctx.cluster || ctx.cluster.maintenance.accepting(),
        metrics: ctx.metrics,
        logger: ctx.logger.child({ component: 'syslog' }),
      });
    },
  },
  {
    // Backups of this node's replica and of the SQL state (when this node runs the postgres module, which
    // is listed before it): on request (POST /admin/backups) and on backup.schedule.
    name: 'backup',
    deps: ['store'],
    roles: ['store'],
    init(ctx) {
      const backups = createBackups(ctx.config.backup, {
        dataDir: ctx.config.data_dir,
        nodeId: ctx.config.cluster.node_id ?? hostname(),
        store: ctx.store!,
        db: ctx.database?.db,
        vigilConfig: ctx.config,
        metrics: ctx.metrics,
        logger: ctx.logger,
      });
      ctx.routes.push(backupRoutes({ backups }));
      return backups;
    },
  },
  {
    name: 'api',
    deps: ['postgres'],
    roles: ['api', 'ingest'],
    init(ctx) {
      const db = ctx.database!.db;
      const audit = ctx.audit!;
      const auth = createUserAuthenticator(db, {
        adminToken: ctx.adminToken,
        adminTenants: adminTenants(ctx.config),
        logger: ctx.logger,
      });
      const users = createUserService(ctx.config.users, { db, audit, metrics: ctx.metrics, logger: ctx.logger });
      ctx.routes.push(userRoutes({ users, audit }));
      ctx.routes.unshift(healthRoutes({ components: () => ctx.components, metrics: ctx.metrics }));
      ctx.routes.push(consoleRoutes());
      return createApiServer(ctx.config.http, { auth, metrics: ctx.metrics, logger: ctx.logger, routes: ctx.routes });
    },
  },
];

/** In a cluster: this node's replica (with its lag) and the other live store nodes to retry a search on. */
function searchReplicas(ctx: Ctx): SearchReplicas | undefined {
  const cluster = ctx.cluster;
  if (!cluster || ctx.config.bus.kind !== 'jetstream') return undefined;
  return {
    self: () => {
      const m = ctx.materializer;
      if (!m) return undefined;
      const lag = m.lag();
      return { node: cluster.nodeId, lag_messages: lag.lagMessages };
    },
    peers: () =>
      cluster.membership
        .nodes()
        .filter(
          (n) =>
            n.id !== cluster.nodeId &&
            n.state === 'Alive' &&
            n.maintenance === 'active' &&
            n.address &&
            (n.roles.includes('store') || n.roles.includes('all')),
        )
        .map((n) => `http://${n.address}`),
  };
}

/**
 * Detection over JetStream: alerts go through the replicated alert log, so every node stores and serves
 * the same alerts; with cluster mode on as well, correlations run on the owners of their partitions.
 */
function clusterDetection(ctx: Ctx, local: AlertStore, logger: Logger, ruleSet: () => CompiledRuleSet) {
  if (ctx.config.bus.kind !== 'jetstream') return { alerts: local, correlation: undefined, records: undefined };
  const bus = ctx.bus as JetStreamBus;
  const js = ctx.config.bus.jetstream;
  // VIGIL_EVENTS -> VIGIL_ALERTS, so that test clusters with their own stream names keep their own logs.
  const base = js.stream.replace(/_EVENTS$/, '');
  // Outside the events stream's `<prefix>.>` either way: `vigil.events` -> `vigil.alerts`, `x` -> `x_alerts`.
  const subjectOf = (kind: string) =>
    js.subject_prefix.endsWith('.events')
      ? `${js.subject_prefix.slice(0, -7)}.${kind}`
      : `${js.subject_prefix}_${kind}`;
  const stream = (kind: string, maxAgeMs: number) =>
    createRecordStream(
      bus,
      {
        name: `${base}_${kind.toUpperCase()}`,
        subject: subjectOf(kind),
        maxAgeMs,
        duplicateWindowMs: js.duplicate_window_ms,
        publishMaxWaitMs: Math.max(10_000, js.publish_max_wait_ms),
        pullExpiresMs: js.consumer.pull_expires_ms,
      },
      logger,
    );
  const records = stream('alerts', js.max_age_seconds * 1000);
  const alerts = createAlertLog(local, {
    records,
    nodeId: ctx.config.cluster.node_id ?? hostname(),
    logger,
  });
  const cluster = ctx.cluster;
  if (!cluster) return { alerts, correlation: undefined, records };
  const correlation = createPartitionedCorrelation({
    records: stream('matches', ctx.config.detect.match_retention_hours * 3_600_000),
    alerts,
    partitions: cluster.partitions,
    ruleSet,
    maxCorrelationState: ctx.config.detect.max_correlation_state,
    metrics: ctx.metrics,
    logger,
  });
  return { alerts, correlation, records };
}

function adminTenants(config: Readonly<VigilConfig>): string[] {
  return [...new Set([config.ingest.tenant, config.syslog.tenant])];
}

/** A running Vigil process: its components in start order. */
export interface App {
  components: Component[];
  api?: ApiServer;
  start(): Promise<void>;
  stop(deadline: number): Promise<void>;
}

/**
 * Builds the modules for the configured roles (nothing is opened yet). The api module is built last so
 * that every route group is known, and started last so that ready means every component is up.
 */
export function createApp(config: Readonly<VigilConfig>, logger: Logger): App {
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics, prefix: 'vigil_process_' });
  const { token, generated } = resolveAdminToken(config.data_dir, config.auth.admin_token);
  if (generated) {
    // Printed once, on the first start; afterwards it is only in <data_dir>/admin-token (mode 0600).
    process.stdout.write(`Vigil admin token (saved in ${config.data_dir}/admin-token): ${token}\n`);
  }
  const ctx: Ctx = {
    config,
    logger,
    metrics,
    adminToken: token,
    routes: [],
    components: [],
    normalizer: createNormalizer(config.parse),
  };
  const modules = MODULES.filter(
    (m) =>
      (m.name !== 'cluster' || config.cluster.enabled) && (m.name !== 'materialize' || config.bus.kind === 'jetstream'),
  );
  const ordered = resolveModules(modules, config.roles);
  const api = ordered.find((m) => m.name === 'api');
  for (const def of ordered) if (def !== api) ctx.components.push(def.init(ctx));
  const apiServer = api ? (api.init(ctx) as ApiServer) : undefined;
  if (apiServer) ctx.components.push(apiServer);

  const started: Component[] = [];
  return {
    components: ctx.components,
    api: apiServer,
    async start() {
      for (const c of ctx.components) {
        try {
          await c.start();
        } catch (err) {
          throw new Error(`component ${c.name} failed to start: ${errorMessage(err)}`, { cause: err });
        }
        started.push(c);
      }
      logger.info({ roles: config.roles, components: started.map((c) => c.name) }, 'Vigil is running.');
    },
    async stop(deadline) {
      // Reverse order: intake stops taking work before the bus drains and the store closes.
      for (const c of started.reverse()) {
        try {
          await c.stop(deadline);
        } catch (err) {
          logger.error({ component: c.name, err: errorMessage(err) }, 'A component failed to stop cleanly.');
        }
      }
      started.length = 0;
    },
  };
}
