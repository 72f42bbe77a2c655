import { parseArgs } from 'node:util';
import { BACKUP_USAGE, type BackupFlags, backupCommand } from './cli/backup.ts';
import { COLLECT_USAGE, collectCommand } from './cli/collect.ts';
import { DR_USAGE, type DrFlags, drCommand } from './cli/dr.ts';
import { DEV_CLUSTER_USAGE, type DevClusterFlags, devClusterCommand } from './cli/dev-cluster.ts';
import { RULES_USAGE, rulesCommand } from './cli/rules.ts';
import { SEARCH_USAGE, searchCommand } from './cli/search.ts';
import { SIGMA_USAGE, sigmaCommand } from './cli/sigma-scan.ts';
import { START_USAGE, startCommand } from './cli/start.ts';
import { ConfigError } from './config/load.ts';
import { usePrivateUmask } from './lib/data-dir.ts';
import { errorMessage } from './lib/errors.ts';

const USAGE = `Usage: vigil <command> [options]

Commands:
  start            run a Vigil node (all roles by default)
  collect          run a collector that forwards to the sites in order of preference
  search <query>   search events on a running node
  rules check DIR  load Sigma rules and report every rejected one
  rules import DIR import a rule corpus (SigmaHQ, ...) into the data folder; report what loaded and why not
  sigma scan ...   run Sigma rules over event files, without a server
  dev-cluster ...  a cluster on this machine: up, add, reload-balancer, status, kill, restart, down
  backup ...      create, list, verify and restore backups
  dr ...           two sites: status, activate and failback (guarded), demote, compare

Run 'vigil <command> --help' for a command's options.
`;

/** A CLI command: its usage text, its flags, and what it runs. */
interface Command {
  usage: string;
  options: NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  run(positionals: string[], values: Record<string, string | boolean | undefined>): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  start: {
    usage: START_USAGE,
    options: { config: { type: 'string' }, roles: { type: 'string' } },
    run: (_p, v) => startCommand(v as { config?: string; roles?: string }),
  },
  collect: {
    usage: COLLECT_USAGE,
    options: { config: { type: 'string' } },
    run: (_p, v) => collectCommand(v as { config?: string }),
  },
  search: {
    usage: SEARCH_USAGE,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      url: { type: 'string' },
      token: { type: 'string' },
    },
    run: (p, v) => searchCommand(p[0], v),
  },
  rules: {
    usage: RULES_USAGE,
    options: { json: { type: 'boolean' }, 'data-dir': { type: 'string' } },
    run: (p, v) => rulesCommand(p, v as { json?: boolean; 'data-dir'?: string }),
  },
  sigma: {
    usage: SIGMA_USAGE,
    options: { rules: { type: 'string', multiple: true }, format: { type: 'string' } },
    run: (p, v) => sigmaCommand(p, v as { rules?: string[]; format?: string }),
  },
  backup: {
    usage: BACKUP_USAGE,
    options: {
      full: { type: 'boolean' },
      json: { type: 'boolean' },
      force: { type: 'boolean' },
      dir: { type: 'string' },
      config: { type: 'string' },
      'data-dir': { type: 'string' },
      'postgres-url': { type: 'string' },
      url: { type: 'string' },
      token: { type: 'string' },
    },
    run: (p, v) => backupCommand(p, v as BackupFlags),
  },
  dr: {
    usage: DR_USAGE,
    options: {
      json: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      confirm: { type: 'boolean' },
      url: { type: 'string' },
      token: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      'peer-url': { type: 'string' },
      'peer-token': { type: 'string' },
    },
    run: (p, v) => drCommand(p, v as DrFlags),
  },
  'dev-cluster': {
    usage: DEV_CLUSTER_USAGE,
    options: {
      dir: { type: 'string' },
      nodes: { type: 'string' },
      count: { type: 'string' },
      sites: { type: 'string' },
      site: { type: 'string' },
      lb: { type: 'boolean' },
      'link-relay': { type: 'boolean' },
      shards: { type: 'string' },
      replicas: { type: 'string' },
      json: { type: 'boolean' },
      timeout: { type: 'string' },
    },
    run: (p, v) => devClusterCommand(p, v as DevClusterFlags),
  },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`vigil: unknown command '${name}'\n\n${USAGE}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(command.usage);
    return 0;
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true });
  } catch (err) {
    process.stderr.write(`vigil ${name}: ${errorMessage(err)}\n\n${command.usage}`);
    return 2;
  }
  return command.run(parsed.positionals, parsed.values as Record<string, string | boolean | undefined>);
}

/** Exits once stdout has drained (process.exit would cut piped output short), forcing it after a grace period. */
function exitWith(code: number): void {
  process.exitCode = code;
  process.stdout.write('', () => setTimeout(() => process.exit(code), 2000).unref());
}

// Before anything is written: data, backups and the admin token are for Vigil's user only (files 0600).
usePrivateUmask();
main(process.argv.slice(2)).then(exitWith, (err) => {
  process.stderr.write(err instanceof ConfigError ? `vigil: ${err.message}\n` : `vigil: ${errorMessage(err)}\n`);
  exitWith(1);
});
