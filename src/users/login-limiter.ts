import { isIPv6 } from 'node:net';
import type { Registry } from 'prom-client';
import { VigilError } from '../lib/errors.ts';
import { counter, gauge } from '../lib/metrics.ts';
import { backoffDelay } from '../lib/retry.ts';

/** Too many login attempts for an account, from an address, or both; the password was not checked. */
export class LoginRateLimitedError extends VigilError {
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number) {
    super('too_many_logins', 'too many failed logins; wait before trying again', { status: 429, retryable: true });
    this.name = 'LoginRateLimitedError';
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** What a login limiter counts against, as named in logs and in `vigil_auth_login_lockouts_total{scope}`. */
type LoginScope = 'account' | 'address' | 'account_address';

/** The limits of a login limiter (from the `users:` config section). */
export interface LoginLimits {
  /** The window attempts are counted in. */
  windowMs: number;
  /** Failed or pending attempts per account and address within the window. */
  accountAddressMax: number;
  /** Failed or pending attempts per account, from any address, within the window. */
  accountMax: number;
  /** Failed or pending attempts from one address (an IPv6 /64), for any account, within the window. */
  addressMax: number;
  /** The first lockout; each further one of the same key doubles it. */
  lockoutMs: number;
  /** The longest lockout; a key quiet this long after its lockout ends starts again from `lockoutMs`. */
  lockoutMaxMs: number;
  /**
   * Keys tracked at most; past it the least recently used are forgotten first (locked ones last). The
   * account and address pairs that logged in lately are remembered up to the same number.
   */
  maxKeys: number;
}

/**
 * How long an account and address pair that logged in stays known: a known pair is not held by the
 * account's own lock (only by the pair's and the address's), so guesses from elsewhere cannot keep its
 * owner out.
 */
const KNOWN_PAIR_MS = 24 * 3600_000;

/** One counted login attempt: say how it ended, once. */
export interface LoginAttempt {
  /** The password was right: the account's counters start again (the address's keeps other failures). */
  succeeded(): void;
  /** Wrong password, unknown or disabled user: the attempt stays counted, and a key at its limit locks. */
  failed(): void;
  /** The password could not be checked (the database failed): the attempt is given back. */
  abandoned(): void;
}

/**
 * Counts login attempts before their password is checked, per account, per address and per both, in this
 * process's memory (each node counts its own). `begin` is synchronous: an attempt is counted before the
 * first await, so parallel requests see each other and only the quota's worth reach the password check.
 */
export interface LoginLimiter {
  /** Counts an attempt, or throws LoginRateLimitedError (nothing counted) when a key is locked or full. */
  begin(username: string, address: string): LoginAttempt;
  /** Keys tracked now. */
  size(): number;
}

interface Entry {
  /** Times of attempts in the window that failed or are still being checked, oldest first. */
  attempts: number[];
  lockedUntil: number;
  /** Lockouts in a row (the next is `lockoutMs * 2^lockouts`, capped). */
  lockouts: number;
}

/** The key of an address: an IPv6 address counts by its /64 (one host's usual share), IPv4 whole. */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!isIPv6(address)) return address;
  const [head, tail = ''] = address.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::')
    ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/** Creates an in-memory login limiter. */
