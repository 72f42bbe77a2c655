import type { Principal } from './principal.ts';
import { VigilError } from '../lib/errors.ts';

export type Role = Principal['role'];
export const ROLES: readonly Role[] = ['viewer', 'analyst', 'admin'];

/**
 * API key scopes; a key acts with the lower of its user's role and its highest scope's role. `collector` is
 * apart: a key of that scope alone (it takes no other) only forwards collected events (`vigil collect`,
 * POST /api/v1/ingest/collected, which takes the event ids the collector gave), and every other route refuses
 * it, so a collector host that is taken over reads nothing.
 */
export const SCOPES = ['read', 'write', 'admin', 'collector'] as const;
export type Scope = (typeof SCOPES)[number];

const SCOPE_ROLE: Record<Exclude<Scope, 'collector'>, Role> = { read: 'viewer', write: 'analyst', admin: 'admin' };

/** viewer 0 < analyst 1 < admin 2. */
export function roleRank(role: Role): number {
  return ROLES.indexOf(role);
}

/** The role an API key with `scopes` acts with for a user of `userRole`. */
export function keyRole(userRole: Role, scopes: readonly Scope[]): Role {
  const scopeRank = Math.max(
    -1,
    ...scopes.filter((s): s is Exclude<Scope, 'collector'> => s !== 'collector').map((s) => roleRank(SCOPE_ROLE[s])),
  );
  if (scopeRank < 0) return 'viewer';
  return ROLES[Math.min(roleRank(userRole), scopeRank)];
}

/** Whether a principal authenticated with a collector key (which only forwards collected events). */
export function isCollectorKey(p: Principal): boolean {
  return userPrincipal(p)?.scopes?.includes('collector') === true;
}

/** The highest scope a user of `role` may put on a key. */
export function maxScope(role: Role): Scope {
  return role === 'admin' ? 'admin' : role === 'analyst' ? 'write' : 'read';
}

/** A principal as Vigil's user authenticator builds it: who, and through which credential. */
export interface UserPrincipal extends Principal {
  /** The user's id; absent for the bootstrap admin token, which is no user. */
  userId?: string;
  via: 'admin_token' | 'session' | 'api_key';
  /** The scopes of the API key used, when via is api_key. */
  scopes?: Scope[];
  /** The API key's id, when via is api_key. */
  keyId?: string;
}

/** The user fields of a principal, when the user authenticator made it (undefined otherwise). */
export function userPrincipal(p: Principal): UserPrincipal | undefined {
  const via = (p as Partial<UserPrincipal>).via;
  return via ? (p as UserPrincipal) : undefined;
}

/**
 * Refuses (403) a principal whose role is below `min`. Viewers read; analysts search, work incidents and
 * manage rules; admins do everything, users included.
 */
export function requireRole(principal: Principal, min: Role): void {
  if (roleRank(principal.role) < roleRank(min)) {
    throw new VigilError('forbidden', `this needs the ${min} role; ${principal.name} acts as ${principal.role}`, {
      status: 403,
      details: { required: min, role: principal.role },
    });
  }
}

/**
 * Refuses (403) acting in a tenant the principal is not given (to create something there); the global admin
 * holds every tenant.
 */
export function requireTenant(principal: Principal, tenant: string): void {
  if (!seesTenant(principal, tenant)) {
    throw new VigilError('forbidden_tenant', `tenant ${tenant} is not one of yours`, { status: 403 });
  }
}

/** Whether the principal is a global admin (the bootstrap admin token): every tenant, global rules. */
export function isGlobalAdmin(principal: Principal): boolean {
  return principal.global === true && principal.role === 'admin';
}

/**
 * Refuses (403) anyone but the global admin: for what acts on the whole node or holds every tenant's data
 * (maintenance stops every tenant's intake; a backup holds every tenant's events and password hashes).
 */
export function requireGlobalAdmin(principal: Principal, what: string): void {
  if (!isGlobalAdmin(principal)) {
    throw new VigilError('forbidden', `${what} needs the global admin (the admin token): it acts for every tenant`, {
      status: 403,
      details: { required: 'global_admin', role: principal.role },
    });
  }
}

/** Whether `tenant` (null: global scope, visible to all) is one the principal may see. */
export function seesTenant(principal: Principal, tenant: string | null): boolean {
  return tenant === null || isGlobalAdmin(principal) || principal.tenants.includes(tenant);
}
