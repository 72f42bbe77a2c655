import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { DevClusterError } from './errors.ts';

/** The third-party servers a dev cluster runs, and the Debian packages that provide them. */
export const BINARIES = {
  'nats-server': { env: 'NATS_SERVER_BIN', package: 'nats-server' },
  etcd: { env: 'ETCD_BIN', package: 'etcd-server' },
} as const;

export type BinaryName = keyof typeof BINARIES;

// Debian installs nats-server in /usr/sbin, which is not on every user's PATH.
const EXTRA_DIRS = ['/usr/sbin', '/usr/local/sbin'];

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The absolute path of `name`: `$NATS_SERVER_BIN` / `$ETCD_BIN` when set, else the first match on PATH
 * (then /usr/sbin, /usr/local/sbin). Throws `binary_missing` saying how to install it.
 */
export function findBinary(name: BinaryName, env: NodeJS.ProcessEnv = process.env): string {
  const { env: override } = BINARIES[name];
  const given = env[override];
  if (given) {
    if (executable(given)) return given;
    throw new DevClusterError('binary_missing', `${override}=${given} is not an executable file`);
  }
  const dirs = [...(env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const file = join(dir, name);
    if (executable(file)) return file;
  }
  throw new DevClusterError('binary_missing', missingMessage([name]));
}

/** Finds every binary the dev cluster needs; one error naming all that are missing. */
export function findBinaries(env: NodeJS.ProcessEnv = process.env): Record<BinaryName, string> {
  const found: Partial<Record<BinaryName, string>> = {};
  const missing: BinaryName[] = [];
  for (const name of Object.keys(BINARIES) as BinaryName[]) {
    try {
      found[name] = findBinary(name, env);
    } catch (err) {
      if (err instanceof DevClusterError && env[BINARIES[name].env]) throw err;
      missing.push(name);
    }
  }
  if (missing.length > 0) throw new DevClusterError('binary_missing', missingMessage(missing));
  return found as Record<BinaryName, string>;
}

function missingMessage(names: BinaryName[]): string {
  const packages = names.map((n) => BINARIES[n].package).join(' ');
  const vars = names.map((n) => BINARIES[n].env).join(' or ');
  return (
    `${names.join(' and ')} not found on PATH (nor in /usr/sbin): install with ` +
    `\`sudo apt-get install ${packages}\` (Debian/Ubuntu), or set ${vars} to the binary`
  );
}
