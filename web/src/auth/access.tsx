/**
 * Who is signed in and what they may do. The role comes from GET /api/v1/auth/me (admin, analyst or
 * viewer, as src/users/access.ts defines them); views ask `useAccess().can(action)` to hide or disable what
 * the role may not do. The server still decides: a 403 it answers is shown as such (see describeError).
 */
import { createContext, type ReactNode, useContext } from 'react';

export type Role = 'viewer' | 'analyst' | 'admin';

/** GET /api/v1/auth/me. */
export interface Me {
  name: string;
  role: Role;
  tenants: string[];
  /** How the token was issued: the bootstrap admin token, a console session, or an API key. */
  via?: 'admin_token' | 'session' | 'api_key';
  userId?: string;
}

/**
 * Actions the console offers, with the least role the server accepts for each (src/api/routes: alerts and
 * incidents PATCH, rules writes, /admin/*, /api/v1/users).
 */
export const ACTIONS = {
  'alerts.change': 'analyst',
  'incidents.change': 'analyst',
  'rules.change': 'analyst',
  'cluster.admin': 'admin',
  'users.manage': 'admin',
} as const satisfies Record<string, Role>;

export type Action = keyof typeof ACTIONS;

const RANK: Record<Role, number> = { viewer: 0, analyst: 1, admin: 2 };

/** Whether `role` may take `action`; an unknown role (a server without /auth/me) is left to the server. */
export function roleAllows(role: Role | undefined, action: Action): boolean {
  if (role === undefined || !(role in RANK)) return true;
  return RANK[role] >= RANK[ACTIONS[action]];
}

export interface Access {
  me: Me | undefined;
  can(action: Action): boolean;
}

const AccessContext = createContext<Access>({ me: undefined, can: () => true });

export function AccessProvider({ me, children }: { me: Me | undefined; children: ReactNode }) {
  return (
    <AccessContext.Provider value={{ me, can: (a) => roleAllows(me?.role, a) }}>{children}</AccessContext.Provider>
  );
}

/** The signed-in principal and its permissions (everything allowed outside an AccessProvider). */
export function useAccess(): Access {
  return useContext(AccessContext);
}

/** Says why an action is not offered: "needs the analyst role; you are viewer". */
export function roleNote(action: Action, me: Me | undefined): string {
  return `Needs the ${ACTIONS[action]} role; you are signed in as ${me?.name ?? 'this user'} (${me?.role ?? 'unknown role'}).`;
}

/** A short notice where a role's missing permission hides a view's actions. */
export function ReadOnlyNote({ action, what }: { action: Action; what: string }) {
  const { me, can } = useAccess();
  if (can(action)) return null;
  return (
    <p className="notice notice-info read-only-note" role="note">
      Read only: {what} {roleNote(action, me).replace(/^Needs/, 'needs')}
    </p>
  );
}