export function createLoginLimiter(limits: LoginLimits, deps: { metrics: Registry; now?: () => number }): LoginLimiter {
  const now = deps.now ?? Date.now;
  const entries = new Map<string, Entry>();
  /** Account and address pair key -> time of its last successful login, least recent first. */
  const known = new Map<string, number>();
  const lockouts = counter(
    deps.metrics,
    'vigil_auth_login_lockouts_total',
    'Login lockouts, by what was locked (account, address, account_address).',
    ['scope'],
  );
  const tracked = gauge(
    deps.metrics,
    'vigil_auth_login_tracked_keys',
    'Accounts and addresses the login limiter tracks.',
  );

  const maxOf: Record<LoginScope, number> = {
    account: limits.accountMax,
    address: limits.addressMax,
    account_address: limits.accountAddressMax,
  };

  /** The entry of `key`, its attempts pruned to the window, made the most recently used. */
  const touch = (key: string, t: number): Entry => {
    let e = entries.get(key);
    if (e) entries.delete(key);
    else e = { attempts: [], lockedUntil: 0, lockouts: 0 };
    const from = t - limits.windowMs;
    while (e.attempts.length > 0 && e.attempts[0] <= from) e.attempts.shift();
    if (e.lockouts > 0 && e.lockedUntil + limits.lockoutMaxMs <= t) e.lockouts = 0;
    entries.set(key, e);
    return e;
  };

  const evict = () => {
    // Least recently used first; a locked key is moved to the back once instead, so that flooding the
    // limiter with new names does not unlock an account under attack (a few tries keep this bounded).
    for (let tries = 0; entries.size > limits.maxKeys && tries < entries.size; tries++) {
      const [key, e] = entries.entries().next().value as [string, Entry];
      entries.delete(key);
      if (e.lockedUntil > now() && tries < 8) entries.set(key, e);
    }
    tracked.set(entries.size);
  };

  const removeOne = (key: string, at: number) => {
    const e = entries.get(key);
    const i = e ? e.attempts.indexOf(at) : -1;
    if (e && i >= 0) e.attempts.splice(i, 1);
  };

  return {
    begin(username, address) {
      const t = now();
      const account = username.toLowerCase().slice(0, 128);
      const accountKey = `u\u0000${account}`;
      const pairKey = `ua\u0000${account}\u0000${addressKey(address)}`;
      const lastSuccess = known.get(pairKey);
      if (lastSuccess !== undefined && lastSuccess + KNOWN_PAIR_MS <= t) known.delete(pairKey);
      const isKnown = lastSuccess !== undefined && lastSuccess + KNOWN_PAIR_MS > t;
      // A pair that logged in lately neither counts against the account nor waits for its lock: the
      // per-account limit is there for guesses spread over many addresses, and anyone can fill it.
      const keys: [LoginScope, string][] = [
        ...(isKnown ? [] : [['account', accountKey] as [LoginScope, string]]),
        ['address', `a\u0000${addressKey(address)}`],
        ['account_address', pairKey],
      ];
      let waitMs = 0;
      const seen: Entry[] = [];
      for (const [scope, key] of keys) {
        const e = touch(key, t);
        seen.push(e);
        if (e.lockedUntil > t) waitMs = Math.max(waitMs, e.lockedUntil - t);
        else if (e.attempts.length >= maxOf[scope]) waitMs = Math.max(waitMs, e.attempts[0] + limits.windowMs - t);
      }
      if (waitMs > 0) {
        evict();
        throw new LoginRateLimitedError(Math.max(1, Math.ceil(waitMs / 1000)));
      }
      for (const e of seen) e.attempts.push(t);
      evict();
      let settled = false;
      const settle = () => {
        if (settled) return false;
        settled = true;
        return true;
      };
      return {
        succeeded() {
          if (!settle()) return;
          const at = now();
          // A known pair's success leaves a lock others earned on the account in place.
          if (!((entries.get(accountKey)?.lockedUntil ?? 0) > at)) entries.delete(accountKey);
          entries.delete(pairKey);
          removeOne(`a\u0000${addressKey(address)}`, t);
          known.delete(pairKey);
          known.set(pairKey, at);
          while (known.size > limits.maxKeys) known.delete(known.keys().next().value as string);
          tracked.set(entries.size);
        },
        failed() {
          if (!settle()) return;
          const at = now();
          for (const [scope, key] of keys) {
            const e = entries.get(key);
            if (!e || e.lockedUntil > at || e.attempts.length < maxOf[scope]) continue;
            e.lockouts++;
            e.lockedUntil =
              at + backoffDelay(e.lockouts - 1, { initialMs: limits.lockoutMs, maxMs: limits.lockoutMaxMs });
            e.attempts = [];
            lockouts.inc({ scope });
          }
        },
        abandoned() {
          if (!settle()) return;
          for (const [, key] of keys) removeOne(key, t);
        },
      };
    },
    size: () => entries.size,
  };
}
