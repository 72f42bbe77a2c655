import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Db } from '../db/index.ts';
import { InputError, VigilError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { counter } from '../lib/metrics.ts';
import { maxScope, ROLES, type Role, SCOPES, type Scope } from './access.ts';
import type { AuditLog } from './audit.ts';
import type { UsersConfig } from './config.ts';
import { createLoginLimiter, type LoginAttempt, LoginRateLimitedError } from './login-limiter.ts';
import { decoyHash, hashPassword, verifyPassword } from './password.ts';
import { checkPasswordPolicy } from './password-policy.ts';

export { LoginRateLimitedError } from './login-limiter.ts';

/** A user as the API shows it (never the password hash). */
export interface User {
  id: string;
  username: string;
  role: Role;
  tenants: string[];
  disabled: boolean;
  createdAt: number;
  updatedAt: number;
}

/** An API key as listed (the secret is shown once, at creation, and only its hash is kept). */
export interface ApiKeyInfo {
  id: string;
  userId: string;
  username: string;
  name: string;
  scopes: Scope[];
  createdAt: number;
  expiresAt: number;
  revokedAt: number | null;
  lastUsedAt: number | null;
}

export interface NewUser {
  username: string;
  password: string;
  role: Role;
  tenants: string[];
}

export interface UserPatch {
  password?: string;
  role?: Role;
  tenants?: string[];
  disabled?: boolean;
}

/** Who acts, for the audit log and for checks that need the actor's own rights. */
export interface Actor {
  name: string;
  role: Role;
  tenants: string[];
  /** The global admin (the admin token): it may grant any tenant, its own list is the intake tenants only. */
  global?: boolean;
}

/** Users, their API keys and console sessions; every change is audited in the same transaction. */
export interface UserService {
  create(input: NewUser, actor: Actor): Promise<User>;
  list(): Promise<User[]>;
  get(id: string): Promise<User | undefined>;
  update(id: string, patch: UserPatch, actor: Actor): Promise<User>;
  remove(id: string, actor: Actor): Promise<void>;
  /** Creates a key for `userId`; the returned `token` is its only appearance. */
  createApiKey(
    userId: string,
    input: { name: string; scopes: Scope[]; expiresInDays?: number },
    actor: Actor,
  ): Promise<{ key: ApiKeyInfo; token: string }>;
  /** Keys of one user, or of every user when `userId` is undefined. */
  listApiKeys(userId?: string): Promise<ApiKeyInfo[]>;
  getApiKey(id: string): Promise<ApiKeyInfo | undefined>;
  revokeApiKey(id: string, actor: Actor): Promise<ApiKeyInfo>;
  /**
   * Checks a password and opens a session. Attempts are counted before the check, per account, per address
   * and per both; a locked or full key answers LoginRateLimitedError without checking the password.
   */
  login(username: string, password: string, address: string): Promise<{ token: string; expiresAt: number; user: User }>;
  /** Ends the session of `token` (a no-op for other tokens). */
  logout(token: string, actor: Actor): Promise<void>;
}

interface UserRow {
  id: string;
  username: string;
  password_hash: string;
  role: Role;
  tenants: string[];
  disabled: boolean;
  created_at: number;
  updated_at: number;
}

interface KeyRow {
  id: string;
  user_id: string;
  username: string;
  name: string;
  scopes: Scope[];
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
  last_used_at: number | null;
}

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const DAY_MS = 86_400_000;

/** Hash under which a bearer token (session or API key) is stored and looked up. */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

const toUser = (r: UserRow): User => ({
  id: r.id,
  username: r.username,
  role: r.role,
  tenants: r.tenants,
  disabled: r.disabled,
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
});

const toKey = (r: KeyRow): ApiKeyInfo => ({
  id: r.id,
  userId: r.user_id,
  username: r.username,
  name: r.name,
  scopes: r.scopes,
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
  revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
  lastUsedAt: r.last_used_at === null ? null : Number(r.last_used_at),
});

const notFound = (what: string) => new VigilError('not_found', `no ${what}`, { status: 404 });

/** Creates the user service on `db`. */
export function createUserService(
  config: UsersConfig,
  deps: { db: Db; audit: AuditLog; metrics: Registry; logger: Logger; now?: () => number },
): UserService {
  const { db, audit } = deps;
  const now = deps.now ?? Date.now;
  const loginFailures = counter(
    deps.metrics,
    'vigil_auth_login_failures_total',
    'Failed logins, by reason (bad_credentials, rate_limited).',
    ['reason'],
  );
  const logins = counter(deps.metrics, 'vigil_auth_logins_total', 'Successful logins.');
  const passwordRejections = counter(
    deps.metrics,
    'vigil_users_password_rejections_total',
    'Passwords refused when a user is created or changes one, by rule.',
    ['rule'],
  );
  const limiter = createLoginLimiter(
    {
      windowMs: config.login_window_ms,
      accountAddressMax: config.login_max_failures,
      accountMax: config.login_account_max_failures,
      addressMax: config.login_address_max_failures,
      lockoutMs: config.login_lockout_ms,
      lockoutMaxMs: Math.max(config.login_lockout_ms, config.login_lockout_max_ms),
      maxKeys: config.login_tracked_keys_max,
    },
    { metrics: deps.metrics, now },
  );
  let decoy: Promise<string> | undefined;

  const checkPassword = (password: unknown, username: string | undefined) =>
    checkPasswordPolicy(password, {
      minLength: config.min_password_length,
      username,
      refused: (rule) => passwordRejections.inc({ rule }),
    });
  const checkRole = (role: unknown): Role => {
    if (!ROLES.includes(role as Role)) throw new InputError('bad_role', `role must be one of ${ROLES.join(', ')}`);
    return role as Role;
  };
  const checkTenants = (tenants: unknown, actor: Actor): string[] => {
    if (
      !Array.isArray(tenants) ||
      tenants.length === 0 ||
      !tenants.every((t) => typeof t === 'string' && TENANT.test(t))
    ) {
      throw new InputError('bad_tenants', 'tenants must be a non-empty list of tenant names');
    }
    // An admin hands out only tenants it has itself: no widening of access through user management. The
    // global admin sees every tenant, so it creates the first users of a new one.
    const foreign = actor.global ? [] : tenants.filter((t) => !actor.tenants.includes(t));
    if (foreign.length > 0) {
      throw new VigilError('forbidden_tenant', `tenants ${foreign.join(', ')} are not yours to grant`, { status: 403 });
    }
    return [...new Set(tenants as string[])];
  };
  const userRow = async (id: string) =>
    (await db.query<UserRow>('SELECT * FROM users WHERE id = $1', [id]))[0] as UserRow | undefined;

  return {
    async create(input, actor) {
      if (typeof input.username !== 'string' || !USERNAME.test(input.username)) {
        throw new InputError('bad_username', 'username: 1 to 64 letters, digits, dot, dash, underscore or @');
      }
      checkPassword(input.password, input.username);
      const role = checkRole(input.role);
      const tenants = checkTenants(input.tenants, actor);
      const hash = await hashPassword(input.password, config.scrypt_log_n);
      const t = now();
      return db.transaction(async (tx) => {
        const rows = await tx.query<UserRow>(
          `INSERT INTO users (id, username, password_hash, role, tenants, disabled, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, false, $6, $6) ON CONFLICT (username) DO NOTHING RETURNING *`,
          [randomUUID(), input.username, hash, role, tenants, t],
        );
        if (!rows[0]) throw new VigilError('user_exists', `user ${input.username} exists`, { status: 409 });
        const user = toUser(rows[0]);
        await audit.record(
          actor.name,
          'user.create',
          `user:${user.id}`,
          { username: user.username, role, tenants },
          { tx, tenants },
        );
        return user;
      });
    },
    async list() {
      return (await db.query<UserRow>('SELECT * FROM users ORDER BY username')).map(toUser);
    },
    async get(id) {
      const row = await userRow(id);
      return row ? toUser(row) : undefined;
    },
    async update(id, patch, actor) {
      const sets: string[] = [];
      const params: unknown[] = [id];
      const changes: Record<string, unknown> = {};
      const set = (column: string, value: unknown) => {
        params.push(value);
        sets.push(`${column} = $${params.length}`);
        changes[column === 'password_hash' ? 'password' : column] = column === 'password_hash' ? 'changed' : value;
      };
      if (patch.password !== undefined) {
        const current = await userRow(id);
        if (!current) throw notFound(`user ${id}`);
        checkPassword(patch.password, current.username);
        set('password_hash', await hashPassword(patch.password, config.scrypt_log_n));
      }
      if (patch.role !== undefined) set('role', checkRole(patch.role));
      if (patch.tenants !== undefined) set('tenants', checkTenants(patch.tenants, actor));
      if (patch.disabled !== undefined) {
        if (typeof patch.disabled !== 'boolean') throw new InputError('bad_disabled', 'disabled must be true or false');
        set('disabled', patch.disabled);
      }
      if (sets.length === 0)
        throw new InputError('empty_patch', 'nothing to change: give password, role, tenants or disabled');
      params.push(now());
      sets.push(`updated_at = $${params.length}`);
      return db.transaction(async (tx) => {
        // The entry is shown to the tenants the user leaves as well as those it joins: read them first.
        const before = await tx.query<{ tenants: string[] }>('SELECT tenants FROM users WHERE id = $1 FOR UPDATE', [
          id,
        ]);
        if (!before[0]) throw notFound(`user ${id}`);
        const rows = await tx.query<UserRow>(`UPDATE users SET ${sets.join(', ')} WHERE id = $1 RETURNING *`, params);
        if (!rows[0]) throw notFound(`user ${id}`);
        // A changed password, role or tenants, or a disabled account, ends the user's console sessions.
        await tx.query('DELETE FROM sessions WHERE user_id = $1', [id]);
        const tenants = [...new Set([...before[0].tenants, ...rows[0].tenants])];
        await audit.record(actor.name, 'user.update', `user:${id}`, changes, { tx, tenants });
        return toUser(rows[0]);
      });
    },
    async remove(id, actor) {
      await db.transaction(async (tx) => {
        const rows = await tx.query<{ username: string; tenants: string[] }>(
          'DELETE FROM users WHERE id = $1 RETURNING username, tenants',
          [id],
        );
        if (!rows[0]) throw notFound(`user ${id}`);
        await audit.record(
          actor.name,
          'user.delete',
          `user:${id}`,
          { username: rows[0].username },
          { tx, tenants: rows[0].tenants },
        );
      });
    },
    async createApiKey(userId, input, actor) {
      const user = await userRow(userId);
      if (!user) throw notFound(`user ${userId}`);
      if (typeof input.name !== 'string' || input.name.length < 1 || input.name.length > 100) {
        throw new InputError('bad_name', 'name: 1 to 100 characters');
      }
      if (!Array.isArray(input.scopes) || input.scopes.length === 0 || !input.scopes.every((s) => SCOPES.includes(s))) {
        throw new InputError('bad_scopes', `scopes: a non-empty list of ${SCOPES.join(', ')}`);
      }
      if (input.scopes.includes('collector')) {
        // A collector key writes events with ids of its choosing: only alone (it never reads), and only for a
        // user who may write events.
        if (input.scopes.some((s) => s !== 'collector')) {
          throw new InputError('bad_scopes', 'scopes: collector is given alone, without read, write or admin');
        }
        if (user.role === 'viewer') {
          throw new InputError('scope_too_wide', 'a viewer may not have a collector key: it writes events');
        }
      }
      const allowed = maxScope(user.role);
      const tooWide = input.scopes.filter((s) => s !== 'collector' && SCOPES.indexOf(s) > SCOPES.indexOf(allowed));
      if (tooWide.length > 0) {
        throw new InputError(
          'scope_too_wide',
          `a ${user.role} may have keys up to the ${allowed} scope, not ${tooWide.join(', ')}`,
        );
      }
      const days = input.expiresInDays ?? config.api_key_default_ttl_days;
      if (!(typeof days === 'number' && days > 0 && days <= config.api_key_max_ttl_days)) {
        throw new InputError('bad_expiry', `expires_in_days: more than 0, at most ${config.api_key_max_ttl_days}`);
      }
      const id = randomBytes(8).toString('hex');
      const token = `vgk_${id}_${randomBytes(24).toString('base64url')}`;
      const t = now();
      const scopes = [...new Set(input.scopes)];
      return db.transaction(async (tx) => {
        const rows = await tx.query<KeyRow>(
          `INSERT INTO api_keys (id, user_id, name, key_hash, scopes, created_at, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           RETURNING *, (SELECT username FROM users WHERE id = $2) AS username`,
          [id, userId, input.name, tokenHash(token), scopes, t, Math.round(t + days * DAY_MS)],
        );
        const key = toKey(rows[0]);
        await audit.record(
          actor.name,
          'api_key.create',
          `api_key:${id}`,
          { user: user.username, scopes, expiresAt: key.expiresAt },
          { tx, tenants: user.tenants },
        );
        return { key, token };
      });
    },
    async listApiKeys(userId) {
      const rows = await db.query<KeyRow>(
        `SELECT k.*, u.username FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE $1::text IS NULL OR k.user_id = $1 ORDER BY k.created_at, k.id`,
        [userId ?? null],
      );
      return rows.map(toKey);
    },
    async getApiKey(id) {
      const rows = await db.query<KeyRow>(
        'SELECT k.*, u.username FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1',
        [id],
      );
      return rows[0] ? toKey(rows[0]) : undefined;
    },
    async revokeApiKey(id, actor) {
      return db.transaction(async (tx) => {
        const rows = await tx.query<KeyRow & { tenants: string[] }>(
          `UPDATE api_keys k SET revoked_at = COALESCE(k.revoked_at, $2) FROM users u
           WHERE k.id = $1 AND u.id = k.user_id RETURNING k.*, u.username, u.tenants`,
          [id, now()],
        );
        if (!rows[0]) throw notFound(`API key ${id}`);
        await audit.record(
          actor.name,
          'api_key.revoke',
          `api_key:${id}`,
          { user: rows[0].username },
          { tx, tenants: rows[0].tenants },
        );
        return toKey(rows[0]);
      });
    },
    async login(username, password, address) {
      const t = now();
      // Counted before the first await: parallel attempts see each other, and a locked account or address
      // is refused without its password being checked, right or wrong.
      let attempt: LoginAttempt;
      try {
        attempt = limiter.begin(username, address);
      } catch (err) {
        if (err instanceof LoginRateLimitedError) {
          loginFailures.inc({ reason: 'rate_limited' });
          deps.logger.warn(
            { username, address, retryAfterSeconds: err.retryAfterSeconds },
            'A login was refused: too many failed attempts.',
          );
        }
        throw err;
      }
      let row: UserRow | undefined;
      let ok = false;
      try {
        row = (await db.query<UserRow>('SELECT * FROM users WHERE username = $1', [username]))[0];
        decoy ??= decoyHash(config.scrypt_log_n);
        ok = await verifyPassword(String(password), row ? row.password_hash : await decoy);
      } catch (err) {
        attempt.abandoned();
        throw err;
      }
      if (!row || !ok || row.disabled) {
        attempt.failed();
        loginFailures.inc({ reason: 'bad_credentials' });
        deps.logger.info({ username, address }, 'A login failed.');
        throw new VigilError('bad_credentials', 'wrong username or password', { status: 401 });
      }
      attempt.succeeded();
      const token = `vgs_${randomBytes(32).toString('base64url')}`;
      const expiresAt = t + config.session_ttl_ms;
      await db.transaction(async (tx) => {
        // Expired sessions are swept here rather than by a timer: logins are rare and this keeps the table small.
        await tx.query('DELETE FROM sessions WHERE expires_at < $1', [t]);
        await tx.query('INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)', [
          tokenHash(token),
          row.id,
          t,
          expiresAt,
        ]);
        await audit.record(row.username, 'auth.login', `user:${row.id}`, { address }, { tx, tenants: row.tenants });
      });
      logins.inc();
      return { token, expiresAt, user: toUser(row) };
    },
    async logout(token, actor) {
      await db.transaction(async (tx) => {
        const rows = await tx.query<{ user_id: string }>(
          'DELETE FROM sessions WHERE token_hash = $1 RETURNING user_id',
          [tokenHash(token)],
        );
        if (rows[0]) {
          await audit.record(actor.name, 'auth.logout', `user:${rows[0].user_id}`, {}, { tx, tenants: actor.tenants });
        }
      });
    },
  };
}
