import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VigilError } from '../lib/errors.ts';

/** Who a request acts for, and what it may see. */
export interface Principal {
  name: string;
  role: 'admin' | 'analyst' | 'viewer';
  tenants: string[];
  /**
   * A global admin (only the bootstrap admin token): sees every tenant's audit entries and rules, and alone
   * may create or change global rules (those that run on every tenant's events).
   */
  global?: boolean;
}

/** Resolves bearer tokens to principals (see createUserAuthenticator); the admin token is the bootstrap credential. */
export interface Authenticator {
  authenticate(header: string | undefined): Principal | Promise<Principal>;
}

/** A missing or wrong token; the message never repeats the token. */
export class AuthError extends VigilError {
  constructor(message: string) {
    super('unauthorized', message, { status: 401 });
    this.name = 'AuthError';
  }
}

/**
 * Returns the admin token: the configured one, else the one in `<dataDir>/admin-token`, else a new one
 * written there with mode 0600 and returned with `generated: true` so the caller prints it once.
 */
export function resolveAdminToken(dataDir: string, configured?: string): { token: string; generated: boolean } {
  if (configured) return { token: configured, generated: false };
  const file = join(dataDir, 'admin-token');
  if (existsSync(file)) return { token: readFileSync(file, 'utf8').trim(), generated: false };
  mkdirSync(dataDir, { recursive: true });
  const token = `vgl_${randomBytes(24).toString('base64url')}`;
  writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return { token, generated: true };
}
