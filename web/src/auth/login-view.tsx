/** The sign-in page: one form per enabled login method (see LOGIN_METHODS). */
import { type FormEvent, useEffect, useId, useState } from 'react';
import { ErrorBox } from '../components/feedback.tsx';
import { ApiError } from '../lib/api.ts';
import { LOGIN_METHODS, type LoginMethodId, METHODS } from './session.ts';

export function LoginView({ onLogin, notice }: { onLogin(token: string): void; notice?: string }) {
  const [method, setMethod] = useState<LoginMethodId>(LOGIN_METHODS[0]);
  const [values, setValues] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const id = useId();
  const m = METHODS[method];

  useEffect(() => {
    document.title = 'Sign in · Vigil';
  }, []);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onLogin(await m.login(values));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const refused = error instanceof ApiError && error.status === 401;

  return (
    <main className="login" id="main">
      <form className="card login-card" onSubmit={submit} aria-labelledby={`${id}-title`}>
        <div className="brand large">
          <Shield />
          <span>Vigil</span>
        </div>
        <h1 id={`${id}-title`}>Sign in</h1>
        {notice && (
          <p className="notice notice-info" role="status">
            {notice}
          </p>
        )}
        {LOGIN_METHODS.length > 1 && (
          <div className="tabs" role="radiogroup" aria-label="Sign in with">
            {LOGIN_METHODS.map((mid) => (
              <label key={mid} className={mid === method ? 'tab selected' : 'tab'}>
                <input
                  type="radio"
                  name="method"
                  checked={mid === method}
                  onChange={() => {
                    setMethod(mid);
                    setError(null);
                  }}
                />
                {METHODS[mid].label}
              </label>
            ))}
          </div>
        )}
        {m.fields.map((f) => (
          <div className="form-row" key={f.name}>
            <label htmlFor={`${id}-${f.name}`}>{f.label}</label>
            <input
              id={`${id}-${f.name}`}
              name={f.name}
              type={f.type}
              autoComplete={f.autoComplete}
              required
              spellCheck={false}
              value={values[f.name] ?? ''}
              aria-describedby={f.hint ? `${id}-${f.name}-hint` : undefined}
              aria-invalid={refused || undefined}
              onChange={(e) => setValues((v) => ({ ...v, [f.name]: e.target.value }))}
            />
            {f.hint && (
              <p className="muted small" id={`${id}-${f.name}-hint`}>
                {f.hint}
              </p>
            )}
          </div>
        ))}
        {refused ? (
          <p className="notice notice-error" role="alert">
            The server refused this {method === 'token' ? 'token' : 'username or password'} ({error.message}). Check it
            and try again.
          </p>
        ) : error instanceof ApiError && error.code === 'too_many_logins' ? (
          <p className="notice notice-error" role="alert">
            Too many failed sign-ins for this username. Wait {error.retryAfter ? `${error.retryAfter} s` : 'a minute'}{' '}
            and try again.
          </p>
        ) : (
          error !== null && <ErrorBox error={error} title="Could not sign in" />
        )}
        <button type="submit" className="primary wide" disabled={busy}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        <p className="muted small">
          {method === 'password'
            ? 'The session lasts until you sign out or it expires; its token is kept in this tab only.'
            : 'The token is kept in this tab only (session storage) and is sent to this server only.'}
        </p>
      </form>
    </main>
  );
}

export function Shield() {
  return (
    <svg viewBox="0 0 16 16" width="20" height="20" aria-hidden="true" className="shield">
      <path d="M8 1 2 3.5V8c0 3.3 2.6 6.3 6 7 3.4-.7 6-3.7 6-7V3.5z" />
    </svg>
  );
}
