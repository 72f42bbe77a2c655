import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { registerDiskMetrics } from '../lib/disk-metrics.ts';
import { adminRoutes } from '../api/routes/admin.ts';
import { drRoutes } from '../api/routes/dr.ts';
import { alertRoutes } from '../api/routes/alerts.ts';
import { backupRoutes } from '../api/routes/backups.ts';
import { consoleRoutes } from '../api/routes/console.ts';
import { healthRoutes } from '../api/routes/health.ts';
import { huntRoutes } from '../api/routes/hunt.ts';
import { incidentRoutes, notificationRoutes } from '../api/routes/incidents.ts';
import { ingestRoutes } from '../api/routes/ingest.ts';
import { ruleRoutes } from '../api/routes/rules.ts';
import { type SearchReplicas, searchRoutes, shardSearchRoutes } from '../api/routes/search.ts';
import { userRoutes } from '../api/routes/users.ts';
import { type ApiServer, createApiServer, type RouteGroup } from '../api/server.ts';
import { createBackups, engineBackupArgs, parseSchedule, RESTORED_MARKER } from '../backup/index.ts';
import { type Bus, createJetStreamBus, createMemoryBus, type JetStreamBus, streamNames } from '../bus/index.ts';
import { type Cluster, createCluster, storePeers } from '../cluster/index.ts';
import { createSearchCoordinator, type SearchCoordinator, type ShardMapView } from '../search/coordinator.ts';
import { createHttpShardTransport, lastKnownAddresses, peerTokenCheck, readPeerToken } from '../search/transport.ts';
import { activeOnlyComponent, runWhileActive } from '../site/gate.ts';
import { createSite, type Site } from '../site/index.ts';
import { createOutputReplication, DEFAULT_OUTPUTS_OPTIONS, type OutputReplication } from '../site/outputs.ts';
import type { VigilConfig } from '../config/schema.ts';
import { createDatabase, type Database, dbPositionStore } from '../db/index.ts';
import { createAlertConsumer } from '../detect/alerts/consumer.ts';
import { type AlertLog, createAlertLog, createAlertStreamConsumer } from '../detect/cluster/alert-log.ts';
import { createPartitionedCorrelation } from '../detect/cluster/correlator.ts';
import { createRecordStream } from '../detect/cluster/records.ts';
import {
  type Alert,
  type AlertStore,
  type CompiledRuleSet,
  createAlertStore,
  createDetector,
} from '../detect/index.ts';
import { createLocalDetectionFeed } from '../detect/position.ts';
import { createIncidentService, type IncidentComponent } from '../incidents/index.ts';
import { createHttpIntake, createIdempotencyKeys } from '../intake/http/index.ts';
import { createSyslogIntake } from '../intake/syslog/index.ts';
import { type Component, componentGroup } from '../lib/component.ts';
import { errorMessage, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { VERSION } from '../lib/version.ts';
import { createNotifier, type Notifier } from '../notify/index.ts';
import { createSelfmon } from '../selfmon/index.ts';
import { createNormalizer } from '../parse/index.ts';
import { createEventStore, type EventStore } from '../store/index.ts';
import { createRangeCopy, type RangeCopy } from '../store/copy/index.ts';
import { createMaterializer, type Materializer } from '../store/materialize/index.ts';
import { createShardReplicas, type ShardReplicas } from '../store/materialize/sharded.ts';
import {
  type AuditLog,
  createAuditLog,
  createUserAuthenticator,
  createUserService,
  resolveAdminToken,
} from '../users/index.ts';
import { SQL_MIGRATIONS } from './migrations.ts';
import { buildModules, defineModule, type ModuleDef, resolveModules } from './registry.ts';

/** What every module may read: configuration, telemetry, and the components of the app (for health). */
interface Base {
  config: Readonly<VigilConfig>;
  logger: Logger;
  metrics: Registry;
  /** The admin token, resolved (and generated on the first start) when first asked for. */
  adminToken(): string;
  /** Every component of the app in start order; complete once the graph is built. */
  components(): Component[];
}

/** Route groups a module contributes to the HTTP API. */
interface Routes {
  routes: RouteGroup[];
}

/** Every module's name and the value others read from it; roles are aliases with no value. */
interface Modules {
  cluster: Cluster | undefined;
  'cluster-admin': Routes;
  /** The site of a two-site deployment (`cluster.site`) and its `dr` routes. */
  site: Routes & { site?: Site };
  'event-store': EventStore;
  bus: Bus;
  /** The replica's materializer on JetStream; undefined on the in-process bus (the store subscribes). */
  materialize: Materializer | ShardReplicas | undefined;
  /** Copies of event ranges between store replicas over NATS; undefined off JetStream or when disabled. */
  'range-copy': RangeCopy | undefined;
  search: Routes & { coordinator?: SearchCoordinator };
  backup: Routes;
  parse: ReturnType<typeof createNormalizer>;
  postgres: { database: Database; audit: AuditLog };
  incidents: Routes & { incidents: IncidentComponent };
  notify: Routes & { notifier: Notifier };
  users: Routes & { auth: ReturnType<typeof createUserAuthenticator> };
  detector: Routes & {
    detector: ReturnType<typeof createDetector>;
    /** The local alert table (the alert log that incidents and notify consume on a single node). */
    local: ReturnType<typeof createAlertStore>;
    /** The replicated alert stream, on JetStream. */
    records?: ReturnType<typeof createRecordStream>;
  };
  'alert-path': undefined;
  /** Two sites: incident changes replicated to and from the peer site. */
  'site-outputs': OutputReplication | undefined;
  'intake-http': Routes;
  'intake-syslog': undefined;
  /** Vigil's own health as events of its pipeline (src/selfmon). */
  selfmon: undefined;
  server: ApiServer;
  ingest: undefined;
  store: undefined;
  detect: undefined;
  api: undefined;
  all: undefined;
}

type Name = keyof Modules & string;
const mod = <K extends Name>(def: ModuleDef<Base, Modules, K>) => defineModule(def);
const alias = (name: Name, deps: Name[]) => mod({ name, deps });

/** Modules whose routes the HTTP server serves when they run, in the order they are registered. */
const ROUTED = [
  'cluster-admin',
  'site',
  'search',
  'incidents',
  'notify',
  'detector',
  'intake-http',
  'backup',
  'users',
] as const satisfies readonly { [K in Name]: Modules[K] extends Routes ? K : never }[Name][];

const nodeId = (config: Readonly<VigilConfig>) => config.cluster.node_id ?? hostname();

/** Every module of Vigil and what each reads: the one place that knows the whole. */
const MODULES: ModuleDef<Base, Modules>[] = [
  // Roles (Loki's Read/Write/All): aliases whose dependencies are the modules a node of that role runs.
  alias('all', ['store', 'detect', 'ingest', 'api']),
  alias('store', ['cluster', 'event-store', 'range-copy', 'materialize', 'search', 'backup', 'selfmon']),
  alias('detect', ['cluster', 'site', 'detector', 'alert-path', 'site-outputs', 'selfmon']),
  alias('ingest', ['cluster', 'site', 'intake-http', 'intake-syslog', 'server', 'selfmon']),
  alias('api', ['cluster', 'search', 'incidents', 'notify', 'users', 'cluster-admin', 'server']),

  mod({
    // Membership, partition leases and maintenance on etcd; nothing when cluster.enabled is off.
    name: 'cluster',
    init({ config, metrics, logger }) {
      if (!config.cluster.enabled) return { value: undefined };
      const cluster = createCluster(config.cluster, {
        roles: config.roles,
        version: VERSION,
        httpAddr: config.http.addr,
        metrics,
        logger: logger.child({ component: 'cluster' }),
        dataDir: config.data_dir,
        sharding: {
          shards: config.store.shards,
          replicas: config.store.replicas,
          grace_ms: config.store.shard_grace_ms,
          serve_lag_messages: config.store.shard_serve_lag_messages,
          max_catching_up: config.store.shard_max_catching_up,
        },
      });
      return { component: cluster, value: cluster };
    },
  }),
  mod({
    name: 'cluster-admin',
    deps: ['cluster'],
    optional: ['materialize', 'bus'],
    init({ config }, view) {
      const cluster = view.get('cluster');
      if (!cluster) return { value: { routes: [] } };
      const materializer = view.find('materialize');
      const bus = config.bus.kind === 'jetstream' ? (view.find('bus') as JetStreamBus | undefined) : undefined;
      const routes = adminRoutes({
        cluster,
        providers: {
          replicas: () => (materializer ? [{ node: cluster.nodeId, ...materializer.lag() }] : []),
          streams: () => (bus ? { bus: bus.stats() } : null),
          // The shard map with each replica's last reported lag; null with one shard (every store node
          // keeps every event: see `replicas`).
          shards: () => (cluster.shards ? cluster.shards.current().assignment : null),
          sharding: () =>
            cluster.shards
              ? {
                  revision: cluster.shards.current().revision,
                  shards: cluster.shards.shards,
                  replicas: cluster.shards.current().replicas,
                  coordinator_here: cluster.shards.isCoordinator(),
                }
              : null,
        },
      });
      return { value: { routes: [routes] } };
    },
  }),
  mod({
    // Site identity and role in its etcd, the peer's status over NATS; nothing without cluster.site.
    name: 'site',
    deps: ['cluster', 'bus'],
    optional: ['event-store'],
    refuse({ config }) {
      if (config.cluster.site === undefined) return undefined;
      if (!config.cluster.enabled)
        return 'cluster.site needs cluster mode (cluster.enabled: true): the site record is kept in etcd';
      if (config.bus.kind !== 'jetstream')
        return 'cluster.site needs bus.kind: jetstream: events are replicated between the sites by JetStream';
      return undefined;
    },
    init({ config, metrics, logger }, view) {
      const cluster = view.get('cluster');
      if (!config.cluster.site || !cluster) return { value: { routes: [] } };
      const bus = view.get('bus') as JetStreamBus;
      const site = createSite(config.cluster, {
        session: cluster.session,
        connection: bus.connection,
        replication: () => bus.replication(),
        eventsLastSeq: async () => (await bus.streamPosition()).lastSeq,
        metrics,
        logger,
      });
      return { component: site, value: { site, routes: [drRoutes({ site, store: view.find('event-store') })] } };
    },
  }),
  mod({
    name: 'event-store',
    init({ config, metrics, logger }) {
      const store = createEventStore(config.store, {
        dataDir: config.data_dir,
        metrics,
        logger,
        engineArgs: engineBackupArgs(config.backup.dir),
      });
      return { component: store, value: store };
    },
  }),
  mod({
    name: 'bus',
    deps: ['cluster'],
    refuse({ config }, runs) {
      if (config.bus.kind === 'jetstream' || runs('materialize')) return undefined;
      if (!runs('intake-http') && !runs('intake-syslog')) return undefined;
      return `roles [${config.roles.join(', ')}] on the in-process bus (bus.kind: ${config.bus.kind}): events would be acknowledged to senders and then dropped, as no store runs in this process to commit them. Add the store role (or run all), or use bus.kind: jetstream.`;
    },
    init({ config, metrics, logger }, view) {
      // The replicated log on JetStream (publishes acknowledged by JetStream or the local spool), or the
      // in-process bus of a single node.
      const bus =
        config.bus.kind === 'jetstream'
          ? createJetStreamBus(config.bus.jetstream, {
              ...(config.cluster.enabled && config.cluster.site
                ? { site: { name: config.cluster.site, peer: config.cluster.peer_site } }
                : {}),
              dataDir: config.data_dir,
              shards: config.cluster.enabled ? config.store.shards : 1,
              metrics,
              logger: logger.child({ component: 'bus' }),
            })
          : createMemoryBus(config.bus, { metrics, logger });
      view.get('cluster')?.maintenance.trackInflight(() => bus.pending());
      return { component: bus, value: bus };
    },
  }),
  mod({
    // Store replicas serve ranges of their events to each other over NATS, and copy from a peer what the
    // stream no longer holds (a replica restored from an old backup, or new).
    name: 'range-copy',
    deps: ['bus', 'event-store'],
    init({ config, metrics, logger }, view) {
      if (config.bus.kind !== 'jetstream' || !config.store.copy.enabled) return { value: undefined };
      const copy = createRangeCopy(config.store.copy, {
        connection: (view.get('bus') as JetStreamBus).connection,
        store: view.get('event-store'),
        nodeId: nodeId(config),
        metrics,
        logger: logger.child({ component: 'range-copy' }),
      });
      return { component: copy, value: copy };
    },
  }),
  mod({
    // Store nodes commit the log into their own replica: the materializer on JetStream, a durable
    // subscription (acknowledged after the write) on the in-process bus.
    name: 'materialize',
    deps: ['bus', 'event-store', 'cluster'],
    optional: ['range-copy'],
    init({ config, metrics, logger }, view) {
      const bus = view.get('bus');
      const store = view.get('event-store');
      if (config.bus.kind !== 'jetstream') {
        bus.subscribe('store', (events) => store.write(events), { durable: true });
        return { value: undefined };
      }
      // Written by `vigil backup restore` into the folder it rebuilt.
      const restored = existsSync(join(config.data_dir, RESTORED_MARKER));
      const shardMap = view.get('cluster')?.shards;
      if (shardMap) {
        // Sharded events: one filtered consumer per shard the map gives this node.
        const replicas = createShardReplicas(config.store.materialize, {
          map: shardMap,
          stream: bus as JetStreamBus,
          store,
          nodeId: nodeId(config),
          metrics,
          logger: logger.child({ component: 'materialize' }),
          copy: view.find('range-copy'),
          copyRetryMs: config.store.copy.retry_interval_ms,
          retentionDays: config.store.retention_days,
          restored,
        });
        return { component: replicas, value: replicas };
      }
      const materializer = createMaterializer(config.store.materialize, {
        stream: bus as JetStreamBus,
        store,
        nodeId: nodeId(config),
        metrics,
        logger: logger.child({ component: 'materialize' }),
        copy: view.find('range-copy'),
        copyRetryMs: config.store.copy.retry_interval_ms,
        retentionDays: config.store.retention_days,
        restored,
      });
      return { component: materializer, value: materializer };
    },
  }),
  mod({
    // Answered by this node's replica; in a cluster, or on a node without one, by the other store nodes.
    name: 'search',
    deps: ['cluster'],
    optional: ['event-store', 'materialize'],
    init({ config, metrics }, view) {
      const cluster = view.get('cluster');
      const store = view.find('event-store');
      const materializer = view.find('materialize');
      let replicas: SearchReplicas | undefined;
      const lag = () => (materializer ? materializer.lag().lagMessages : 0);
      if (cluster && (config.bus.kind === 'jetstream' || !store)) {
        replicas = {
          self: () => {
            if (!materializer) return undefined;
            return { node: cluster.nodeId, lag_messages: lag() };
          },
          peers: () => storePeers(cluster),
        };
      }
      // A sharded store (S > 1): a store node answers searches by asking one replica of each shard, and
      // answers its own shards' parts to the other nodes. With one shard the coordinator stays inactive.
      let coordinator: SearchCoordinator | undefined;
      const routes = [];
      if (cluster && store) {
        const file = config.cluster.peer_token_file;
        const token = file === undefined ? undefined : readPeerToken(file);
        coordinator = createSearchCoordinator(config.search, {
          nodeId: cluster.nodeId,
          shardMap: () => shardMapOf(cluster),
          transport: createHttpShardTransport({
            addressOf: lastKnownAddresses(() => cluster.membership.nodes()),
            peerToken: () => {
              if (token === undefined) {
                throw new VigilError(
                  'peer_token_missing',
                  'cluster.peer_token_file is not set: a sharded store needs the peer token for its node-to-node searches',
                  { status: 503 },
                );
              }
              return token;
            },
          }),
          metrics,
        });
        routes.push(
          shardSearchRoutes({
            store,
            replica: () => ({ node: cluster.nodeId, lag_messages: lag() }),
            maxLimit: 10000,
            ...(materializer && 'serves' in materializer
              ? { serves: materializer.serves, holdsOnly: materializer.holdsOnly }
              : {}),
          }),
        );
      }
      routes.unshift(searchRoutes({ store, metrics, maxLimit: 10000, replicas, coordinator }));
      return { value: { routes, coordinator } };
    },
  }),
  mod({
    name: 'parse',
    init: ({ config }) => ({ value: createNormalizer(config.parse) }),
  }),
  mod({
    // Incidents, users, the audit log and the notification outbox: PGlite in <data_dir>/pg, or
    // PostgreSQL at postgres.url (VIGIL_POSTGRES_URL). Migrations run at start under an advisory lock.
    name: 'postgres',
    init({ config, logger }) {
      if (config.cluster.enabled && !config.postgres.url) {
        // Each node's PGlite is its own: behind a balancer, analysts would see one node's incidents at a time.
        logger.warn(
          'Cluster mode with the embedded PGlite: incidents, users, sessions and notifications stay on this node. Set postgres.url (VIGIL_POSTGRES_URL) on every node to share them.',
        );
      }
      const database = createDatabase(config.postgres, {
        dataDir: config.data_dir,
        logger,
        // The one list, which `vigil backup restore` replays too.
        migrations: SQL_MIGRATIONS,
      });
      return { component: database, value: { database, audit: createAuditLog(database.db) } };
    },
  }),
  mod({
    name: 'incidents',
    deps: ['postgres'],
    init({ config, metrics, logger }, view) {
      const { database, audit } = view.get('postgres');
      const incidents = createIncidentService(config.incidents, { db: database.db, metrics, logger, audit });
      return { component: incidents, value: { incidents, routes: [incidentRoutes({ incidents })] } };
    },
  }),
  mod({
    name: 'notify',
    deps: ['postgres'],
    optional: ['site'],
    init({ config, metrics, logger }, view) {
      const { database, audit } = view.get('postgres');
      const site = view.find('site')?.site;
      const notifier = createNotifier(config.notify, {
        db: database.db,
        metrics,
        logger,
        audit,
        nodeId: nodeId(config),
        // Two sites: only the active site sends, and never an alert of an epoch older than its own.
        ...(site
          ? { gate: { sending: () => site.role() === 'active', stale: (a: Alert) => staleEpoch(site, a) } }
          : {}),
      });
      return { component: notifier, value: { notifier, routes: [notificationRoutes({ notifier })] } };
    },
  }),
  mod({
    name: 'users',
    deps: ['postgres'],
    init({ config, metrics, logger, adminToken }, view) {
      const { database, audit } = view.get('postgres');
      const db = database.db;
      const auth = createUserAuthenticator(db, {
        adminToken: adminToken(),
        adminTenants: adminTenants(config),
        logger,
      });
      const users = createUserService(config.users, { db, audit, metrics, logger });
      return { value: { auth, routes: [userRoutes({ users, audit })] } };
    },
  }),
  mod({
    name: 'detector',
    deps: ['bus', 'event-store', 'postgres', 'cluster'],
    optional: ['site', 'search'],
    init({ config, metrics, logger: root }, view) {
      const store = view.get('event-store');
      const bus = view.get('bus');
      const logger = root.child({ component: 'detect' });
      const jetstream = config.bus.kind === 'jetstream';
      // On a single node the local alert table is the alert log that incidents and notify consume.
      const local = createAlertStore(store, { metrics, logger, outbox: !jetstream });
      const { alerts, correlation, records } = jetstream
        ? clusterDetection(
            config,
            bus as JetStreamBus,
            view.get('cluster'),
            local,
            metrics,
            logger,
            () => detector.ruleSet(),
            view.find('site')?.site,
          )
        : { alerts: local, correlation: undefined, records: undefined };
      const detector = createDetector(config.detect, {
        dataDir: config.data_dir,
        alerts,
        metrics,
        logger,
        correlation,
        backgroundTurns: !jetstream && config.bus.detection_overlap,
      });
      // In a cluster every detect node shares the durable `detect` consumer, acknowledged once the alerts are
      // in the alert stream; in-process, the alert-path module subscribes it with a committed position.
      // On a site of a two-site deployment only the active site detects: the consumer is idle on the standby.
      // A site that never detected makes the consumer at the events that arrive from its activation on.
      const site = view.find('site')?.site;
      if (jetstream && site) {
        const js = bus as JetStreamBus;
        site.trackOutputs(() => (alerts as AlertLog).behind());
        runWhileActive(
          site,
          'detect',
          {
            async start() {
              await js.ready();
              // Every replica of both sites refuses the alerts an older epoch raised since this one began.
              await (alerts as AlertLog).fenceEpoch(site.epoch(), site.changedAt());
              // Made now (the first activation): from the events stream's end at the activation command, so
              // the events received since it answered are evaluated too.
              const from = site.activatedAfterSeq() ?? (await js.streamPosition()).lastSeq;
              return js.subscribeStream('detect', (batch) => detector.handle(batch.events), {
                durable: true,
                startSequence: from + 1,
              });
            },
          },
          logger,
        );
      } else if (jetstream) bus.subscribe('detect', (events) => detector.handle(events), { durable: true });
      const routes = [
        alertRoutes({ alerts }),
        ruleRoutes({ detector, audit: view.get('postgres').audit }),
        huntRoutes({
          detector,
          store,
          coordinator: view.find('search')?.coordinator,
          maxEvents: config.detect.hunt_max_events,
          placeholders: config.detect.placeholders,
        }),
      ];
      return { component: detector, value: { detector, local, records, routes } };
    },
  }),
  mod({
    // Alerts reach incidents and notifications as consumers of the alert log with committed positions, and
    // detection (single node) consumes the event log with its own (ADR 0004).
    name: 'alert-path',
    deps: ['detector', 'incidents', 'notify', 'postgres', 'bus', 'event-store'],
    optional: ['site'],
    init({ config, metrics, logger: root }, view) {
      const { detector, local, records } = view.get('detector');
      const { incidents } = view.get('incidents');
      const { notifier } = view.get('notify');
      const logger = root.child({ component: 'alert-path' });
      const targets = [
        { name: 'incidents', handle: (alerts: Alert[]) => incidents.ingestAlerts(alerts) },
        { name: 'notify', handle: (alerts: Alert[]) => notifier.enqueue(alerts) },
      ];
      if (records) {
        // One durable consumer per database: shared by the nodes of one PostgreSQL, per node with PGlite.
        const suffix = config.postgres.url ? '' : `-${nodeId(config)}`;
        const site = view.find('site')?.site;
        const consumers = targets.map((t) => {
          const c = createAlertStreamConsumer({
            records,
            durable: `${t.name}${suffix}`,
            handle: t.handle,
            ...(site ? { stale: (a: Alert) => staleEpoch(site, a) } : {}),
          });
          // Two sites: the standby links and notifies nothing; its outputs come from the active site.
          return site ? activeOnlyComponent(site, c, logger) : c;
        });
        return { component: componentGroup('alert-path', consumers), value: undefined };
      }
      const db = view.get('postgres').database.db;
      const inc = config.incidents;
      const consumers = targets.map((t) =>
        createAlertConsumer({
          name: t.name,
          outbox: local,
          positions: dbPositionStore(db, t.name),
          handle: t.handle,
          batchMaxAlerts: Math.min(inc.batch_max_alerts, inc.max_pending_alerts),
          retryInitialMs: inc.retry_initial_ms,
          retryMaxMs: inc.retry_max_ms,
          metrics,
          logger,
        }),
      );
      const feed = createLocalDetectionFeed({
        dataDir: config.data_dir,
        bus: view.get('bus'),
        store: view.get('event-store'),
        handle: (events) => detector.handle(events),
        metrics,
        logger,
      });
      return { component: componentGroup('alert-path', [...consumers, feed]), value: undefined };
    },
  }),
  mod({
    // Two sites: the active site's incident changes go to the peer as snapshots over its outputs stream
    // (sourced by the peer's, like the events), and the peer's are applied here (ADR 0009).
    name: 'site-outputs',
    deps: ['postgres', 'bus', 'incidents'],
    optional: ['site'],
    init({ config, metrics, logger }, view) {
      const site = view.find('site')?.site;
      if (!site || config.bus.kind !== 'jetstream') return { value: undefined };
      const bus = view.get('bus') as JetStreamBus;
      const js = config.bus.jetstream;
      const own = streamNames(js, site.siteName).outputs;
      const peer = streamNames(js, site.peer).outputs;
      const records = createRecordStream(
        bus,
        {
          name: own.name,
          subject: own.subject,
          maxAgeMs: js.max_age_seconds * 1000,
          duplicateWindowMs: js.duplicate_window_ms,
          publishMaxWaitMs: Math.max(10_000, js.publish_max_wait_ms),
          pullExpiresMs: js.consumer.pull_expires_ms,
          sources: [{ name: peer.name, filterSubject: peer.subject, domain: site.peer }],
        },
        logger,
      );
      const outputs = createOutputReplication(DEFAULT_OUTPUTS_OPTIONS, {
        db: view.get('postgres').database.db,
        records,
        peerSubject: peer.subject,
        site,
        // One applier per database: shared by the nodes of one PostgreSQL, per node with PGlite.
        durable: `outputs${config.postgres.url ? '' : `-${nodeId(config)}`}`,
        metrics,
        logger,
      });
      site.trackOutputs(() => outputs.behind());
      return { component: outputs, value: outputs };
    },
  }),
  mod({
    name: 'intake-http',
    deps: ['bus', 'parse', 'cluster'],
    optional: ['event-store'],
    // Intake opens once what it hands events to runs: the store writer and the alert path.
    after: ['materialize', 'alert-path'],
    init({ config, metrics, logger }, view) {
      const bus = view.get('bus');
      const cluster = view.get('cluster');
      const intake = createHttpIntake(config.ingest, {
        normalizer: view.get('parse'),
        publish: (events) => bus.publish(events),
        admitting: cluster ? () => cluster.maintenance.accepting() : undefined,
        parseMaxFields: config.parse.max_fields,
        parse: config.parse,
        // The in-process bus hands these very events to the store, which then writes the threads' rows.
        buildRows: config.bus.kind !== 'jetstream',
        logger: logger.child({ component: 'intake-http' }),
        metrics,
        keys: createIdempotencyKeys({
          dir: join(config.data_dir, 'ingest-keys'),
          maxKeys: config.ingest.idempotency_max_keys,
          metrics,
          logger,
          store: view.find('event-store'),
        }),
      });
      return { component: intake, value: { routes: [ingestRoutes({ intake, metrics })] } };
    },
  }),
  mod({
    name: 'intake-syslog',
    deps: ['bus', 'parse', 'cluster'],
    after: ['materialize', 'alert-path'],
    init({ config, metrics, logger }, view) {
      const bus = view.get('bus');
      const normalizer = view.get('parse');
      const cluster = view.get('cluster');
      const intake = createSyslogIntake(config.syslog, {
        publish: (events) => bus.publish(events),
        parse: (line, pctx) => normalizer.fromSyslog(line, pctx),
        admitting: cluster ? () => cluster.maintenance.accepting() : undefined,
        metrics,
        logger: logger.child({ component: 'syslog' }),
      });
      return { component: intake, value: undefined };
    },
  }),
  mod({
    // Backups of this node's replica and of the SQL state (when this node runs the postgres module): on
    // request (POST /admin/backups) and on backup.schedule.
    name: 'backup',
    deps: ['event-store'],
    optional: ['postgres'],
    after: ['intake-http', 'intake-syslog'],
    init(base, view) {
      const { config } = base;
      const backups = createBackups(config.backup, {
        dataDir: config.data_dir,
        nodeId: nodeId(config),
        store: view.get('event-store'),
        db: view.find('postgres')?.database.db,
        vigilConfig: config,
        metrics: base.metrics,
        logger: base.logger,
      });
      return { component: backups, value: { routes: [backupRoutes({ backups })] } };
    },
  }),
  mod({
    // Vigil's own health, published on the node's bus like any event (stored, detected) into the health
    // tenant; on every node with a bus (an api-only node has none). Started once the pipeline runs.
    name: 'selfmon',
    deps: ['bus', 'cluster'],
    optional: ['backup', 'site'],
    after: ['materialize', 'alert-path', 'intake-http', 'intake-syslog'],
    init({ config, metrics, logger }, view) {
      if (!config.selfmon.enabled) return { value: undefined };
      const bus = view.get('bus');
      const js = config.bus.kind === 'jetstream' ? (bus as JetStreamBus) : undefined;
      const schedule =
        view.find('backup') && config.backup.schedule ? parseSchedule(config.backup.schedule) : undefined;
      const selfmon = createSelfmon(config.selfmon, {
        publish: (events) => bus.publish(events),
        tenant: healthTenant(config),
        nodeId: nodeId(config),
        site: config.cluster.enabled ? config.cluster.site : undefined,
        dataDir: config.data_dir,
        spool: js ? () => js.stats().spool : undefined,
        peerLags: js && view.find('site')?.site ? () => js.replication() : undefined,
        backupSchedule: schedule,
        metrics,
        logger,
      });
      return { component: selfmon, value: undefined };
    },
  }),
  mod({
    // The HTTP API, started last so that ready means every component is up; it serves the routes of the
    // modules that run on this node.
    name: 'server',
    deps: ['users'],
    optional: ROUTED,
    after: ['alert-path', 'intake-syslog'],
    init({ config, metrics, logger, components }, view) {
      const routes: RouteGroup[] = [healthRoutes({ components, metrics })];
      for (const name of ROUTED) routes.push(...(view.find(name)?.routes ?? []));
      routes.push(consoleRoutes());
      const peerTokenFile = config.cluster.enabled ? config.cluster.peer_token_file : undefined;
      const server = createApiServer(config.http, {
        auth: view.get('users').auth,
        metrics,
        logger,
        routes,
        peerAuth: peerTokenFile === undefined ? undefined : peerTokenCheck(readPeerToken(peerTokenFile)),
      });
      return { component: server, value: server };
    },
  }),
];

/**
 * The shard map, once cluster mode keeps one (`cluster.shards`, src/cluster/shards: issue 15, another
 * branch); none, or one shard, leaves every search on the single-replica path.
 */
function shardMapOf(cluster: Cluster): ShardMapView | undefined {
  return (cluster as Cluster & { shards?: { current(): ShardMapView } }).shards?.current();
}

/**
 * Detection over JetStream: alerts go through the replicated alert log, so every node stores and serves
 * the same alerts; with cluster mode on as well, correlations run on the owners of their partitions.
 */
function clusterDetection(
  config: Readonly<VigilConfig>,
  bus: JetStreamBus,
  cluster: Cluster | undefined,
  local: AlertStore,
  metrics: Registry,
  logger: Logger,
  ruleSet: () => CompiledRuleSet,
  site: Site | undefined,
) {
  const js = config.bus.jetstream;
  const names = streamNames(js, config.cluster.enabled ? config.cluster.site : undefined);
  // Two sites: the alert stream sources the peer's alert records (only those it raised itself: no loop).
  const peerAlerts = site ? streamNames(js, site.peer).alerts : undefined;
  const stream = (kind: 'alerts' | 'matches', maxAgeMs: number) =>
    createRecordStream(
      bus,
      {
        name: names[kind].name,
        subject: names[kind].subject,
        maxAgeMs,
        duplicateWindowMs: js.duplicate_window_ms,
        publishMaxWaitMs: Math.max(10_000, js.publish_max_wait_ms),
        pullExpiresMs: js.consumer.pull_expires_ms,
        ...(kind === 'alerts' && peerAlerts && site
          ? { sources: [{ name: peerAlerts.name, filterSubject: peerAlerts.subject, domain: site.peer }] }
          : {}),
      },
      logger,
    );
  const records = stream('alerts', js.max_age_seconds * 1000);
  const alerts = createAlertLog(local, {
    records,
    nodeId: nodeId(config),
    logger,
    ...(site ? { site: { name: site.siteName, epoch: () => site.epoch() } } : {}),
  });
  if (!cluster) return { alerts, correlation: undefined, records };
  const correlation = createPartitionedCorrelation({
    records: stream('matches', config.detect.match_retention_hours * 3_600_000),
    alerts,
    partitions: cluster.partitions,
    ruleSet,
    maxCorrelationState: config.detect.max_correlation_state,
    metrics,
    logger,
  });
  return { alerts, correlation, records };
}

/** An alert raised at a site epoch older than this site's own: from before a failover, never to be handed on. */
function staleEpoch(site: Site, alert: Alert): boolean {
  return alert.epoch !== undefined && alert.epoch < site.epoch();
}

/**
 * The tenant of Vigil's health events: `selfmon.tenant`, else the HTTP intake's tenant, the bootstrap admin's
 * own. Tenants' users see it only when it is granted to them, as any tenant.
 */
function healthTenant(config: Readonly<VigilConfig>): string {
  return config.selfmon.tenant ?? config.ingest.tenant;
}

/** The admin token's tenants: the intakes' and the health events' (the first is where it ingests). */
function adminTenants(config: Readonly<VigilConfig>): string[] {
  return [...new Set([config.ingest.tenant, config.syslog.tenant, healthTenant(config)])];
}

/** The modules (roles included) that run for `roles`, in start order. */
export function modulesFor(roles: readonly string[]): string[] {
  return resolveModules(MODULES, roles).map((m) => m.name);
}

/** A running Vigil process: its components in start order. */
export interface App {
  components: Component[];
  api?: ApiServer;
  start(): Promise<void>;
  stop(deadline: number): Promise<void>;
}

/**
 * Builds the modules for the configured roles (nothing is opened yet). A configuration that cannot keep
 * Vigil's promises (events acknowledged and then dropped) is refused here with a ConfigError.
 */
export function createApp(config: Readonly<VigilConfig>, logger: Logger): App {
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics, prefix: 'vigil_process_' });
  registerDiskMetrics(metrics, config.data_dir);
  let token: string | undefined;
  const adminToken = () => {
    if (token !== undefined) return token;
    const resolved = resolveAdminToken(config.data_dir, config.auth.admin_token);
    if (resolved.generated) {
      // Printed once, on the first start; afterwards it is only in <data_dir>/admin-token (mode 0600).
      process.stdout.write(`Vigil admin token (saved in ${config.data_dir}/admin-token): ${resolved.token}\n`);
    }
    token = resolved.token;
    return token;
  };
  const components: Component[] = [];
  const graph = buildModules(MODULES, config.roles, {
    config,
    logger,
    metrics,
    adminToken,
    components: () => components,
  });
  components.push(...graph.components);
  const apiServer = graph.values.get('server') as ApiServer | undefined;

  const started: Component[] = [];
  return {
    components,
    api: apiServer,
    async start() {
      for (const c of components) {
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
