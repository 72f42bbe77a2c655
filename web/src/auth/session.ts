/**
 * Signing in and out. Each way of signing in is a LoginMethod that ends with a bearer token; the token
 * lives in sessionStorage (gone when the tab closes, never in localStorage or a cookie).
 *
 * A user signs in with a username and password (`POST /api/v1/auth/login` -> a session token that
 * expires); the bootstrap admin token or an API key is pasted as a token. Signing out of a session ends
 * it on the server too (`POST /api/v1/auth/logout`).
 */
import { ApiError, api } from '../lib/api.ts';
import type { Me } from './access.tsx';

const KEY = 'vigil.token';

/** The methods offered on the login view, in order; the first is shown first. */
export const LOGIN_METHODS: LoginMethodId[] = ['password', 'token'];

export type LoginMethodId = 'token' | 'password';

/** A way to sign in: fields of its form, and how they become a token. */
export interface LoginMethod {
  id: LoginMethodId;
  label: string;
  fields: { name: string; label: string; type: 'text' | 'password'; autoComplete: string; hint?: string }[];
  login(values: Record<string, string>): Promise<string>;
}

/** Checks a token with a cheap authenticated call; a 401 means the token is wrong. */
async function checkToken(token: string): Promise<void> {
  try {
    await api('/api/v1/search?q=*&limit=0&from=now-1m', { token, keepSessionOn401: true });
  } catch (err) {
    // A node without the search route (another role) still tells a bad token by its 401.
    if (err instanceof ApiError && err.missingRoute) return;
    throw err;
  }
}

export const METHODS: Record<LoginMethodId, LoginMethod> = {
  token: {
    id: 'token',
    label: 'Token',
    fields: [
      {
        name: 'token',
        label: 'API token',
        type: 'password',
        autoComplete: 'off',
        hint: 'An API key, or the admin token printed at the first start and kept in <data_dir>/admin-token.',
      },
    ],
    async login(values) {
      const token = values.token.trim();
      if (!token) throw new ApiError(400, 'empty_token', 'paste a token first');
      await checkToken(token);
      return token;
    },
  },
  password: {
    id: 'password',
    label: 'Username and password',
    fields: [
      { name: 'username', label: 'Username', type: 'text', autoComplete: 'username' },
      { name: 'password', label: 'Password', type: 'password', autoComplete: 'current-password' },
    ],
    async login(values) {
      const answer = await api<{ token?: string }>('/api/v1/auth/login', {
        method: 'POST',
        body: { username: values.username, password: values.password },
        keepSessionOn401: true,
      });
      if (!answer.token) throw new ApiError(500, 'bad_login_answer', 'the server answered without a token');
      return answer.token;
    },
  },
};

export function storedToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function storeToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    // Without storage the session lasts until the page reloads.
  }
}

/** Who the token belongs to; undefined when the server has no /api/v1/auth/me (an older version). */
export async function fetchMe(): Promise<Me | undefined> {
  try {
    return await api<Me>('/api/v1/auth/me');
  } catch (err) {
    if (err instanceof ApiError && err.missingRoute) return undefined;
    throw err;
  }
}

/**
 * Ends a console session on the server. Other tokens (the admin token, API keys) are not sessions and
 * stay valid: forgetting them in this tab is all signing out does.
 */
export async function endSession(me: Me | undefined): Promise<void> {
  if (me?.via !== 'session') return;
  await api('/api/v1/auth/logout', { method: 'POST', body: {}, keepSessionOn401: true });
}
