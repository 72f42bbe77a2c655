import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { httpConfigSchema } from '../config.ts';
import { createApiServer } from '../server.ts';
import { healthRoutes } from './health.ts';

test('health and metrics polls are answered without a request line at info level; other routes keep theirs', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const metrics = new Registry();
  const api = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0', metrics_auth: false }), {
    auth: { authenticate: () => ({ name: 'analyst', role: 'analyst', tenants: ['default'] }) },
    metrics,
    logger: pino({ level: 'info' }, sink),
    routes: [
      healthRoutes({ components: () => [], metrics }),
      (app) => {
        app.get('/other', async () => ({ ok: true }));
      },
    ],
  });
  await api.start();
  try {
    const base = `http://127.0.0.1:${api.address().port}`;
    for (const path of ['/health/live', '/health/ready', '/metrics']) {
      assert.equal((await fetch(`${base}${path}`)).status, 200, path);
    }
    assert.equal((await fetch(`${base}/other`, { headers: { authorization: 'Bearer x' } })).status, 200);
    const urls = lines.map((l) => JSON.parse(l) as { req?: { url?: string } }).map((l) => l.req?.url);
    for (const path of ['/health/live', '/health/ready', '/metrics']) assert.ok(!urls.includes(path), `${path} logged`);
    assert.ok(urls.includes('/other'), 'an ordinary request is still logged');
  } finally {
    await api.stop(Date.now() + 1000);
  }
});
