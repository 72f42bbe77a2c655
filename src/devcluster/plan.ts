import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import type { BinaryName, CoreBinary } from './binaries.ts';
import { DevClusterError } from './errors.ts';
import { type BalancerSpec, type HaproxyCheck, type HaproxyServer, planBalancer } from './haproxy.ts';

/** What a member of the dev cluster is. */
/** `link`: the relay between the two sites of `up --sites 2 --link-relay` (src/devcluster/link.ts). */
export type MemberKind = 'nats' | 'etcd' | 'vigil' | 'haproxy' | 'link';

/** One process of the dev cluster as recorded in `<dir>/state.json`: how to launch it and what runs now. */
export interface MemberRecord {
  kind: MemberKind;
  /** `nats-1`, `etcd-2`, `vigil-3`: the name the CLI takes (`a-vigil-1` in a two-site cluster). */
  name: string;
  /** The site it belongs to, in a two-site cluster (`up --sites 2`). */
  site?: string;
  command: string;
  args: string[];
  /** Working folder of the process (its own folder under the cluster's). */
  cwd: string;
  log: string;
  /** Answers 200 (etcd: `{"health":"true"}`) once the member is ready. */
  ready_url: string;
  /**
   * Where to reach it: `client`, `cluster`, `monitor` (nats), `client`, `peer` (etcd), `http`, `syslog`,
   * `relp`, `admin_token_file` (vigil), `http`, `syslog`, `relp`, `stats` (haproxy), `leafnode`, `control`
   * (link).
   */
  addresses: Record<string, string>;
  /** Files the member owns (configuration, data): shown by status, kept by down. */
  files: Record<string, string>;
  pid: number | null;
  /** Start time of that PID (/proc/<pid>/stat field 22), so a reused PID is never signalled. */
  pid_start: string | null;
  state: 'running' | 'stopped';
  started_at: string | null;
  stopped_at: string | null;
  /**
   * haproxy: what its configuration is rendered from, but the servers, which are the Vigil members recorded
   * at the time (`add` renders and reloads it again). Absent in a state written before `add` did so.
   */
  balancer?: BalancerSpec;
  /**
   * haproxy: SHA-256 of the configuration its running master loaded: the file when it started, or the last
   * reload whose success it logged. A configuration written but not loaded (a failed reload) differs, so the
   * next `add` or `reload-balancer` reloads again. Absent in a state written before.
   */
  balancer_loaded?: string;
  /** haproxy: the last failed update of its configuration, until a reload or a start succeeds. */
  balancer_error?: BalancerError;
}

/** A failed balancer update as the state records it (and `status` shows it). */
export interface BalancerError {
  /** `lb_config_invalid` or `lb_reload_failed`. */
  code: string;
  /** The first line of the error (the balancer's log holds the rest). */
  message: string;
  at: string;
}

/** `<dir>/state.json`. */
export interface DevClusterState {
  version: 1;
  dir: string;
  created_at: string;
  admin_token_file: string;
  members: MemberRecord[];
}

/** Addresses a Vigil node is configured with: every NATS server and etcd member by default. */
export interface NodeEndpoints {
  nats: string[];
  etcd: string[];
}

/** What a dev cluster is made of; every field but `dir` has a default. */
export interface DevClusterOptions {
  /** Folder of configs, data, logs and state.json (created). */
  dir: string;
  /** Vigil nodes, `vigil-1..N`; default 3 (per site with `sites`). */
  nodes?: number;
  /** 2: two sites `a` and `b`, each a cluster of its own linked by a NATS leafnode (src/devcluster/sites.ts). */
  sites?: number;
  /**
   * With `sites: 2`: b's leafnode goes through a relay of its own (`link-1`), so that killing it cuts the
   * sites apart and restarting it heals them (src/devcluster/link.ts).
   */
  linkRelay?: boolean;
  /** Port allocator shared by several plans (the sites of one cluster), so that no port is given twice. */
  port?: PortAllocator;
  /** nats-server processes (one JetStream cluster); default 3. */
  natsServers?: number;
  /** etcd members; default 3. */
  etcdMembers?: number;
  /** Deep-merged into every Vigil node's generated configuration (tests tune timings with it). */
  vigilConfig?: Record<string, unknown>;
  /** Vigil's log level; default `info`. */
  logLevel?: string;
  /**
   * The NATS and etcd addresses a node is configured with (default: all of them). The fault harness routes
   * one node through proxies it can cut, to partition that node from the rest.
   */
  endpointsFor?: (node: string, all: NodeEndpoints) => NodeEndpoints | Promise<NodeEndpoints>;
  /**
   * Runs a node inside a network namespace (`ip netns exec <netns>`), its HTTP API and syslog bound to
   * `host` there. The fault harness places the node it partitions this way.
   */
  placementFor?: (node: string) => { netns: string; host: string } | undefined;
  /** Also run HAProxy (`haproxy-1`) in front of the Vigil nodes: HTTP, syslog TCP and RELP (src/devcluster/haproxy.ts). */
  lb?: boolean;
  /** With `lb`: overrides of the balancer's health check timing (tests on an overloaded machine). */
  lbCheck?: Partial<HaproxyCheck>;
}

