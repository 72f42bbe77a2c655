import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer, type Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  type DevCluster,
  type DevClusterOptions,
  type MemberRecord,
  openDevCluster,
  upDevCluster,
} from '../../src/devcluster/index.ts';
import { readReply } from './http.ts';
import { createNodeNamespace, type NodeNamespace } from './netns.ts';
import { waitFor } from './wait.ts';

/**
 * A dev cluster (`vigil dev-cluster`'s internals: 3 nats-server, 3 etcd, N Vigil nodes, each a process of
 * its own on loopback) started by a test, with what fault tests need on top: API calls with the admin
 * token, the JetStream stream leader, the etcd leader, and a network partition of chosen nodes.
 */
export interface TestDevCluster {
  /** The CLI's cluster object: kill, restart, signal, stop by member name. */
  cluster: DevCluster;
  dir: string;
  token: string;
  /** The Vigil nodes, `vigil-1..N`, with their HTTP base URL. */
  nodes: { name: string; url: string }[];
  /** HAProxy in front of the nodes (started with `lb`): its HTTP base URL and its stats page. */
  balancer?: { name: string; url: string; stats: string };
  /** A member's record (PID, addresses). */
  member(name: string): MemberRecord;
  /** Calls a node's API with the admin token; the body is parsed JSON (or text). */
  api(node: string, method: 'GET' | 'POST', path: string, body?: string): Promise<{ status: number; body: any }>;
  /** The name (`nats-2`) of the nats-server leading `stream` now. */
  streamLeader(stream?: string): Promise<string>;
  /** The stream's replicas as the leader sees them: name, current, lag (messages behind). */
  streamReplicas(stream?: string): Promise<{ name: string; current: boolean; lag: number; leader: boolean }[]>;
  /** The stream's last sequence now. */
  streamLastSeq(stream?: string): Promise<number>;
  /** The name (`etcd-1`) of the etcd member that is the raft leader now. */
  etcdLeader(): Promise<string>;
  /**
   * Cuts a node (one given in `partitionable`, which runs in a network namespace of its own) from NATS
   * and etcd: its data link goes down, packets are dropped, nobody is told. Its HTTP API stays reachable
   * over the namespace's management link.
   */
  partition(node: string): void;
  /** Heals the partition: held traffic flows again, in order. */
  heal(node: string): void;
  /**
   * Adds `count` Vigil nodes (`vigil dev-cluster add`) and waits until each is ready; they are appended to
   * `nodes`. Resolves to their names.
   */
  add(count?: number): Promise<string[]>;
  /** Stops every member by PID (SIGKILL when `hard`), closes proxies and removes the folder unless keepDir. */
  down(opts?: { hard?: boolean }): Promise<void>;
}

/** A TCP forwarder on the host end of a namespace's data link, to one NATS or etcd member on loopback. */
interface Forwarder {
  url: string;
  close(): Promise<void>;
}

