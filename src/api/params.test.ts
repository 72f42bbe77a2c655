import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import type { AlertStore } from '../detect/alerts/index.ts';
import { InputError } from '../lib/errors.ts';
import { silentLogger } from '../lib/logger.ts';
import type { EventStore } from '../store/index.ts';
import { httpConfigSchema } from './config.ts';
import { parseIntParam } from './params.ts';
import { alertRoutes } from './routes/alerts.ts';
import { searchRoutes } from './routes/search.ts';
import { type ApiServer, createApiServer } from './server.ts';

test('an integer parameter is read as decimal digits only', () => {
  const cases: [string, number | 'refused'][] = [
    ['0', 0],
    ['7', 7],
    ['007', 7],
    ['1000', 1000],
    ['1e3', 'refused'],
    ['0x10', 'refused'],
    ['0b1', 'refused'],
    ['0o7', 'refused'],
    ['1_000', 'refused'],
    ['+5', 'refused'],
    [' 5', 'refused'],
    ['5 ', 'refused'],
    ['', 'refused'],
    ['5.0', 'refused'],
    ['Infinity', 'refused'],
    ['-1', 'refused'],
    ['1001', 'refused'],
    ['99999999999999999999', 'refused'],
  ];
  for (const [raw, want] of cases) {
    if (want === 'refused') {
      assert.throws(
        () => parseIntParam(raw, 'limit', 0, 1000),
        (err: unknown) => err instanceof InputError && err.code === 'bad_limit' && err.status === 400,
        JSON.stringify(raw),
      );
    } else {
      assert.equal(parseIntParam(raw, 'limit', 0, 1000), want, JSON.stringify(raw));
    }
  }
});

let api: ApiServer;
let base = '';
before(async () => {
  // A store with no events; a search runs in a scope of it (the search admission of EventStore.search).
  const scope = { query: async () => [] };
  const store = { ...scope, search: (_user: string, fn: (s: typeof scope) => unknown) => fn(scope) };
  const alerts = { list: async () => [] } as unknown as AlertStore;
  const metrics = new Registry();
  api = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0' }), {
    auth: { authenticate: () => ({ name: 'viewer', role: 'viewer', tenants: ['default'] }) },
    metrics,
    logger: silentLogger,
    routes: [
      searchRoutes({ store: store as unknown as EventStore, metrics, maxLimit: 10000 }),
      alertRoutes({ alerts }),
    ],
  });
  await api.start();
  base = `http://127.0.0.1:${api.address().port}`;
});
after(() => api.stop(Date.now() + 1000));

test('limit=1e3 and limit=0x10 answer 400 bad_limit on search and alerts; limit=16 answers 200', async () => {
  for (const path of ['/api/v1/search?q=*&limit=', '/api/v1/alerts?limit=']) {
    for (const limit of ['1e3', '0x10', '', '%2016']) {
      const res = await fetch(`${base}${path}${limit}`, { headers: { authorization: 'Bearer t' } });
      assert.equal(res.status, 400, `${path}${limit}`);
      const body = await res.json();
      assert.equal(body.error.code, 'bad_limit', `${path}${limit}`);
      assert.match(body.error.message, /decimal integer/);
    }
    const ok = await fetch(`${base}${path}16`, { headers: { authorization: 'Bearer t' } });
    assert.equal(ok.status, 200, `${path}16`);
  }
});
