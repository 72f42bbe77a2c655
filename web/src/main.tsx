/** Entry of the console bundle: wires the API client to the session and renders the app. */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App, UNAUTHORIZED_EVENT } from './app.tsx';
import { storedToken } from './auth/session.ts';
import { setApiSession } from './lib/api.ts';
import { applyTheme, loadSettings, SettingsProvider } from './lib/settings.tsx';
import './styles.css';

// Set before the first render: views fetch in effects, which run before the app's own effects.
setApiSession({
  token: storedToken,
  onUnauthorized: () => window.dispatchEvent(new Event(UNAUTHORIZED_EVENT)),
});

// The chosen theme applies before the first paint, so a dark choice does not flash light.
applyTheme(loadSettings().theme);

const root = document.getElementById('root');
if (!root) throw new Error('index.html has no #root element');
createRoot(root).render(
  <StrictMode>
    <SettingsProvider>
      <App />
    </SettingsProvider>
  </StrictMode>,
);
