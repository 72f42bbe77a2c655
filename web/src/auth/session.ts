/**
 * Signing in. Each way of signing in is a LoginMethod that ends with a bearer token; the token lives in
 * sessionStorage (gone when the tab closes, never in localStorage or a cookie).
 *
 * Today only the token method is on. When the server has `POST /api/v1/auth/login` ({username,
 * password} -> {token}), add 'password' to LOGIN_METHODS: the login view shows a form per method.
 */
import { ApiError, api } from '../lib/api.ts';

const KEY = 'vigil.token';

/** The methods offered on the login view, in order. */
export const LOGIN_METHODS: LoginMethodId[] = ['token'];

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
    label: 'API token',
    fields: [
      {
        name: 'token',
        label: 'API token',
        type: 'password',
        autoComplete: 'off',
        hint: 'The admin token is printed at the first start and kept in <data_dir>/admin-token.',
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
