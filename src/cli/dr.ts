import { errorMessage } from '../lib/errors.ts';
import { apiGet, apiTarget } from './client.ts';
import { differingHours, type SiteSummary } from '../site/compare.ts';

export const DR_USAGE = `Usage: vigil dr <status|activate|failback|demote|compare> [options]

The site of a two-site deployment (cluster.site): its role (active or standby), its epoch, and the peer
site with the replication lag from it. Roles change only by these commands, never by themselves.

  vigil dr status [--json]          this site, its role and epoch, the peer (reachable, lag)
  vigil dr activate --dry-run       what activating this site would change, and the data at risk
  vigil dr activate --confirm       make this site active (epoch + 1); refused while the peer is
                                    reachable and active: demote it first
  vigil dr demote --confirm         make this site standby (a planned switchover starts here)
  vigil dr failback --dry-run       on the original site: what returning detection here would change
  vigil dr failback --confirm       the active peer steps down and this site turns active (epoch + 1);
                                    refused while the peer is unreachable or this site is behind it
  vigil dr compare --from T1 --to T2 --peer-url URL [--peer-token TOKEN]
                                    events and alerts of both sites per hour (counts, hash of ids),
                                    and the ids missing on either side; exit 1 when they differ

Options:
  --url URL      the site's API (default: VIGIL_URL, else http://127.0.0.1:8080)
  --token TOKEN  the global admin token (default: VIGIL_TOKEN)
  --json         print the answer as JSON
  --peer-url URL, --peer-token TOKEN   the other site's API, for compare (default: VIGIL_PEER_URL,
                 VIGIL_PEER_TOKEN; the token defaults to this site's)
`;

/** Flags of `vigil dr`. */
export interface DrFlags {
  url?: string;
  token?: string;
  json?: boolean;
  'dry-run'?: boolean;
  confirm?: boolean;
  from?: string;
  to?: string;
  'peer-url'?: string;
  'peer-token'?: string;
}

/** Ids listed per kind and side at most (the count of the rest is printed). */
const MAX_LISTED_IDS = 1000;

/** What `vigil dr compare` prints. */
export interface CompareResult {
  from: string;
  to: string;
  sites: [string, string];
  equal: boolean;
  hours: ReturnType<typeof differingHours>;
  /** Per kind, the ids each site holds and the other does not (at most MAX_LISTED_IDS each). */
  missing: Record<string, Record<string, string[]>>;
  /** Ids found missing in all, per kind and site (the listed ones and the rest). */
  missing_counts: Record<string, Record<string, number>>;
}

/** Compares two sites' summaries, then the ids of each hour that differs. */
export async function compareSites(
  a: { url: string; token: string },
  b: { url: string; token: string },
  from: string,
  to: string,
): Promise<CompareResult> {
  const q = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
  const [sa, sb] = (await Promise.all([apiGet(a, `/admin/dr/summary?${q}`), apiGet(b, `/admin/dr/summary?${q}`)])) as [
    SiteSummary,
    SiteSummary,
  ];
  const hours = differingHours(sa, sb);
  const missing: CompareResult['missing'] = {};
  const counts: CompareResult['missing_counts'] = {};
  for (const h of hours.filter((x) => !x.equal)) {
    const path = `/admin/dr/ids?kind=${h.kind}&hour=${encodeURIComponent(h.hour)}`;
    const [ia, ib] = (await Promise.all([apiGet(a, path), apiGet(b, path)])) as { ids: string[] }[];
    const [setA, setB] = [new Set(ia.ids), new Set(ib.ids)];
    missing[h.kind] ??= { [`only_at_${sa.site}`]: [], [`only_at_${sb.site}`]: [] };
    counts[h.kind] ??= { [`only_at_${sa.site}`]: 0, [`only_at_${sb.site}`]: 0 };
    for (const [site, mine, theirs] of [
      [sa.site, ia.ids, setB],
      [sb.site, ib.ids, setA],
    ] as const) {
      const only = mine.filter((id) => !theirs.has(id));
      const key = `only_at_${site}`;
      counts[h.kind][key] += only.length;
      missing[h.kind][key].push(...only.slice(0, Math.max(0, MAX_LISTED_IDS - missing[h.kind][key].length)));
    }
  }
  return {
    from: sa.from,
    to: sa.to,
    sites: [sa.site, sb.site],
    equal: hours.every((h) => h.equal),
    hours,
    missing,
    missing_counts: counts,
  };
}

interface Answer {
  status: number;
  body: {
    error?: { code: string; message: string; details?: { plan?: unknown } };
    [k: string]: unknown;
  };
}

