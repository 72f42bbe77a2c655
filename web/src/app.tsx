/** The console shell: sign-in gate, navigation, preferences, and the view for the current URL. */
import { type RefObject, useEffect, useRef, useState } from 'react';
import { AccessProvider, type Action, type Me, roleAllows } from './auth/access.tsx';
import { LoginView, Shield } from './auth/login-view.tsx';
import { endSession, fetchMe, storedToken, storeToken } from './auth/session.ts';
import { ErrorBox, Loading } from './components/feedback.tsx';
import { Link, matchPath, navigate, useLocation } from './lib/router.tsx';
import { type Theme, useSettings } from './lib/settings.tsx';
import { AlertsView } from './views/alerts-view.tsx';
import { ClusterView } from './views/cluster-view.tsx';
import { IncidentsView } from './views/incidents-view.tsx';
import { RulesView } from './views/rules-view.tsx';
import { SearchView } from './views/search-view.tsx';
import { UsersView } from './views/users-view.tsx';

/** Raised by the API client when the server refuses the token. */
export const UNAUTHORIZED_EVENT = 'vigil:unauthorized';

/** The views in the top bar; one with `needs` is listed only for roles that may take that action. */
const NAV: { path: string; label: string; needs?: Action }[] = [
  { path: '/ui/search', label: 'Search' },
  { path: '/ui/alerts', label: 'Alerts' },
  { path: '/ui/incidents', label: 'Incidents' },
  { path: '/ui/rules', label: 'Rules' },
  { path: '/ui/cluster', label: 'Cluster' },
  { path: '/ui/users', label: 'Users', needs: 'users.manage' },
];

export function App() {
  const [token, setToken] = useState(storedToken);
  const [notice, setNotice] = useState<string>();
  const location = useLocation();
  const mainRef = useRef<HTMLElement>(null);
  const section = location.path.split('/')[2] ?? '';

  useEffect(() => {
    const onUnauthorized = () => {
      storeToken(null);
      setToken(null);
      setNotice('The server no longer accepts your token. Sign in again; you will come back to this page.');
    };
    window.addEventListener(UNAUTHORIZED_EVENT, onUnauthorized);
    return () => window.removeEventListener(UNAUTHORIZED_EVENT, onUnauthorized);
  }, []);

  useEffect(() => {
    if (location.path === '/' || location.path === '/ui' || location.path === '/ui/') {
      navigate('/ui/search', { replace: true });
    }
  }, [location.path]);

  // Moving to another view puts focus at its start, as a page load would.
  const firstSection = useRef(true);
  // runs when the section changes.
  useEffect(() => {
    if (firstSection.current) {
      firstSection.current = false;
      return;
    }
    mainRef.current?.focus();
  }, [section]);

  if (!token) {
    return (
      <LoginView
        notice={notice}
        onLogin={(t) => {
          storeToken(t);
          setToken(t);
          setNotice(undefined);
        }}
      />
    );
  }
  return (
    <Shell
      key={token}
      location={location}
      mainRef={mainRef}
      onSignedOut={(message) => {
        storeToken(null);
        setToken(null);
        setNotice(message);
      }}
    />
  );
}

type MeState = { state: 'loading' } | { state: 'ready'; me: Me | undefined } | { state: 'failed'; error: unknown };

