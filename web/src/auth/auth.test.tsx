import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { App } from '../app.tsx';
import { setApiSession } from '../lib/api.ts';
import { serve } from '../lib/fake-server.ts';
import { SettingsProvider } from '../lib/settings.tsx';
import { LoginView } from './login-view.tsx';
import { LOGIN_METHODS, storedToken, storeToken } from './session.ts';

beforeEach(() => {
  setApiSession({ token: storedToken, onUnauthorized: () => {} });
  window.history.replaceState(null, '', '/ui/rules');
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  sessionStorage.clear();
});

describe('signing in', () => {
  test('a username and password are offered first, a token second', () => {
    expect(LOGIN_METHODS).toEqual(['password', 'token']);
  });

  test('the password form posts to /api/v1/auth/login and hands over the session token', async () => {
    const calls = serve({ 'POST /api/v1/auth/login': [200, { token: 'vgs_abc', expiresAt: 1, user: {} }] });
    const onLogin = vi.fn();
    render(<LoginView onLogin={onLogin} />);
    fireEvent.change(screen.getByLabelText('Username'), { target: { value: 'vera' } });
    fireEvent.change(screen.getByLabelText('Password'), { target: { value: 'correct horse battery' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    await waitFor(() => expect(onLogin).toHaveBeenCalledWith('vgs_abc'));
    expect(JSON.parse(calls[0].body ?? '')).toEqual({ username: 'vera', password: 'correct horse battery' });
  });

  test.each([
    [401, 'bad_credentials', 'wrong username or password', /refused this username or password/],
    [429, 'too_many_logins', 'too many failed logins', /Too many failed sign-ins/],
  ])('a %d answer says what happened', async (status, code, message, shown) => {
    serve({ 'POST /api/v1/auth/login': [status, { error: { code, message } }] });
    const onLogin = vi.fn();
    render(<LoginView onLogin={onLogin} />);
    fireEvent.change(screen.getByLabelText('Username'), { target: { value: 'vera' } });
    fireEvent.change(screen.getByLabelText('Password'), { target: { value: 'nope nope nope' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect((await screen.findByRole('alert')).textContent).toMatch(shown);
    expect(onLogin).not.toHaveBeenCalled();
  });

  test('the token tab checks the token before keeping it', async () => {
    const calls = serve({ 'GET /api/v1/search': [200, { total: 0, events: [], took_ms: 1 }] });
    const onLogin = vi.fn();
    render(<LoginView onLogin={onLogin} />);
    fireEvent.click(screen.getByRole('radio', { name: 'Token' }));
    fireEvent.change(screen.getByLabelText('API token'), { target: { value: ' admin-token-0123456789 ' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    await waitFor(() => expect(onLogin).toHaveBeenCalledWith('admin-token-0123456789'));
    expect(calls[0].path).toBe('/api/v1/search');
  });
});

describe('the signed-in shell', () => {
  const rules = { version: 1, total: 0, rules: [], rejected: [] };

  test('shows who is signed in and hides what the role may not use; signing out ends the session', async () => {
    storeToken('vgs_session');
    const calls = serve({
      'GET /api/v1/auth/me': [200, { name: 'vera', role: 'viewer', tenants: ['default'], via: 'session' }],
      'GET /api/v1/rules': [200, rules],
      'POST /api/v1/auth/logout': [200, { loggedOut: true }],
    });
    render(
      <SettingsProvider>
        <App />
      </SettingsProvider>,
    );
    expect((await screen.findByTestId('whoami')).textContent).toBe('vera viewer');
    await screen.findByText(/Read only: adding, editing and switching rules needs the analyst role/);
    fireEvent.click(screen.getByRole('button', { name: 'Sign out' }));
    await screen.findByText('You are signed out.');
    expect(storedToken()).toBeNull();
    const logout = calls.find((c) => c.path === '/api/v1/auth/logout');
    expect(logout?.method).toBe('POST');
  });

  test('the admin token is no session: signing out forgets it without calling logout', async () => {
    storeToken('admin-token-0123456789');
    const calls = serve({
      'GET /api/v1/auth/me': [200, { name: 'admin', role: 'admin', tenants: ['default'], via: 'admin_token' }],
      'GET /api/v1/rules': [200, rules],
    });
    render(
      <SettingsProvider>
        <App />
      </SettingsProvider>,
    );
    await screen.findByRole('link', { name: 'New rule' });
    fireEvent.click(screen.getByRole('button', { name: 'Sign out' }));
    await screen.findByText('You are signed out.');
    expect(calls.some((c) => c.path === '/api/v1/auth/logout')).toBe(false);
  });
});
