import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { DevClusterError } from './errors.ts';

/** The third-party servers a dev cluster runs, and the Debian packages that provide them. */
export const BINARIES = {
  'nats-server': { env: 'NATS_SERVER_BIN', package: 'nats-server' },
  etcd: { env: 'ETCD_BIN', package: 'etcd-server' },
  haproxy: { env: 'HAPROXY_BIN', package: 'haproxy' },
} as const;

export type BinaryName = keyof typeof BINARIES;

/** What every dev cluster runs; HAProxy only with `--lb`. */
export const CORE_BINARIES = ['nats-server', 'etcd'] as const;
export type CoreBinary = (typeof CORE_BINARIES)[number];

// Debian installs nats-server and haproxy in /usr/sbin, which is not on every user's PATH.
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
 * The absolute path of `name`: `$NATS_SERVER_BIN` / `$ETCD_BIN` / `$HAPROXY_BIN` when set, else the first match on PATH
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

/** Finds every binary of `names` (the core ones by default); one error naming all that are missing. */
export function findBinaries<N extends BinaryName = CoreBinary>(
  env: NodeJS.ProcessEnv = process.env,
  names: readonly N[] = CORE_BINARIES as readonly BinaryName[] as readonly N[],
): Record<N, string> {
  const found: Partial<Record<N, string>> = {};
  const missing: N[] = [];
  for (const name of names) {
    try {
      found[name] = findBinary(name, env);
    } catch (err) {
      if (err instanceof DevClusterError && env[BINARIES[name].env]) throw err;
      missing.push(name);
    }
  }
  if (missing.length > 0) throw new DevClusterError('binary_missing', missingMessage(missing));
  return found as Record<N, string>;
}

function missingMessage(names: BinaryName[]): string {
  const packages = names.map((n) => BINARIES[n].package).join(' ');
  const vars = names.map((n) => BINARIES[n].env).join(' or ');
  return (
    `${names.join(' and ')} not found on PATH (nor in /usr/sbin): install with ` +
    `\`sudo apt-get install ${packages}\` (Debian/Ubuntu), or set ${vars} to the binary`
  );
}
