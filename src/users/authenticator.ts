import { createHash, timingSafeEqual } from 'node:crypto';
import type { Db } from '../db/index.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { keyRole, type Role, type Scope, type UserPrincipal } from './access.ts';
import { AuthError } from './principal.ts';
import { tokenHash } from './service.ts';

/** Resolves bearer tokens to principals, asynchronously (it reads sessions and keys from the database). */
export interface AsyncAuthenticator {
  authenticate(header: string | undefined): Promise<UserPrincipal>;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** How often a key's last_used_at is written at most (a write per request would be wasteful). */
const LAST_USED_RESOLUTION_MS = 60_000;

/** The bearer token of an Authorization header, or an AuthError saying what is wrong. */
export function bearerToken(header: string | undefined): string {
  if (!header) throw new AuthError('missing bearer token: send Authorization: Bearer <token>');
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) throw new AuthError('malformed Authorization header: expected "Bearer <token>"');
  return match[1];
}

/**
 * The authenticator of users: the bootstrap admin token (always an admin of `adminTenants`), console
 * session tokens (`vgs_...`) and API keys (`vgk_...`, acting with the lower of the user's role and the
 * key's scopes). Disabled users, expired sessions and expired or revoked keys are refused.
 */
export function createUserAuthenticator(
  db: Db,
  opts: { adminToken: string; adminTenants: string[]; logger?: Logger; now?: () => number },
): AsyncAuthenticator {
  const adminDigest = digest(opts.adminToken);
  const now = opts.now ?? Date.now;
  return {
    async authenticate(header) {
      const token = bearerToken(header);
      if (timingSafeEqual(digest(token), adminDigest)) {
        return { name: 'admin', role: 'admin', tenants: opts.adminTenants, via: 'admin_token', global: true };
      }
      const t = now();
      if (token.startsWith('vgs_')) {
        const rows = await db.query<{ id: string; username: string; role: Role; tenants: string[]; disabled: boolean }>(
          `SELECT u.id, u.username, u.role, u.tenants, u.disabled FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.token_hash = $1 AND s.expires_at > $2`,
          [tokenHash(token), t],
        );
        const u = rows[0];
        if (!u || u.disabled) throw new AuthError('invalid or expired session');
        return { name: u.username, role: u.role, tenants: u.tenants, via: 'session', userId: u.id };
      }
      if (token.startsWith('vgk_')) {
        const rows = await db.query<{
          key_id: string;
          scopes: Scope[];
          expires_at: number;
          revoked_at: number | null;
          last_used_at: number | null;
          id: string;
          username: string;
          role: Role;
          tenants: string[];
          disabled: boolean;
        }>(
          `SELECT k.id AS key_id, k.scopes, k.expires_at, k.revoked_at, k.last_used_at,
                  u.id, u.username, u.role, u.tenants, u.disabled
           FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1`,
          [tokenHash(token)],
        );
        const k = rows[0];
        if (!k || k.disabled) throw new AuthError('invalid token');
        if (k.revoked_at !== null) throw new AuthError('this API key was revoked');
        if (Number(k.expires_at) <= t) throw new AuthError('this API key has expired');
        if (k.last_used_at === null || t - Number(k.last_used_at) > LAST_USED_RESOLUTION_MS) {
          db.query('UPDATE api_keys SET last_used_at = $2 WHERE id = $1', [k.key_id, t]).catch((err) =>
            opts.logger?.warn({ err: errorMessage(err), key: k.key_id }, 'Could not note when an API key was used.'),
          );
        }
        return {
          name: k.username,
          role: keyRole(k.role, k.scopes),
          tenants: k.tenants,
          via: 'api_key',
          userId: k.id,
          scopes: k.scopes,
          keyId: k.key_id,
        };
      }
      throw new AuthError('invalid token');
    },
  };
}
