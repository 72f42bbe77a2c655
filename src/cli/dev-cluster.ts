import { type DevCluster, DevClusterError, openDevCluster, siteMembers, upDevCluster } from '../devcluster/index.ts';
import { formatStatus } from '../devcluster/status-table.ts';
import { shardingConfig } from '../devcluster/sharding.ts';
import { errorMessage } from '../lib/errors.ts';

export const DEV_CLUSTER_USAGE = `Usage: vigil dev-cluster <command> [options]

Runs a Vigil cluster on this machine, on loopback: 3 nats-server (one JetStream cluster), 3 etcd and
N Vigil nodes (vigil-1..N, every role, cluster mode, the JetStream bus). Configs, data, logs
(<dir>/logs/<member>.log) and state.json (PIDs, addresses) live in one folder. The processes are
detached: they keep running after the command returns. Needs nats-server and etcd on PATH
(Debian/Ubuntu: sudo apt-get install nats-server etcd-server; haproxy for --lb).

Commands:
  up [--nodes N] [--lb] [--shards S --replicas R]
                     create the cluster (or start its stopped members again) and wait until
                     every Vigil node answers /health/ready; --lb also runs HAProxy (haproxy-1)
                     in front of the nodes: HTTP, syslog TCP and RELP on addresses of its own
  up --sites 2       two sites, a (active) and b (standby), each with one nats-server (its own
                     JetStream domain), one etcd and N Vigil nodes, the NATS servers linked by a
                     leafnode; members are named a-vigil-1, b-nats-1, ...; with --lb each site
                     has its own HAProxy (a-haproxy-1, b-haproxy-1) in front of its own nodes
  up --sites 2 --link-relay
                     the same, b's leafnode through a relay of its own (link-1, of neither
                     site): every connection between the sites goes through it
  add [--count N]    start N more Vigil nodes (default 1; vigil-5 after vigil-4...) with the
                     cluster's configuration, and wait until each is ready: they join the running
                     cluster (partitions; shards move to them when the events are sharded). With
                     --lb, HAProxy's configuration is written again with every node and reloaded
                     (SIGUSR2 to its master: same PID, open connections finish on the old worker)
  add --site S [--count N]
                     in a two-site cluster (--site is required there): the nodes (a-vigil-3...)
                     join site S, copying its first node's configuration (its NATS, etcd, site
                     settings); only S's balancer is reloaded
  reload-balancer [--site S]
                     bring HAProxy (of site S) in line with the recorded nodes: write its
                     configuration again and reload it unless it already runs that one; retries
                     a reload that failed (status shows the failure until one succeeds)
  status [--json]    every member: kind, name, site, PID, running or stopped, addresses
  kill <member>      SIGKILL one member by PID (nats-2, etcd-1, vigil-3, haproxy-1, ...)
  kill --site S      SIGKILL every process of site S (a lost data centre)
  kill link-1        cut the sites apart (a partition): the relay's connections close with it
                     and new ones are refused; each site keeps running on its own
  restart <member>   stop it if it runs, start it again with the same config, ports and data
  restart --site S   the same for every member of site S
  restart link-1     heal the partition: b's leafnode reconnects, the sites catch up
  down [--site S]    SIGTERM every member (of site S) (Vigil nodes first), SIGKILL after a grace period

Options:
  --dir DIR          the cluster's folder; default ./dev-cluster
  --nodes N          Vigil nodes (1 to 9) for a new cluster (per site); default 3
  --count N          add: how many Vigil nodes to add (1 to 8); default 1
  --lb               a new cluster with HAProxy in front (src/devcluster/haproxy.ts)
  --shards S         shards of the events (store.shards, 1 to 1024) for a new cluster; default 1
                     (every node keeps every event)
  --replicas R       nodes that keep each shard (store.replicas, at most N); default every node
  --sites N          1 (default) or 2 for a new cluster
  --site S           kill, restart or down one whole site; the site add and reload-balancer act on
  --link-relay       with --sites 2: run the link between the sites as a member (link-1)
  --json             status as JSON
  --timeout SECONDS  how long up and restart wait for readiness; default 180

Every API call needs the admin token in <dir>/admin-token, for example:
  curl -H "Authorization: Bearer $(cat dev-cluster/admin-token)" http://<vigil http>/admin/cluster/status
`;

