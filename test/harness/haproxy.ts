import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Debian's haproxy: `HAPROXY_BIN` or /usr/sbin/haproxy. */
export const HAPROXY_BIN = process.env.HAPROXY_BIN ?? '/usr/sbin/haproxy';

/**
 * The haproxy binary, installed with apt-get when it is missing and this process is root (as in CI and
 * scripts/test-setup.sh); otherwise a clear error saying how to install it.
 */
export function ensureHaproxy(): string {
  if (existsSync(HAPROXY_BIN)) return HAPROXY_BIN;
  if (process.getuid?.() !== 0) {
    throw new Error(`${HAPROXY_BIN} is missing: install HAProxy (apt-get install -y haproxy) or set HAPROXY_BIN`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    execFileSync('apt-get', ['install', '-y', '-qq', 'haproxy'], { env, stdio: 'ignore' });
  } catch {
    execFileSync('apt-get', ['update', '-qq'], { env, stdio: 'ignore' });
    execFileSync('apt-get', ['install', '-y', '-qq', 'haproxy'], { env, stdio: 'ignore' });
  }
  if (!existsSync(HAPROXY_BIN)) throw new Error(`apt-get install haproxy did not provide ${HAPROXY_BIN}`);
  return HAPROXY_BIN;
}

/** `haproxy -c -f <config>`: whether HAProxy accepts the configuration, and what it said. */
export function checkHaproxyConfig(config: string): { ok: boolean; output: string } {
  const bin = ensureHaproxy();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-haproxy-check-'));
  try {
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(file, config);
    const r = spawnSync(bin, ['-c', '-f', file], { encoding: 'utf8' });
    return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
