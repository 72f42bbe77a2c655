/**
 * Users and access: users with roles and tenants, scrypt passwords, console sessions, scoped API keys,
 * principals and the user authenticator (with the bootstrap admin token), role checks for routes, and the
 * append-only audit log.
 */
export {
  isGlobalAdmin,
  keyRole,
  maxScope,
  ROLES,
  type Role,
  requireGlobalAdmin,
  requireRole,
  requireTenant,
  roleRank,
  SCOPES,
  seesTenant,
  type Scope,
  type UserPrincipal,
  userPrincipal,
} from './access.ts';
export { type AuditEntry, type AuditFilter, type AuditLog, createAuditLog } from './audit.ts';
export { type AsyncAuthenticator, bearerToken, createUserAuthenticator } from './authenticator.ts';
export { type UsersConfig, usersConfigSchema } from './config.ts';
export { type Authenticator, AuthError, type Principal, resolveAdminToken } from './principal.ts';
export { hashPassword, verifyPassword } from './password.ts';
export { USER_MIGRATIONS } from './schema.ts';
export {
  type Actor,
  type ApiKeyInfo,
  createUserService,
  LoginRateLimitedError,
  type NewUser,
  tokenHash,
  type User,
  type UserPatch,
  type UserService,
} from './service.ts';
