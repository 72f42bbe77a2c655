/**
 * For component tests: a fake Vigil API on a stubbed fetch. Routes are `METHOD /path` (no query) ->
 * [status, body]; anything else answers 404 "no route", as the server does for an endpoint it lacks.
 */
import { vi } from 'vitest';

/** One request the fake server received. */
export interface FakeCall {
  method: string;
  path: string;
  query: string;
  body?: string;
}

export type FakeRoutes = Record<string, [number, unknown] | ((call: FakeCall) => [number, unknown])>;

/** Stubs fetch with `routes` and answers the list of calls, in order (unstub with vi.unstubAllGlobals). */
export function serve(routes: FakeRoutes): FakeCall[] {
  const calls: FakeCall[] = [];
  vi.stubGlobal(
    'fetch',
    vi.fn(async (url: string, init: RequestInit = {}) => {
      const [path, query = ''] = url.split('?');
      const call = { method: init.method ?? 'GET', path, query, body: init.body as string | undefined };
      calls.push(call);
      const route = routes[`${call.method} ${path}`];
      const [status, body] =
        typeof route === 'function'
          ? route(call)
          : (route ?? [404, { error: { code: 'not_found', message: `no route ${call.method} ${path}` } }]);
      return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
    }),
  );
  return calls;
}
