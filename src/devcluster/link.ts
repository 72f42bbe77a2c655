/**
 * The cuttable link between the two sites of a dev cluster (`up --sites 2 --link-relay`): a TCP relay run as
 * a member of its own (`link-1`) through which every connection between the sites goes. Only the NATS
 * leafnode crosses between sites (status requests, hand-over and every stream copy travel over it; see
 * docs/deployment.md, "Ports between the sites"), so the relay has one route: b's leafnode remote -> a's
 * leafnode port. `kill link-1` cuts the sites apart at once (the kernel closes every relayed connection with
 * the process, and nothing listens any more: new connections are refused); `restart link-1` heals it.
 * The relay answers `GET /ready` on a control port with its routes and counters (a test checks that the
 * leafnode really goes through it).
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { errorMessage } from '../lib/errors.ts';
import { DevClusterError } from './errors.ts';
import type { MemberRecord } from './plan.ts';

/** One relayed port: connections to `listen` are joined to `to`. */
export interface LinkRoute {
  /** What crosses here (`leafnode`). */
  name: string;
  listen: { host: string; port: number };
  to: { host: string; port: number };
}

/** A route's counters, as `GET /ready` answers them. */
export interface LinkRouteStats {
  name: string;
  listen: string;
  to: string;
  connections_open: number;
  connections_total: number;
  /** Connections refused because `max_connections` were open, or whose upstream could not be reached. */
  connections_failed: number;
  bytes_to: number;
  bytes_from: number;
}

/** Settings of the relay; defaults in `DEFAULT_LINK_LIMITS`. */
export interface LinkLimits {
  /** Open connections per route; one more is closed at once (counted in `connections_failed`). */
  max_connections: number;
  /** Longest wait for the upstream to accept a relayed connection. */
  connect_timeout_ms: number;
  /** How long a listen address in use is tried again at start. */
  listen_retry_ms: number;
}

/** A leafnode is one connection per remote server: 64 is far above what a dev cluster opens. */
export const DEFAULT_LINK_LIMITS: LinkLimits = {
  max_connections: 64,
  connect_timeout_ms: 5000,
  listen_retry_ms: 10000,
};

/** The relay of one process: every route and the control listener. */
export interface LinkRelay {
  start(): Promise<void>;
  /** Closes the listeners and every relayed connection. */
  stop(): Promise<void>;
  stats(): LinkRouteStats[];
}

const addr = (a: { host: string; port: number }) => `${a.host}:${a.port}`;

/** Parses `host:port`; throws `bad_link` naming the flag. */
export function parseHostPort(what: string, text: string): { host: string; port: number } {
  const m = /^([^:\s]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new DevClusterError('bad_link', `${what} must be host:port (a port from 1 to 65535), not '${text}'`);
  }
  return { host: m[1], port };
}

/**
 * Parses a route given as `name=listenhost:port->tohost:port` (the relay's command line).
 * Throws `bad_link` with what is wrong.
 */
export function parseRoute(text: string): LinkRoute {
  const m = /^([a-z][a-z0-9_-]{0,31})=([^>]+)->(.+)$/.exec(text);
  if (!m) throw new DevClusterError('bad_link', `a route is name=host:port->host:port, not '${text}'`);
  return {
    name: m[1],
    listen: parseHostPort(`route ${m[1]}: listen`, m[2]),
    to: parseHostPort(`route ${m[1]}: to`, m[3]),
  };
}

/** The command-line form of a route, read back by `parseRoute`. */
export const formatRoute = (r: LinkRoute) => `${r.name}=${addr(r.listen)}->${addr(r.to)}`;

