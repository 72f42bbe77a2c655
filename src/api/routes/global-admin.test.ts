import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import type { Backups } from '../../backup/index.ts';
import { silentLogger } from '../../lib/logger.ts';
import type { Principal } from '../../users/index.ts';
import { httpConfigSchema } from '../config.ts';
import { createApiServer } from '../server.ts';
import { backupRoutes } from './backups.ts';

// Maintenance and backups act for every tenant (a backup holds every tenant's events and password hashes):
// a tenant's admin must not reach them; the global admin (the admin token) does.
const PRINCIPALS: Record<string, Principal> = {
  'tenant-admin': { name: 'acme-admin', role: 'admin', tenants: ['acme'] },
  'global-admin': { name: 'admin-token', role: 'admin', tenants: ['default'], global: true },
};

test('backups answer 403 to a tenant admin and serve the global admin', async () => {
  let created = 0;
  const backups = {
    name: 'backup',
    start: async () => {},
    stop: async () => {},
    health: () => ({ ok: true }),
    create: async () => {
      created++;
      return { id: 'x' };
    },
    list: () => [],
  } as unknown as Backups;
  const api = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0' }), {
    auth: { authenticate: (header) => PRINCIPALS[String(header).replace('Bearer ', '')] },
    metrics: new Registry(),
    logger: silentLogger,
    routes: [backupRoutes({ backups })],
  });
  await api.start();
  try {
    const base = `http://127.0.0.1:${api.address().port}/admin/backups`;
    const as = (who: string, method = 'GET') => fetch(base, { method, headers: { authorization: `Bearer ${who}` } });
    for (const method of ['GET', 'POST']) {
      const refused = await as('tenant-admin', method);
      assert.equal(refused.status, 403, method);
      assert.match((await refused.json()).error.message, /global admin/);
    }
    assert.equal(created, 0);
    assert.equal((await as('global-admin')).status, 200);
  } finally {
    await api.stop(Date.now() + 1000);
  }
});