/** The Vigil CLI of this checkout. */
export const VIGIL_BIN = resolve(import.meta.dirname, '../../bin/vigil');

function tcpFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = createServer();
    s.once('error', () => done(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => done(true)));
  });
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = createSocket('udp4');
    s.once('error', () => done(false));
    s.bind(port, '127.0.0.1', () => s.close(() => done(true)));
  });
}

/** Ports to choose from, both included. */
export interface PortRange {
  min: number;
  max: number;
}

/** A port allocator: each call gives a port not given before, within `range` (belowEphemeralPorts by default). */
export type PortAllocator = (range?: PortRange) => Promise<number>;

/**
 * Ports below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`, 32768-60999 on Linux by default):
 * no outgoing connection takes one as its source port meanwhile. A member binds its ports long after the plan
 * (HAProxy once the nodes are ready; the link relay again after each cut): with ports in the range, the
 * two-site test's balancer failed to bind one (EADDRINUSE), and the relay's readiness probe once connected to
 * itself on its port (TCP self-connect). Undefined when the range starts too low to leave room below it.
 */
export function belowEphemeralPorts(): PortRange | undefined {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    // not Linux: the kernel default of most systems
  }
  return Number.isInteger(low) && low > 21024 ? { min: 20000, max: low - 1 } : undefined;
}

/** Allocates loopback ports free for TCP and UDP alike (syslog uses one number for both), never twice. */
export function portAllocator(): PortAllocator {
  const taken = new Set<number>();
  const plannable = belowEphemeralPorts() ?? { min: 20000, max: 59999 };
  return async (range = plannable) => {
    for (let i = 0; i < 500; i++) {
      const port = range.min + Math.floor(Math.random() * (range.max - range.min + 1));
      if (taken.has(port)) continue;
      if ((await tcpFree(port)) && (await udpFree(port))) {
        taken.add(port);
        return port;
      }
    }
    throw new Error('no free loopback port found');
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `over` merged into `base`, recursively for mappings; lists and scalars replace. */
export function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isObject(v) && isObject(out[k]) ? deepMerge(out[k] as Record<string, unknown>, v) : v;
  }
  return out;
}

/** A new admin token, in the shape Vigil generates itself. */
export function newAdminToken(): string {
  return `vgl_${randomBytes(24).toString('base64url')}`;
}

/** The members of a new cluster and the files to write for them, before anything is written or started. */
export interface Plan {
  state: DevClusterState;
  /** path -> content (and mode) to write before the first start. */
  files: { path: string; content: string; mode: number }[];
  /** Folders to create. */
  dirs: string[];
}

function blank(
  kind: MemberKind,
  name: string,
  dir: string,
): Pick<MemberRecord, 'kind' | 'name' | 'cwd' | 'log' | 'pid' | 'pid_start' | 'state' | 'started_at' | 'stopped_at'> {
  return {
    kind,
    name,
    cwd: join(dir, name),
    log: join(dir, 'logs', `${name}.log`),
    pid: null,
    pid_start: null,
    state: 'stopped',
    started_at: null,
    stopped_at: null,
  };
}

