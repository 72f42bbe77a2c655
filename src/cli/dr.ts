import { errorMessage } from '../lib/errors.ts';
import { apiTarget } from './client.ts';

export const DR_USAGE = `Usage: vigil dr <status|activate|demote> [options]

The site of a two-site deployment (cluster.site): its role (active or standby), its epoch, and the peer
site with the replication lag from it. Roles change only by these commands, never by themselves.

  vigil dr status [--json]          this site, its role and epoch, the peer (reachable, lag)
  vigil dr activate --dry-run       what activating this site would change, and the data at risk
  vigil dr activate --confirm       make this site active (epoch + 1); refused while the peer is
                                    reachable and active: demote it first
  vigil dr demote --confirm         make this site standby (a planned switchover starts here)

Options:
  --url URL      the site's API (default: VIGIL_URL, else http://127.0.0.1:8080)
  --token TOKEN  the global admin token (default: VIGIL_TOKEN)
  --json         print the answer as JSON
`;

/** Flags of `vigil dr`. */
export interface DrFlags {
  url?: string;
  token?: string;
  json?: boolean;
  'dry-run'?: boolean;
  confirm?: boolean;
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
  if (sub === 'activate') {
    if (flags['dry-run'] === flags.confirm) {
      process.stderr.write(`vigil dr activate: give exactly one of --dry-run or --confirm\n\n${DR_USAGE}`);
      return 2;
    }
    const a = await call(flags, 'POST', '/admin/dr/activate', { confirm: flags.confirm === true });
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
