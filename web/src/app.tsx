/** The console shell: sign-in gate, navigation, preferences, and the view for the current URL. */
import { useEffect, useRef, useState } from 'react';
import { LoginView, Shield } from './auth/login-view.tsx';
import { storedToken, storeToken } from './auth/session.ts';
import { Link, matchPath, navigate, useLocation } from './lib/router.tsx';
import { type Theme, useSettings } from './lib/settings.tsx';
import { AlertsView } from './views/alerts-view.tsx';
import { ClusterView } from './views/cluster-view.tsx';
import { IncidentsView } from './views/incidents-view.tsx';
import { RulesView } from './views/rules-view.tsx';
import { SearchView } from './views/search-view.tsx';

/** Raised by the API client when the server refuses the token. */
export const UNAUTHORIZED_EVENT = 'vigil:unauthorized';

const NAV = [
  { path: '/ui/search', label: 'Search' },
  { path: '/ui/alerts', label: 'Alerts' },
  { path: '/ui/incidents', label: 'Incidents' },
  { path: '/ui/rules', label: 'Rules' },
  { path: '/ui/cluster', label: 'Cluster' },
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

  const signOut = () => {
    storeToken(null);
    setToken(null);
    setNotice('You are signed out.');
  };

  return (
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
            {NAV.map((n) => (
              <li key={n.path}>
                <Link href={n.path} aria-current={location.path.startsWith(n.path) ? 'page' : undefined}>
                  {n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <Preferences />
        <button type="button" className="link-button" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main id="main" ref={mainRef} tabIndex={-1}>
        <Route location={location} />
      </main>
    </div>
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
