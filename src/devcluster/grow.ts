/**
 * `vigil dev-cluster add`: the next Vigil nodes of a running dev cluster, planned from what the cluster
 * already records. Kept apart from the plan of a new cluster: this reads a recorded state and one node's
 * generated configuration, and writes nothing itself.
 */
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { DevClusterError } from './errors.ts';
import { type DevClusterState, deepMerge, type MemberRecord, type Plan, VIGIL_BIN } from './plan.ts';

/**
 * Most Vigil nodes a dev cluster (each site of a two-site one: a cluster of its own) may grow to; each is a
 * Node.js process with its own engine.
 */
export const MAX_DEV_NODES = 16;

/**
 * Vigil nodes are `vigil-<n>` (`<site>-vigil-<n>` in a two-site cluster, whose node ids stay `vigil-<n>`):
 * the next number after the highest one recorded in the site.
 */
function nextIndex(vigils: readonly MemberRecord[], site: string | undefined): number {
  const name = new RegExp(`^${site === undefined ? '' : `${site}-`}vigil-(\\d+)$`);
  let max = 0;
  for (const m of vigils) {
    const n = name.exec(m.name);
    if (n) max = Math.max(max, Number(n[1]));
  }
  return max + 1;
}

/** The sites a cluster records (`a`, `b` for `up --sites 2`; none for one site). */
export function clusterSites(members: readonly MemberRecord[]): string[] {
  return [...new Set(members.flatMap((m) => (m.site ? [m.site] : [])))];
}

/** What to add: how many nodes, and to which site (required exactly when the cluster has sites). */
export interface AddRequest {
  count: number;
  site?: string;
}

/**
 * The site `add` acts on: `site` checked against the cluster's. A two-site cluster needs one (two sites
 * are two clusters: a node joins one); a cluster of one site has none to name.
 */
export function addSite(state: DevClusterState, site: string | undefined): string | undefined {
  const sites = clusterSites(state.members);
  if (site === undefined) {
    if (sites.length === 0) return undefined;
    throw new DevClusterError(
      'site_required',
      `${state.dir} is a two-site cluster: name the site the nodes join (--site ${sites.join(' or --site ')})`,
    );
  }
  if (!sites.includes(site)) {
    throw new DevClusterError(
      'unknown_site',
      sites.length === 0
        ? `${state.dir} has one site: --site needs a cluster made with up --sites 2`
        : `${state.dir} has no site ${site}: the sites are ${sites.join(', ')}`,
    );
  }
  return site;
}

/**
 * Plans `count` more Vigil nodes for the cluster recorded in `state` (for `site` of a two-site cluster): each
 * with the same configuration as the first node of the site (roles, `store.shards`/`replicas`, timings,
 * `cluster.site`/`peer_site`: read with `readConfig`) except what is its own: node id, data folder, ports,
 * bus client name. Every node is given every NATS server and etcd member of its site directly, on loopback:
 * those of the other site belong to another cluster, and a node the fault harness placed in a namespace
 * (routed through proxies) is not a template for that. The added members are returned stopped, with the
 * files to write; `state` is not changed.
 */
export async function planAddedNodes(
  state: DevClusterState,
  request: AddRequest,
  deps: { port: () => Promise<number>; readConfig: (path: string) => string },
): Promise<Plan> {
  const { count } = request;
  if (!Number.isInteger(count) || count < 1) throw new DevClusterError('bad_count', `cannot add ${count} nodes`);
  const site = addSite(state, request.site);
  const where = site === undefined ? state.dir : `site ${site} of ${state.dir}`;
  const ofSite = state.members.filter((m) => m.site === site);
  const vigils = ofSite.filter((m) => m.kind === 'vigil');
  const template = vigils[0];
  if (!template) throw new DevClusterError('no_template', `${where} records no Vigil node to copy`);
  if (vigils.length + count > MAX_DEV_NODES) {
    throw new DevClusterError(
      'too_many_nodes',
      `${where} has ${vigils.length} Vigil nodes: adding ${count} would pass ${MAX_DEV_NODES}`,
    );
  }
  let base: Record<string, unknown>;
  try {
    base = parse(deps.readConfig(template.files.config)) as Record<string, unknown>;
  } catch (err) {
    throw new DevClusterError('state_invalid', `${template.files.config} is not a readable Vigil config`, {
      cause: err,
    });
  }
  const nats = ofSite.filter((m) => m.kind === 'nats').map((m) => m.addresses.client);
  const etcd = ofSite.filter((m) => m.kind === 'etcd').map((m) => m.addresses.client);
  const tokenFile = state.admin_token_file;
  const token = deps.readConfig(tokenFile);
  const out: Plan = { state: { ...state, members: [] }, files: [], dirs: [] };
  // The same checkout as the first node (a rolling upgrade may have moved it to another one).
  const bin = [template.command, ...template.args].find((a) => a.endsWith('/bin/vigil')) ?? VIGIL_BIN;
  const first = nextIndex(vigils, site);
  for (let i = first; i < first + count; i++) {
    // Beside the site's first node: <dir>/vigil-<n>, or <dir>/<site>/vigil-<n> with its logs in <dir>/<site>/logs.
    const id = `vigil-${i}`;
    const name = site === undefined ? id : `${site}-${id}`;
    const cwd = join(dirname(template.cwd), id);
    const dataDir = join(cwd, 'data');
    const configFile = join(cwd, 'vigil.yml');
    const http = await deps.port();
    const syslog = await deps.port();
    const relp = await deps.port();
    const host = '127.0.0.1';
    const config = deepMerge(base, {
      data_dir: dataDir,
      http: { addr: `${host}:${http}` },
      syslog: { host, udp_port: syslog, tcp_port: syslog, relp_port: relp },
      bus: { jetstream: { servers: nats, client_name: id } },
      cluster: { node_id: id, etcd_endpoints: etcd, advertise_addr: `${host}:${http}` },
    });
    out.dirs.push(dataDir);
    out.files.push(
      {
        path: configFile,
        mode: 0o644,
        content: `# Generated by \`vigil dev-cluster add\`; the admin token is in ${tokenFile}.\n${stringify(config)}`,
      },
      { path: join(dataDir, 'admin-token'), content: token, mode: 0o600 },
    );
    out.state.members.push({
      kind: 'vigil',
      name,
      ...(site === undefined ? {} : { site }),
      cwd,
      log: join(dirname(template.log), `${id}.log`),
      command: bin,
      args: ['start', '--config', configFile],
      ready_url: `http://${host}:${http}/health/ready`,
      addresses: {
        http: `http://${host}:${http}`,
        syslog: `${host}:${syslog} (udp+tcp)`,
        relp: `${host}:${relp}`,
        admin_token_file: tokenFile,
      },
      files: { config: configFile, data: dataDir },
      pid: null,
      pid_start: null,
      state: 'stopped',
      started_at: null,
      stopped_at: null,
    });
  }
  return out;
}