/** Creates the relay; opens nothing until start(). */
export function createLinkRelay(opts: {
  routes: LinkRoute[];
  control: { host: string; port: number };
  limits?: Partial<LinkLimits>;
}): LinkRelay {
  const limits: LinkLimits = { ...DEFAULT_LINK_LIMITS, ...opts.limits };
  const sockets = new Set<Socket>();
  const servers: Server[] = [];
  let control: HttpServer | undefined;
  const stats = opts.routes.map<LinkRouteStats>((r) => ({
    name: r.name,
    listen: addr(r.listen),
    to: addr(r.to),
    connections_open: 0,
    connections_total: 0,
    connections_failed: 0,
    bytes_to: 0,
    bytes_from: 0,
  }));

  const relay = (route: LinkRoute, s: LinkRouteStats, down: Socket) => {
    if (s.connections_open >= limits.max_connections) {
      s.connections_failed++;
      down.destroy();
      return;
    }
    s.connections_open++;
    s.connections_total++;
    const up = createConnection({ host: route.to.host, port: route.to.port });
    sockets.add(down);
    sockets.add(up);
    up.setTimeout(limits.connect_timeout_ms, () => up.destroy(new Error('upstream connect timeout')));
    let connected = false;
    up.once('connect', () => {
      connected = true;
      up.setTimeout(0);
    });
    let closed = false;
    // One side gone: the other is reset too, as a cut cable would leave both ends without a peer.
    const close = () => {
      if (closed) return;
      closed = true;
      s.connections_open--;
      if (!connected) s.connections_failed++;
      for (const sock of [down, up]) {
        sockets.delete(sock);
        if (!sock.destroyed) sock.resetAndDestroy();
      }
    };
    for (const sock of [down, up]) {
      // An error is how a relayed connection ends (the peer reset it): it closes both sides, nothing more.
      sock.on('error', close);
      sock.on('close', close);
    }
    down.on('data', (b: Buffer) => {
      s.bytes_to += b.length;
    });
    up.on('data', (b: Buffer) => {
      s.bytes_from += b.length;
    });
    down.pipe(up);
    up.pipe(down);
  };

  const listenOnce = (server: Server | HttpServer, at: { host: string; port: number }) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: at.host, port: at.port, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  // A port still held for a moment (a connection made to it while the relay was down) is tried again.
  const listen = async (server: Server | HttpServer, at: { host: string; port: number }) => {
    const deadline = Date.now() + limits.listen_retry_ms;
    for (;;) {
      try {
        return await listenOnce(server, at);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || Date.now() >= deadline) {
          throw new DevClusterError('bad_link', `the link relay cannot listen on ${addr(at)}: ${errorMessage(err)}`, {
            cause: err,
          });
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  };

  return {
    async start() {
      for (const [i, route] of opts.routes.entries()) {
        const server = createServer((sock) => relay(route, stats[i], sock));
        servers.push(server);
        await listen(server, route.listen);
      }
      control = createHttpServer((req, res) => {
        const ok = req.method === 'GET' && (req.url === '/ready' || req.url === '/stats');
        res.writeHead(ok ? 200 : 404, { 'content-type': 'application/json' });
        res.end(JSON.stringify(ok ? { routes: stats } : { error: 'GET /ready or /stats' }));
      });
      await listen(control, opts.control);
    },
    async stop() {
      const closing = [...servers, ...(control ? [control] : [])].map(
        (s) => new Promise<void>((resolve) => s.close(() => resolve())),
      );
      for (const sock of sockets) sock.resetAndDestroy();
      control?.closeAllConnections();
      await Promise.all(closing);
    },
    stats: () => stats.map((s) => ({ ...s })),
  };
}

/** The entry point the `link` member runs (src/devcluster/link-main.ts). */
export const LINK_MAIN = join(import.meta.dirname, 'link-main.ts');
const TSX = join(import.meta.dirname, '../../node_modules/tsx/dist/esm/index.mjs');

/**
 * The `link-1` member: the relay run by node from this checkout (not `bin/vigil`, which would load the
 * whole application for a byte pump), its PID the one recorded.
 */
export function planLink(opts: {
  dir: string;
  routes: LinkRoute[];
  control: { host: string; port: number };
}): MemberRecord {
  const name = 'link-1';
  return {
    kind: 'link',
    name,
    command: process.execPath,
    args: [
      '--import',
      TSX,
      LINK_MAIN,
      '--control',
      addr(opts.control),
      ...opts.routes.flatMap((r) => ['--route', formatRoute(r)]),
    ],
    cwd: join(opts.dir, name),
    log: join(opts.dir, 'logs', `${name}.log`),
    ready_url: `http://${addr(opts.control)}/ready`,
    addresses: {
      ...Object.fromEntries(opts.routes.map((r) => [r.name, `${addr(r.listen)} -> ${addr(r.to)}`])),
      control: `http://${addr(opts.control)}/stats`,
    },
    files: {},
    pid: null,
    pid_start: null,
    state: 'stopped',
    started_at: null,
    stopped_at: null,
  };
}
