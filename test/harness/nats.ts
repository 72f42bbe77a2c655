import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort } from './ports.ts';
import { waitFor, waitUntil } from './wait.ts';

/** One nats-server process of a test cluster, on loopback ports, with its own store folder. */
export interface NatsNode {
  /** server_name, as the cluster reports stream leaders. */
  readonly name: string;
  /** nats://127.0.0.1:<client port> */
  readonly url: string;
  readonly storeDir: string;
  /** The PID of the running process, undefined while it is down. */
  pid(): number | undefined;
  running(): boolean;
  /** Sends `signal` (SIGKILL by default: kill -9) to the node's PID and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /**
   * Starts the node again with the same config and store (after a kill) and waits until it is healthy, unless
   * `wait` is false (a node alone cannot be healthy when the rest of the cluster is down too).
   */
  restart(opts?: { wait?: boolean }): Promise<void>;
  /** The last 64 kB of its log, for failure messages. */
  output(): string;
}

/** A JetStream cluster of nats-server processes started by a test. */
export interface NatsCluster {
  nodes: NatsNode[];
  /** Client URLs of every node (give them all to a client). */
  urls: string[];
  /** Leafnode URLs (`nats-leaf://...`) of every node, when started with `leafListen`. */
  leafUrls: string[];
  /** The node leading `stream` now (asks the cluster through $JS.API.STREAM.INFO). */
  streamLeader(stream: string): Promise<NatsNode>;
  /** Waits until every running node answers /healthz and the cluster has a JetStream meta leader. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Stops every node by PID and removes the store folders. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/** The nats-server version, or a clear error when it is not installed. */
export function natsServerVersion(): string {
  const r = spawnSync('nats-server', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(
      'nats-server is not installed or does not run: the JetStream tests need it on PATH ' +
        `(Debian/Ubuntu: apt-get install -y nats-server; CI installs it). ${r.error?.message ?? r.stderr}`,
    );
  }
  return r.stdout.trim();
}

/**
 * Starts `size` nats-server processes (3 by default) as one JetStream cluster on 127.0.0.1, with free client,
 * route and monitoring ports, generated config files and per-node store folders in a temporary folder.
 */
export async function startNatsCluster(
  opts: {
    size?: number;
    name?: string;
    /** JetStream domain of the servers (a site of a two-site deployment is named like its domain). */
    domain?: string;
    /** Ports on which each server accepts leafnode connections (another site's servers connect there). */
    leafListen?: boolean;
    /** Leafnode URLs (`nats-leaf://host:port`) each server connects to: the other site's. */
    leafRemotes?: string[];
  } = {},
): Promise<NatsCluster> {
  natsServerVersion();
  const size = opts.size ?? 3;
  const root = mkdtempSync(join(tmpdir(), 'vigil-nats-'));
  const specs: { name: string; client: number; route: number; monitor: number; leaf: number }[] = [];
  for (let i = 1; i <= size; i++) {
    specs.push({
      name: `${opts.domain ? `${opts.domain}-` : ''}n${i}`,
      client: await freePort(),
      route: await freePort(),
      monitor: await freePort(),
      leaf: opts.leafListen ? await freePort() : 0,
    });
  }
  const routes = specs.map((s) => `"nats-route://127.0.0.1:${s.route}"`).join(', ');

  const nodes = specs.map((s): NatsNode & { start(): void; monitor: number } => {
    const dir = join(root, s.name);
    const storeDir = join(dir, 'store');
    mkdirSync(storeDir, { recursive: true });
    const configFile = join(dir, 'nats.conf');
    writeFileSync(
      configFile,
      [
        `server_name: "${s.name}"`,
        `listen: "127.0.0.1:${s.client}"`,
        `http: "127.0.0.1:${s.monitor}"`,
        'jetstream {',
        `  store_dir: "${storeDir}"`,
        '  max_memory_store: 64MB',
        '  max_file_store: 4GB',
        ...(opts.domain ? [`  domain: "${opts.domain}"`] : []),
        '}',
        // One server alone runs JetStream standalone (a cluster block would wait for peers).
        ...(size > 1
          ? [
              'cluster {',
              `  name: "${opts.name ?? 'vigil-test'}"`,
              `  listen: "127.0.0.1:${s.route}"`,
              `  routes: [${routes}]`,
              '}',
            ]
          : []),
        ...(s.leaf || opts.leafRemotes?.length
          ? [
              'leafnodes {',
              ...(s.leaf ? [`  listen: "127.0.0.1:${s.leaf}"`] : []),
              ...(opts.leafRemotes?.length
                ? [`  remotes: [ { urls: [${opts.leafRemotes.map((u) => `"${u}"`).join(', ')}] } ]`]
                : []),
              '}',
            ]
          : []),
        '',
      ].join('\n'),
    );
    let proc: ChildProcess | undefined;
    let out = '';
    const node = {
      name: s.name,
      url: `nats://127.0.0.1:${s.client}`,
      storeDir,
      monitor: s.monitor,
      pid: () => (proc && proc.exitCode === null && proc.signalCode === null ? proc.pid : undefined),
      running: () => node.pid() !== undefined,
      output: () => out,
      start() {
        const p = spawn('nats-server', ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
        const collect = (d: Buffer) => {
          out = (out + d).slice(-65536);
          if (process.env.DEBUG_NATS_TESTS) process.stderr.write(`[${s.name}] ${d}`);
        };
        p.stdout?.on('data', collect);
        p.stderr?.on('data', collect);
        live.add(p);
        p.once('exit', () => live.delete(p));
        proc = p;
      },
      async kill(signal: NodeJS.Signals = 'SIGKILL') {
        const p = proc;
        const pid = node.pid();
        if (!p || pid === undefined) return;
        const exited = new Promise<void>((r) => p.once('exit', () => r()));
        process.kill(pid, signal);
        await exited;
      },
      async restart(o: { wait?: boolean } = {}) {
        if (node.running()) throw new Error(`nats node ${s.name} is still running (pid ${node.pid()})`);
        node.start();
        if (o.wait === false) return;
        await waitUntil(`nats node ${s.name} to become healthy\n${out}`, 20000, () => healthy(node), 100);
      },
    };
    return node;
  });

  async function healthy(node: { monitor: number; running(): boolean }): Promise<boolean> {
    if (!node.running()) return false;
    const res = await fetch(`http://127.0.0.1:${node.monitor}/healthz`);
    return res.status === 200;
  }

  let admin: NatsConnection | undefined;
  async function adminConnection(): Promise<NatsConnection> {
    if (!admin || admin.isClosed()) {
      admin = await connect({
        servers: nodes.filter((n) => n.running()).map((n) => n.url),
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
        timeout: 2000,
      });
    }
    return admin;
  }

  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((n) => n.url),
    leafUrls: specs.filter((s) => s.leaf).map((s) => `nats-leaf://127.0.0.1:${s.leaf}`),
    async waitHealthy(timeoutMs = 30000) {
      await waitUntil(
        'the nats cluster to become healthy',
        timeoutMs,
        async () => {
          for (const n of nodes) if (n.running() && !(await healthy(n))) return false;
          const jsm = await jetstreamManager(await adminConnection(), { timeout: 1000 });
          await jsm.getAccountInfo();
          return true;
        },
        100,
      );
    },
    async streamLeader(stream) {
      return waitFor(
        `a leader of stream ${stream}`,
        20000,
        async () => {
          const jsm = await jetstreamManager(await adminConnection(), { timeout: 1000 });
          const leader = (await jsm.streams.info(stream)).cluster?.leader;
          return nodes.find((n) => n.name === leader && n.running());
        },
        100,
      );
    },
    async stop() {
      const conn = admin;
      admin = undefined;
      await conn?.close().catch(() => undefined);
      await Promise.all(nodes.map((n) => n.kill('SIGKILL')));
      rmSync(root, { recursive: true, force: true });
    },
  };

  try {
    for (const n of nodes) n.start();
    await cluster.waitHealthy();
  } catch (err) {
    const logs = nodes.map((n) => `--- ${n.name}\n${n.output()}`).join('\n');
    await cluster.stop();
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${logs}`);
  }
  return cluster;
}