async function call(flags: DrFlags, method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer> {
  const target = apiTarget(flags);
  let res: Response;
  try {
    res = await fetch(`${target.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${target.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new Error(`cannot reach Vigil at ${target.url} (${errorMessage(err)}): set --url or VIGIL_URL`);
  }
  return { status: res.status, body: (await res.json()) as Answer['body'] };
}

function print(flags: DrFlags, value: unknown, text: () => string): void {
  process.stdout.write(flags.json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
}

interface Peer {
  site: string;
  reachable: boolean;
  role?: string;
  epoch?: number;
  lag_events: number | null;
  lag_seconds: number | null;
  error?: string;
}

const peerLine = (p: Peer) =>
  `peer ${p.site}: ${p.reachable ? `reachable, ${p.role} (epoch ${p.epoch})` : 'unreachable'}; ` +
  `replication lag ${p.lag_events ?? '?'} events, ${p.lag_seconds ?? '?'} s${p.error ? ` (${p.error})` : ''}`;

/** `vigil dr ...`: 0 on success, 1 when refused or failed, 2 on bad usage. */
export async function drCommand(positionals: string[], flags: DrFlags): Promise<number> {
  const [sub] = positionals;
  const fail = (a: Answer) => {
    const plan = a.body.error?.details?.plan;
    if (flags.json) process.stdout.write(`${JSON.stringify(a.body, null, 2)}\n`);
    process.stderr.write(`vigil dr ${sub}: ${a.status}: ${a.body.error?.message ?? 'request failed'}\n`);
    if (plan && !flags.json) process.stderr.write(`${JSON.stringify(plan, null, 2)}\n`);
    return 1;
  };
  if (sub === 'status') {
    const a = await call(flags, 'GET', '/admin/dr/status');
    if (a.status !== 200) return fail(a);
    const s = a.body as unknown as { site: string; role: string; epoch: number; peer: Peer };
    print(flags, s, () => `site ${s.site}: ${s.role} (epoch ${s.epoch})\n${peerLine(s.peer)}`);
    return 0;
  }
  if (sub === 'activate' || sub === 'failback') {
    if (flags['dry-run'] === flags.confirm) {
      process.stderr.write(`vigil dr ${sub}: give exactly one of --dry-run or --confirm\n\n${DR_USAGE}`);
      return 2;
    }
    const a = await call(flags, 'POST', `/admin/dr/${sub}`, { confirm: flags.confirm === true });
    if (a.status !== 200) return fail(a);
    const p = a.body as unknown as {
      site: string;
      dry_run: boolean;
      changed: boolean;
      role_before: string;
      role_after: string;
      epoch_before: number;
      epoch_after: number;
      peer: Peer;
      refused?: string;
    };
    print(flags, p, () =>
      [
        `${p.dry_run ? 'would change' : p.changed ? 'changed' : 'unchanged'}: site ${p.site} ${p.role_before} (epoch ${p.epoch_before}) -> ${p.role_after} (epoch ${p.epoch_after})`,
        peerLine(p.peer),
        `data at risk (received by the peer, not yet here): ${p.peer.lag_events ?? '?'} events, ${p.peer.lag_seconds ?? '?'} s`,
        ...(p.refused ? [`refused: ${p.refused}`] : []),
      ].join('\n'),
    );
    return p.refused && !p.dry_run ? 1 : 0;
  }
  if (sub === 'compare') {
    if (!flags.from || !flags.to) {
      process.stderr.write(`vigil dr compare: --from and --to are required\n\n${DR_USAGE}`);
      return 2;
    }
    const here = apiTarget(flags);
    const peerUrl = flags['peer-url'] ?? process.env.VIGIL_PEER_URL;
    if (!peerUrl) {
      process.stderr.write(`vigil dr compare: --peer-url (or VIGIL_PEER_URL) is required\n\n${DR_USAGE}`);
      return 2;
    }
    const peer = {
      url: peerUrl.replace(/\/$/, ''),
      token: flags['peer-token'] ?? process.env.VIGIL_PEER_TOKEN ?? here.token,
    };
    const r = await compareSites(here, peer, flags.from, flags.to);
    print(flags, r, () => {
      const lines = [`${r.sites[0]} and ${r.sites[1]}, ${r.from} to ${r.to}: ${r.equal ? 'equal' : 'DIFFERENT'}`];
      for (const h of r.hours) {
        const c = r.sites.map((s) => `${s} ${h.counts[s]}`).join(', ');
        lines.push(`  ${h.hour} ${h.kind.padEnd(6)} ${c}${h.equal ? '' : '  differs'}`);
      }
      for (const [kind, sides] of Object.entries(r.missing)) {
        for (const [side, ids] of Object.entries(sides)) {
          const n = r.missing_counts[kind][side];
          if (n > 0)
            lines.push(`${kind} ${side.replaceAll('_', ' ')} (${n}): ${ids.join(' ')}${n > ids.length ? ' ...' : ''}`);
        }
      }
      return lines.join('\n');
    });
    return r.equal ? 0 : 1;
  }
  if (sub === 'demote') {
    if (!flags.confirm) {
      process.stderr.write(`vigil dr demote: --confirm is required\n\n${DR_USAGE}`);
      return 2;
    }
    const a = await call(flags, 'POST', '/admin/dr/demote', { confirm: true });
    if (a.status !== 200) return fail(a);
    const r = a.body as { site?: string; role?: string; epoch?: number };
    print(flags, r, () => `site ${r.site}: ${r.role} (epoch ${r.epoch})`);
    return 0;
  }
  process.stderr.write(`vigil dr: unknown subcommand '${sub ?? ''}'\n\n${DR_USAGE}`);
  return 2;
}
