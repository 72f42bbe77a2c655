/** Loading API data into a view: once, or polled every few seconds while the page is visible. */
import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError, api } from './api.ts';

export interface ApiState<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** When the data last arrived (epoch ms). */
  updated: number | undefined;
  reload(): void;
  /** Replaces the data in place (after a change the server confirmed). */
  setData(d: T): void;
}

/**
 * GETs `path` (null: nothing to load) and again when it changes; with `pollMs`, again every `pollMs`
 * while the tab is visible. A failed poll keeps the last data and reports the error beside it. A 403
 * stops the polling: a refusal for the role does not change by asking again (reload() still asks).
 */
export function useApi<T>(path: string | null, opts: { pollMs?: number } = {}): ApiState<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(path !== null);
  const [updated, setUpdated] = useState<number>();
  const [tick, setTick] = useState(0);
  const pathRef = useRef(path);
  const forbidden = useRef(false);

  // tick asks for a reload of the same path.
  useEffect(() => {
    if (path === null) {
      setLoading(false);
      return;
    }
    if (pathRef.current !== path) {
      pathRef.current = path;
      setData(undefined);
    }
    const abort = new AbortController();
    setLoading(true);
    api<T>(path, { signal: abort.signal })
      .then((d) => {
        forbidden.current = false;
        setData(d);
        setError(null);
        setUpdated(Date.now());
      })
      .catch((err) => {
        if (abort.signal.aborted) return;
        forbidden.current = err instanceof ApiError && err.status === 403;
        setError(err);
      })
      .finally(() => {
        if (!abort.signal.aborted) setLoading(false);
      });
    return () => abort.abort();
  }, [path, tick]);

  useEffect(() => {
    if (!opts.pollMs || path === null) return;
    const timer = setInterval(() => {
      if (document.visibilityState !== 'hidden' && !forbidden.current) setTick((n) => n + 1);
    }, opts.pollMs);
    return () => clearInterval(timer);
  }, [opts.pollMs, path]);

  const reload = useCallback(() => setTick((n) => n + 1), []);
  return { data, error, loading, updated, reload, setData };
}
