import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../lib/logger.ts';
import { httpConfigSchema } from './config.ts';
import { searchRoutes } from './routes/search.ts';
import { type ApiServer, createApiServer } from './server.ts';

// Found by test/integration/api.fuzz.test.ts: `GET /api/v1/incidents?status=open&status=closed` answered 500
// (the route called `split` on what the query parser makes an array). Every route reads its query parameters
// as strings, so the server refuses a repeated one before any route runs.
describe('query parameters', () => {
  let api: ApiServer;
  let url = '';
  before(async () => {
    api = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0' }), {
      auth: { authenticate: () => ({ name: 'analyst', role: 'analyst', tenants: ['default'] }) },
      metrics: new Registry(),
      logger: silentLogger,
      routes: [
        (app) => {
          app.get<{ Querystring: Record<string, string | undefined> }>('/list', async (req) => ({
            status: req.query.status?.split(',') ?? [],
          }));
        },
        searchRoutes({ metrics: new Registry(), maxLimit: 100 }),
      ],
    });
    await api.start();
    url = `http://127.0.0.1:${api.address().port}`;
  });
  after(async () => {
    await api?.stop(Date.now() + 1000);
  });

  for (const [qs, status, code] of [
    ['status=open,closed', 200, undefined],
    ['status=open&status=closed', 400, 'repeated_parameter'],
    ['other=1&other=2&status=open', 400, 'repeated_parameter'],
    ['status=open&status=closed&status=x', 400, 'repeated_parameter'],
  ] as const) {
    test(`/list?${qs} answers ${status}${code ? ` ${code}` : ''}`, async () => {
      const res = await fetch(`${url}/list?${qs}`, { headers: { authorization: 'Bearer x' } });
      const body = (await res.json()) as { error?: { code: string; message: string } };
      assert.equal(res.status, status, JSON.stringify(body));
      if (code) {
        assert.equal(body.error?.code, code);
        assert.match(body.error?.message ?? '', /is given more than once/);
      }
    });
  }

  // The search route keeps no check of its own: the server's hook refuses the repeat before it runs.
  test('/api/v1/search?q=*&q=x answers 400 repeated_parameter', async () => {
    const res = await fetch(`${url}/api/v1/search?q=*&q=x`, { headers: { authorization: 'Bearer x' } });
    const body = (await res.json()) as { error?: { code: string; details?: { parameter?: string } } };
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal(body.error?.code, 'repeated_parameter');
    assert.equal(body.error?.details?.parameter, 'q');
  });
});