/** Flags of `vigil dev-cluster`. */
export interface DevClusterFlags {
  dir?: string;
  nodes?: string;
  count?: string;
  sites?: string;
  site?: string;
  lb?: boolean;
  'link-relay'?: boolean;
  shards?: string;
  replicas?: string;
  json?: boolean;
  timeout?: string;
}

const DEFAULT_DIR = './dev-cluster';

function positiveInt(name: string, value: string | undefined, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--${name} must be an integer from 1 to ${max}`);
  return n;
}

class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

function printStatus(cluster: DevCluster, json: boolean | undefined): void {
  const members = cluster.status();
  if (json) {
    process.stdout.write(`${JSON.stringify({ dir: cluster.dir, members }, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${formatStatus(members)}\n`);
}

/** `vigil dev-cluster up|add|reload-balancer|status|kill|restart|down`. */
export async function devClusterCommand(positionals: string[], opts: DevClusterFlags): Promise<number> {
  const [sub, ...args] = positionals;
  const dir = opts.dir ?? DEFAULT_DIR;
  try {
    const timeoutS = positiveInt('timeout', opts.timeout, 3600);
    const start = { readyTimeoutMs: timeoutS === undefined ? undefined : timeoutS * 1000 };
    const one = () => {
      if (args.length !== 1) throw new UsageError(`${sub} takes one member name (see status)`);
      return args[0];
    };
    // --site S: every member of that site (kill, restart, down).
    const ofSite = (cluster: DevCluster) => {
      if (args.length > 0) throw new UsageError(`${sub} takes a member name or --site, not both`);
      return siteMembers(cluster.state().members, opts.site as string);
    };
    switch (sub) {
      case 'up': {
        const nodes = positiveInt('nodes', opts.nodes, 9);
        let sharding: Record<string, unknown> | undefined;
        try {
          sharding = shardingConfig(
            { shards: positiveInt('shards', opts.shards, 1024), replicas: positiveInt('replicas', opts.replicas, 9) },
            nodes ?? 3,
          );
        } catch (err) {
          if (err instanceof UsageError) throw err;
          throw new UsageError(errorMessage(err));
        }
        const sites = positiveInt('sites', opts.sites, 2);
        if (opts['link-relay'] && sites !== 2) throw new UsageError('--link-relay joins two sites: it needs --sites 2');
        const logs = sites === 2 ? `${dir}/a/logs and ${dir}/b/logs` : `${dir}/logs`;
        process.stderr.write(`Starting the dev cluster in ${dir} (logs in ${logs})...\n`);
        const cluster = await upDevCluster({
          dir,
          nodes,
          lb: opts.lb,
          ...(sites ? { sites } : {}),
          ...(opts['link-relay'] ? { linkRelay: true } : {}),
          ...(sharding ? { vigilConfig: sharding } : {}),
          ...start,
        });
        printStatus(cluster, opts.json);
        if (!opts.json) {
          // Through the balancer when there is one: that is the address clients should use.
          const first =
            cluster.state().members.find((m) => m.kind === 'haproxy') ??
            cluster.state().members.find((m) => m.kind === 'vigil');
          process.stdout.write(
            `\nEvery Vigil node is ready. Admin token: ${cluster.state().admin_token_file}\n` +
              `  TOKEN=$(cat ${cluster.state().admin_token_file})\n` +
              `  curl -s -H "Authorization: Bearer $TOKEN" ${first?.addresses.http}/admin/cluster/status\n`,
          );
        }
        return 0;
      }
      case 'add': {
        if (args.length > 0) throw new UsageError('add takes no argument (--count N, --site S)');
        const count = positiveInt('count', opts.count, 8) ?? 1;
        const cluster = openDevCluster(dir);
        const where = opts.site === undefined ? '' : ` (site ${opts.site})`;
        process.stderr.write(`Adding ${count} Vigil node(s) to the dev cluster in ${dir}${where}...\n`);
        const names = await cluster.add(count, { ...start, ...(opts.site === undefined ? {} : { site: opts.site }) });
        printStatus(cluster, opts.json);
        if (!opts.json) {
          const lb = cluster.state().members.find((m) => m.kind === 'haproxy' && m.site === opts.site);
          process.stdout.write(
            `\n${names.join(', ')} joined and ready.${lb ? ` ${lb.name} sends to them too (${lb.addresses.stats}).` : ''}\n`,
          );
        }
        return 0;
      }
      case 'reload-balancer': {
        // Its own command rather than a second add: retrying a failed reload must not grow the cluster.
        if (args.length > 0) throw new UsageError('reload-balancer takes no argument (--site S)');
        const cluster = openDevCluster(dir);
        if (opts.site !== undefined) siteMembers(cluster.state().members, opts.site);
        const lbs = cluster
          .state()
          .members.filter((m) => m.kind === 'haproxy' && (opts.site === undefined || m.site === opts.site));
        if (lbs.length === 0) {
          throw new DevClusterError('no_balancer', `${cluster.dir} runs no balancer: it was made without up --lb`);
        }
        const changed = await cluster.updateBalancers(opts.site === undefined ? {} : { site: opts.site });
        for (const lb of lbs) {
          const now = cluster.status().find((m) => m.name === lb.name);
          const servers = cluster
            .state()
            .members.filter((m) => m.kind === 'vigil' && m.site === lb.site)
            .map((m) => m.name);
          const what =
            now?.state !== 'running'
              ? `stopped, with its configuration written: it loads it when it starts (restart ${lb.name})`
              : changed.includes(lb.name)
                ? 'reloaded'
                : 'already runs this configuration';
          process.stdout.write(`${lb.name}: ${what}; servers ${servers.join(', ')}.\n`);
        }
        return 0;
      }
      case 'status':
        if (args.length > 0) throw new UsageError('status takes no argument');
        printStatus(openDevCluster(dir), opts.json);
        return 0;
      case 'kill': {
        if (opts.site !== undefined) {
          const cluster = openDevCluster(dir);
          const names = ofSite(cluster);
          // All at once, as a power cut would.
          await Promise.all(names.map((n) => cluster.kill(n, 'SIGKILL')));
          process.stdout.write(`site ${opts.site} killed: ${names.join(', ')}.\n`);
          return 0;
        }
        const name = one();
        const cluster = openDevCluster(dir);
        const pid = cluster.member(name).pid;
        await cluster.kill(name, 'SIGKILL');
        const cut = cluster.member(name).kind === 'link' ? ': the sites are cut apart' : '';
        process.stdout.write(`${name} (PID ${pid ?? '-'}) killed${cut}.\n`);
        return 0;
      }
      case 'restart': {
        if (opts.site !== undefined) {
          const cluster = openDevCluster(dir);
          const names = ofSite(cluster);
          await cluster.stop(names);
          await cluster.start(names, start);
          process.stdout.write(`site ${opts.site} restarted: ${names.join(', ')}.\n`);
          return 0;
        }
        const name = one();
        const cluster = openDevCluster(dir);
        const outcome = await cluster.restart(name, start);
        const how = outcome === 'killed' ? ' (it did not stop within its grace period: SIGKILL)' : '';
        const healed = cluster.member(name).kind === 'link' ? ': the sites are linked again' : '';
        process.stdout.write(`${name} restarted (PID ${cluster.member(name).pid})${how}${healed}.\n`);
        return 0;
      }
      case 'down': {
        if (args.length > 0) throw new UsageError('down takes no argument');
        const cluster = openDevCluster(dir);
        const outcomes = await cluster.stop(opts.site === undefined ? undefined : ofSite(cluster));
        const killed = Object.entries(outcomes).filter(([, o]) => o === 'killed');
        for (const [name] of killed) {
          process.stderr.write(`${name} did not stop within its grace period after SIGTERM: it was sent SIGKILL.\n`);
        }
        const which = opts.site === undefined ? `Every member of ${cluster.dir}` : `Every member of site ${opts.site}`;
        process.stdout.write(`${which} is stopped; configs, data and logs are kept.\n`);
        return 0;
      }
      default:
        process.stderr.write(sub ? `vigil dev-cluster: unknown command '${sub}'\n\n` : '');
        process.stderr.write(DEV_CLUSTER_USAGE);
        return 2;
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`vigil dev-cluster: ${err.message}\n\n${DEV_CLUSTER_USAGE}`);
      return 2;
    }
    process.stderr.write(`vigil dev-cluster ${sub}: ${errorMessage(err)}\n`);
    return 1;
  }
}
