/** Per-browser preferences: colour theme and whether times show in UTC, kept in localStorage. */
import { createContext, type ReactNode, useCallback, useContext, useEffect, useMemo, useState } from 'react';

export type Theme = 'system' | 'light' | 'dark';

export interface Settings {
  theme: Theme;
  utc: boolean;
  setTheme(t: Theme): void;
  setUtc(v: boolean): void;
}

const KEY = 'vigil.settings';

/** The stored preferences (defaults when none or unreadable). */
export function loadSettings(): { theme: Theme; utc: boolean } {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) ?? '{}') as { theme?: Theme; utc?: boolean };
    return { theme: v.theme === 'light' || v.theme === 'dark' ? v.theme : 'system', utc: v.utc === true };
  } catch {
    return { theme: 'system', utc: false };
  }
}

/** Applies a theme to the document; `system` follows prefers-color-scheme through CSS. */
export function applyTheme(theme: Theme): void {
  if (theme === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
}

const SettingsContext = createContext<Settings | null>(null);

export function SettingsProvider({ children }: { children: ReactNode }) {
  const [state, setState] = useState(loadSettings);
  useEffect(() => {
    applyTheme(state.theme);
    try {
      localStorage.setItem(KEY, JSON.stringify(state));
    } catch {
      // Storage may be off (private mode); the preference then lasts for this page only.
    }
  }, [state]);
  const setTheme = useCallback((theme: Theme) => setState((s) => ({ ...s, theme })), []);
  const setUtc = useCallback((utc: boolean) => setState((s) => ({ ...s, utc })), []);
  const value = useMemo(() => ({ ...state, setTheme, setUtc }), [state, setTheme, setUtc]);
  return <SettingsContext.Provider value={value}>{children}</SettingsContext.Provider>;
}

/** The preferences; outside a provider (component tests) the defaults. */
export function useSettings(): Settings {
  return useContext(SettingsContext) ?? { theme: 'system', utc: false, setTheme: () => {}, setUtc: () => {} };
}