/** The signed-in console: asks the server who the token belongs to, then shows what that role may use. */
function Shell({
  location,
  mainRef,
  onSignedOut,
}: {
  location: ReturnType<typeof useLocation>;
  mainRef: RefObject<HTMLElement | null>;
  onSignedOut(message: string): void;
}) {
  const [who, setWho] = useState<MeState>({ state: 'loading' });
  const [attempt, setAttempt] = useState(0);
  const [signingOut, setSigningOut] = useState(false);

  // attempt asks again after a failure.
  useEffect(() => {
    let stop = false;
    setWho({ state: 'loading' });
    fetchMe().then(
      (me) => !stop && setWho({ state: 'ready', me }),
      (error) => !stop && setWho({ state: 'failed', error }),
    );
    return () => {
      stop = true;
    };
  }, [attempt]);

  const me = who.state === 'ready' ? who.me : undefined;

  const signOut = async () => {
    setSigningOut(true);
    try {
      await endSession(me);
      onSignedOut('You are signed out.');
    } catch {
      // The tab forgets the token either way; the server ends the session when it expires.
      onSignedOut('You are signed out of this tab. The server could not be told; the session ends when it expires.');
    }
  };

  if (who.state !== 'ready') {
    return (
      <main className="login" id="main">
        <div className="card login-card">
          {who.state === 'loading' ? (
            <Loading label="Checking your sign-in…" />
          ) : (
            <ErrorBox error={who.error} title="Could not check your sign-in" onRetry={() => setAttempt((n) => n + 1)} />
          )}
          <button type="button" className="link-button" onClick={() => onSignedOut('You are signed out.')}>
            Sign out
          </button>
        </div>
      </main>
    );
  }

  return (
    <AccessProvider me={me}>
      <div className="shell">
        <a className="skip-link" href="#main">
          Skip to content
        </a>
        <header className="topbar">
          <Link href="/ui/search" className="brand">
            <Shield />
            <span>Vigil</span>
          </Link>
          <nav aria-label="Main">
            <ul className="nav-list">
              {NAV.filter((n) => !n.needs || roleAllows(me?.role, n.needs)).map((n) => (
                <li key={n.path}>
                  <Link href={n.path} aria-current={location.path.startsWith(n.path) ? 'page' : undefined}>
                    {n.label}
                  </Link>
                </li>
              ))}
            </ul>
          </nav>
          <Preferences />
          {me && (
            <span className="whoami" data-testid="whoami">
              <span className="whoami-name">{me.name}</span>{' '}
              <span className={`badge badge-role-${me.role}`}>{me.role}</span>
            </span>
          )}
          <button type="button" className="link-button" onClick={signOut} disabled={signingOut}>
            Sign out
          </button>
        </header>
        <main id="main" ref={mainRef} tabIndex={-1}>
          <Route location={location} />
        </main>
      </div>
    </AccessProvider>
  );
}

function Route({ location }: { location: ReturnType<typeof useLocation> }) {
  const p = location.path.replace(/\/+$/, '');
  const alert = matchPath('/ui/alerts/:id', p);
  const rule = matchPath('/ui/rules/:id', p);
  const incident = matchPath('/ui/incidents/:id', p);
  if (p === '/ui/search') return <SearchView location={location} />;
  if (p === '/ui/alerts') return <AlertsView location={location} />;
  if (alert) return <AlertsView location={location} id={alert.id} />;
  if (p === '/ui/rules') return <RulesView />;
  if (rule) return <RulesView key={rule.id} id={rule.id} />;
  if (p === '/ui/incidents') return <IncidentsView location={location} />;
  if (incident) return <IncidentsView location={location} id={incident.id} />;
  if (p === '/ui/cluster') return <ClusterView />;
  if (p === '/ui/users') return <UsersView />;
  if (p === '' || p === '/ui') return null;
  return (
    <section className="view">
      <h1>Page not found</h1>
      <p>
        The console has no page at <code>{location.path}</code>. Go to <Link href="/ui/search">Search</Link>.
      </p>
    </section>
  );
}

const THEMES: { value: Theme; label: string }[] = [
  { value: 'system', label: 'System' },
  { value: 'light', label: 'Light' },
  { value: 'dark', label: 'Dark' },
];

function Preferences() {
  const s = useSettings();
  return (
    <div className="prefs">
      <label className="inline-check">
        <input type="checkbox" checked={s.utc} onChange={(e) => s.setUtc(e.target.checked)} />
        UTC
      </label>
      <label className="inline-label">
        Theme
        <select value={s.theme} onChange={(e) => s.setTheme(e.target.value as Theme)}>
          {THEMES.map((t) => (
            <option key={t.value} value={t.value}>
              {t.label}
            </option>
          ))}
        </select>
      </label>
    </div>
  );
}