async function startForwarder(target: string, bindHost: string): Promise<Forwarder> {
  const { hostname, port: targetPort, protocol } = new URL(target);
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = new Socket();
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    upstream.connect(Number(targetPort), hostname);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  // Port 0: the kernel picks one that is free on this address (a port chosen beforehand can be taken meanwhile).
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, bindHost, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `${protocol}//${bindHost}:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const started = new Set<DevCluster>();

function killAll(): void {
  for (const c of started) {
    for (const m of c.status()) {
      try {
        if (m.state === 'running') c.signal(m.name, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
  }
}

// A test process that dies half-way must not leave members running (they are detached): SIGKILL every
// recorded PID on exit, and on SIGINT/SIGTERM before dying of the signal as it would have.
process.once('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal);
  });
}

/**
 * Starts a dev cluster of `nodes` Vigil nodes (3 by default) in a temporary folder and waits until every
 * node is ready. Nodes listed in `partitionable` run in network namespaces (test/harness/netns.ts) and reach
 * NATS and etcd over a link the test can take down.
 */
export async function startDevCluster(
  opts: {
    nodes?: number;
    vigilConfig?: Record<string, unknown>;
    partitionable?: string[];
    logLevel?: string;
    keepDir?: boolean;
    readyTimeoutMs?: number;
    /** Also start HAProxy in front of the nodes (`vigil dev-cluster up --lb`). */
    lb?: boolean;
    /** Overrides of HAProxy's health check timing. */
    lbCheck?: DevClusterOptions['lbCheck'];
  } = {},
): Promise<TestDevCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-devcluster-'));
  const forwarders: Forwarder[] = [];
  const namespaces = new Map<string, NodeNamespace>();
  let cluster: DevCluster | undefined;
  const closeNetwork = async () => {
    await Promise.all(forwarders.splice(0).map((f) => f.close()));
    for (const ns of namespaces.values()) ns.destroy();
    namespaces.clear();
  };
  try {
    for (const node of opts.partitionable ?? []) namespaces.set(node, createNodeNamespace());
    cluster = await upDevCluster({
      dir,
      nodes: opts.nodes ?? 3,
      lb: opts.lb,
      lbCheck: opts.lbCheck,
      logLevel: opts.logLevel ?? 'warn',
      // Tests count the alerts of the rules they plant: the starter rules stay off unless a test asks.
      vigilConfig: {
        ...opts.vigilConfig,
        detect: { starter_rules: false, ...(opts.vigilConfig?.detect as Record<string, unknown> | undefined) },
        // Nor do the nodes' own health events add to the events tests count, unless a test asks.
        selfmon: { enabled: false, ...(opts.vigilConfig?.selfmon as Record<string, unknown> | undefined) },
      },
      readyTimeoutMs: opts.readyTimeoutMs ?? 120000,
      async endpointsFor(node, all) {
        const ns = namespaces.get(node);
        if (!ns) return all;
        const via = async (urls: string[]) => {
          // Each kept as it starts: when one fails, the others are still closed by the cleanup below.
          const list = await Promise.all(
            urls.map(async (u) => {
              const f = await startForwarder(u, ns.hostDataIp);
              forwarders.push(f);
              return f;
            }),
          );
          return list.map((f) => f.url);
        };
        return { nats: await via(all.nats), etcd: await via(all.etcd) };
      },
      placementFor(node) {
        const ns = namespaces.get(node);
        return ns && { netns: ns.name, host: ns.nodeMgmtIp };
      },
    });
  } catch (err) {
    // upDevCluster stopped what it started; a cluster whose planning failed has nothing running.
    try {
      await openDevCluster(dir).stop(undefined, { signal: 'SIGKILL' });
    } catch {
      // no state.json: nothing was started
    }
    await closeNetwork();
    if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const c = cluster;
  started.add(c);
  const token = c.adminToken();
  const nodes = c
    .state()
    .members.filter((m) => m.kind === 'vigil')
    .map((m) => ({ name: m.name, url: m.addresses.http }));
  const lb = c.state().members.find((m) => m.kind === 'haproxy');
  const natsMembers = c.state().members.filter((m) => m.kind === 'nats');
  const etcdMembers = c.state().members.filter((m) => m.kind === 'etcd');

  let admin: NatsConnection | undefined;
  const jsm = async () => {
    if (!admin || admin.isClosed()) {
      admin = await connect({
        servers: natsMembers.map((m) => m.addresses.client),
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
        timeout: 2000,
      });
    }
    return jetstreamManager(admin, { timeout: 2000 });
  };
  const namespaceOf = (node: string) => {
    const ns = namespaces.get(node);
    if (!ns) throw new Error(`${node} was not started as partitionable`);
    return ns;
  };

  return {
    cluster: c,
    dir,
    token,
    nodes,
    balancer: lb && { name: lb.name, url: lb.addresses.http, stats: lb.addresses.stats },
    member: (name) => c.member(name),
    async api(node, method, path, body) {
      const url = nodes.find((n) => n.name === node)?.url;
      if (!url) throw new Error(`no Vigil node ${node}`);
      const res = await fetch(`${url}${path}`, {
        method,
        body,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        signal: AbortSignal.timeout(30000),
      });
      return readReply(res);
    },
    streamLeader: (stream = 'VIGIL_EVENTS') =>
      waitFor(
        `a leader of stream ${stream}`,
        30000,
        async () => {
          const leader = (await (await jsm()).streams.info(stream)).cluster?.leader;
          const m = natsMembers.find((x) => x.name === leader);
          return m && c.status().find((s) => s.name === m.name)?.state === 'running' ? m.name : undefined;
        },
        200,
      ),
    async streamReplicas(stream = 'VIGIL_EVENTS') {
      const info = await (await jsm()).streams.info(stream);
      const leader = info.cluster?.leader;
      const out = (info.cluster?.replicas ?? []).map((r) => ({
        name: r.name,
        current: r.current,
        lag: r.lag ?? 0,
        leader: false,
      }));
      if (leader) out.push({ name: leader, current: true, lag: 0, leader: true });
      return out;
    },
    streamLastSeq: async (stream = 'VIGIL_EVENTS') => (await (await jsm()).streams.info(stream)).state.last_seq,
    etcdLeader: () =>
      waitFor(
        'an etcd member that reports itself as leader',
        30000,
        async () => {
          for (const m of etcdMembers) {
            try {
              // The gRPC gateway answers Maintenance.Status over HTTP/JSON; ids are decimal strings.
              const res = await fetch(`${m.addresses.client}/v3/maintenance/status`, {
                method: 'POST',
                body: '{}',
                signal: AbortSignal.timeout(1000),
              });
              const body = (await res.json()) as { header?: { member_id?: string }; leader?: string };
              if (body.leader && body.header?.member_id === body.leader) return m.name;
            } catch {
              // down or not answering: ask the next
            }
          }
          return undefined;
        },
        200,
      ),
    async add(count = 1) {
      const names = await c.add(count, { readyTimeoutMs: opts.readyTimeoutMs ?? 120000 });
      for (const name of names) nodes.push({ name, url: c.member(name).addresses.http });
      return names;
    },
    partition(node) {
      namespaceOf(node).cut();
    },
    heal(node) {
      namespaceOf(node).heal();
    },
    async down(o = {}) {
      const conn = admin;
      admin = undefined;
      await conn?.close().catch(() => undefined);
      try {
        await c.stop(undefined, o.hard ? { signal: 'SIGKILL' } : {});
      } finally {
        started.delete(c);
        await closeNetwork();
        if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