/**
 * Plans a dev cluster under `opts.dir`: free loopback ports for every listener, a nats-server config per
 * server (one JetStream cluster), etcd flags per member (one raft cluster), a Vigil YAML config per node
 * (all roles, cluster mode on etcd, the JetStream bus) and one shared admin token.
 */
export async function planDevCluster(
  opts: DevClusterOptions,
  binaries: Record<CoreBinary, string> & Partial<Record<BinaryName, string>>,
): Promise<Plan> {
  const dir = resolve(opts.dir);
  const nodes = opts.nodes ?? 3;
  const natsCount = opts.natsServers ?? 3;
  const etcdCount = opts.etcdMembers ?? 3;
  const port = opts.port ?? portAllocator();
  const files: Plan['files'] = [];
  const dirs = [join(dir, 'logs')];
  const members: MemberRecord[] = [];
  const tokenFile = join(dir, 'admin-token');
  const token = newAdminToken();
  files.push({ path: tokenFile, content: `${token}\n`, mode: 0o600 });
  // The nodes' own credential for node-to-node calls (a shard's part of a search); no client holds it.
  const peerTokenFile = join(dir, 'peer-token');
  files.push({ path: peerTokenFile, content: `${randomBytes(32).toString('hex')}\n`, mode: 0o600 });

  const nats: { name: string; client: number; route: number; monitor: number }[] = [];
  for (let i = 1; i <= natsCount; i++) {
    nats.push({ name: `nats-${i}`, client: await port(), route: await port(), monitor: await port() });
  }
  const routes = nats.map((s) => `"nats-route://127.0.0.1:${s.route}"`).join(', ');
  for (const s of nats) {
    const m = blank('nats', s.name, dir);
    const storeDir = join(m.cwd, 'store');
    const configFile = join(m.cwd, 'nats.conf');
    dirs.push(storeDir);
    files.push({
      path: configFile,
      mode: 0o644,
      content: [
        '# Generated by `vigil dev-cluster up`: one server of a 3-server JetStream cluster on loopback.',
        `server_name: "${s.name}"`,
        `listen: "127.0.0.1:${s.client}"`,
        `http: "127.0.0.1:${s.monitor}"`,
        'jetstream {',
        `  store_dir: "${storeDir}"`,
        '  max_memory_store: 256MB',
        '  max_file_store: 16GB',
        '}',
        'cluster {',
        '  name: "vigil-dev"',
        `  listen: "127.0.0.1:${s.route}"`,
        `  routes: [${routes}]`,
        // Clients use exactly the servers their config lists (gossiped URLs would bypass the fault
        // harness's proxies); every Vigil node is given every server anyway.
        '  no_advertise: true',
        '}',
        '',
      ].join('\n'),
    });
    members.push({
      ...m,
      command: binaries['nats-server'],
      args: ['-c', configFile],
      // The server and its JetStream meta group, not every stream and consumer replica: on 2.9 a consumer
      // deleted and made again under the same name while this server was down can stay "not current" here
      // for minutes, though its leader elsewhere serves it. Callers that need a stream's replicas current
      // check them (the fault suite does for the event stream).
      ready_url: `http://127.0.0.1:${s.monitor}/healthz?js-server-only=true`,
      addresses: {
        client: `nats://127.0.0.1:${s.client}`,
        cluster: `nats-route://127.0.0.1:${s.route}`,
        monitor: `http://127.0.0.1:${s.monitor}`,
      },
      files: { config: configFile, store: storeDir },
    });
  }

  const etcd: { name: string; client: number; peer: number }[] = [];
  for (let i = 1; i <= etcdCount; i++) etcd.push({ name: `etcd-${i}`, client: await port(), peer: await port() });
  const initialCluster = etcd.map((s) => `${s.name}=http://127.0.0.1:${s.peer}`).join(',');
  const clusterToken = `vigil-dev-${randomBytes(6).toString('hex')}`;
  for (const s of etcd) {
    const m = blank('etcd', s.name, dir);
    const dataDir = join(m.cwd, 'data');
    dirs.push(m.cwd);
    members.push({
      ...m,
      command: binaries.etcd,
      // initial-cluster* flags only matter on the first start; a restart reads the member's data folder.
      args: [
        `--name=${s.name}`,
        `--data-dir=${dataDir}`,
        `--listen-client-urls=http://127.0.0.1:${s.client}`,
        `--advertise-client-urls=http://127.0.0.1:${s.client}`,
        `--listen-peer-urls=http://127.0.0.1:${s.peer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${s.peer}`,
        `--initial-cluster=${initialCluster}`,
        '--initial-cluster-state=new',
        `--initial-cluster-token=${clusterToken}`,
        // Loopback round trips are sub-millisecond, but a loaded laptop stalls: 100/1000 ms avoids
        // needless elections while keeping failover around a second.
        '--heartbeat-interval=100',
        '--election-timeout=1000',
        '--logger=zap',
        '--log-level=warn',
      ],
      ready_url: `http://127.0.0.1:${s.client}/health`,
      addresses: { client: `http://127.0.0.1:${s.client}`, peer: `http://127.0.0.1:${s.peer}` },
      files: { data: dataDir },
    });
  }

  const all: NodeEndpoints = {
    nats: nats.map((s) => `nats://127.0.0.1:${s.client}`),
    etcd: etcd.map((s) => `http://127.0.0.1:${s.client}`),
  };
  const backends: HaproxyServer[] = [];
  for (let i = 1; i <= nodes; i++) {
    const name = `vigil-${i}`;
    const m = blank('vigil', name, dir);
    const http = await port();
    const syslog = await port();
    const relp = await port();
    const dataDir = join(m.cwd, 'data');
    const configFile = join(m.cwd, 'vigil.yml');
    const endpoints = opts.endpointsFor ? await opts.endpointsFor(name, all) : all;
    const placed = opts.placementFor?.(name);
    const host = placed?.host ?? '127.0.0.1';
    const config = deepMerge(
      {
        data_dir: dataDir,
        log: { level: opts.logLevel ?? 'info' },
        roles: ['all'],
        // The balancer (--lb) forwards the client's address: on loopback it is the only proxy there is.
        http: { addr: `${host}:${http}`, ...(opts.lb ? { trusted_proxies: ['127.0.0.1'] } : {}) },
        syslog: { host, udp_port: syslog, tcp_port: syslog, relp_port: relp },
        bus: { kind: 'jetstream', jetstream: { servers: endpoints.nats, client_name: name } },
        cluster: {
          enabled: true,
          node_id: name,
          etcd_endpoints: endpoints.etcd,
          advertise_addr: `${host}:${http}`,
          peer_token_file: peerTokenFile,
        },
      },
      opts.vigilConfig ?? {},
    );
    dirs.push(dataDir);
    files.push({
      path: configFile,
      mode: 0o644,
      content: `# Generated by \`vigil dev-cluster up\`; the admin token is in ${tokenFile}.\n${stringify(config)}`,
    });
    // The shared token goes where Vigil looks for its own (<data_dir>/admin-token): never in a config
    // file, a command line or the environment.
    files.push({ path: join(dataDir, 'admin-token'), content: `${token}\n`, mode: 0o600 });
    members.push({
      ...m,
      // `ip netns exec` execs the CLI, which execs node: the recorded PID is the node's.
      command: placed ? 'ip' : VIGIL_BIN,
      args: [...(placed ? ['netns', 'exec', placed.netns, VIGIL_BIN] : []), 'start', '--config', configFile],
      ready_url: `http://${host}:${http}/health/ready`,
      addresses: {
        http: `http://${host}:${http}`,
        syslog: `${host}:${syslog} (udp+tcp)`,
        relp: `${host}:${relp}`,
        admin_token_file: tokenFile,
      },
      files: { config: configFile, data: dataDir },
    });
    backends.push({ name, host, http_port: http, syslog_tcp_port: syslog, relp_port: relp });
  }

  if (opts.lb) {
    if (!binaries.haproxy) throw new DevClusterError('binary_missing', 'a dev cluster with --lb needs haproxy');
    const lb = await planBalancer({ dir, binary: binaries.haproxy, port, servers: backends, check: opts.lbCheck });
    members.push(lb.member);
    files.push(lb.file);
    dirs.push(lb.dir);
  }

  return {
    state: { version: 1, dir, created_at: new Date().toISOString(), admin_token_file: tokenFile, members },
    files,
    dirs,
  };
}
