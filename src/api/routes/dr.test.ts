import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../../lib/logger.ts';
import type { ActivationPlan, Site } from '../../site/index.ts';
import type { Principal } from '../../users/index.ts';
import { httpConfigSchema } from '../config.ts';
import { createApiServer } from '../server.ts';
import { drRoutes } from './dr.ts';

// A site's role decides which site detects and alerts for every tenant: a tenant's admin must not read or
// change it; the global admin (the admin token) does.
const PRINCIPALS: Record<string, Principal> = {
  'tenant-admin': { name: 'acme-admin', role: 'admin', tenants: ['acme'] },
  'global-admin': { name: 'admin-token', role: 'admin', tenants: ['default'], global: true },
};

test('dr routes: 403 to a tenant admin; activate without confirm is a dry run; demote needs confirm', async () => {
  const calls: string[] = [];
  const peer = { site: 'b', reachable: false, lag_events: 0, lag_seconds: 0, last_received: null };
  const site = {
    siteName: 'a',
    peer: 'b',
    status: async () => ({ site: 'a', role: 'standby', epoch: 1, peer }),
    activate: async ({ confirm }: { confirm: boolean }): Promise<ActivationPlan> => {
      calls.push(`activate:${confirm}`);
      return {
        site: 'a',
        dry_run: !confirm,
        changed: confirm,
        role_before: 'standby',
        role_after: 'active',
        epoch_before: 1,
        epoch_after: 2,
        peer,
        data_at_risk: { lag_events: 0, lag_seconds: 0, last_received: null },
      };
    },
    demote: async () => {
      calls.push('demote');
      return { site: 'a', role: 'standby', epoch: 2, peer_epoch: 1, changed_at: '' };
    },
  } as unknown as Site;
  const api = createApiServer(httpConfigSchema.parse({ addr: '127.0.0.1:0' }), {
    auth: { authenticate: (header) => PRINCIPALS[String(header).replace('Bearer ', '')] },
    metrics: new Registry(),
    logger: silentLogger,
    routes: [drRoutes({ site })],
  });
  await api.start();
  try {
    const base = `http://127.0.0.1:${api.address().port}/admin/dr`;
    const as = (who: string, method: string, path: string, body?: unknown) =>
      fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${who}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    for (const [method, path] of [
      ['GET', '/status'],
      ['POST', '/activate'],
      ['POST', '/demote'],
    ]) {
      const refused = await as('tenant-admin', method, path, method === 'POST' ? { confirm: true } : undefined);
      assert.equal(refused.status, 403, `${method} ${path}`);
      assert.match((await refused.json()).error.message, /global admin/);
    }
    assert.deepEqual(calls, []);
    assert.equal((await (await as('global-admin', 'GET', '/status')).json()).site, 'a');
    const dry = await as('global-admin', 'POST', '/activate');
    assert.equal((await dry.json()).dry_run, true);
    const notConfirmed = await as('global-admin', 'POST', '/activate', { confirm: 'yes' });
    assert.equal((await notConfirmed.json()).dry_run, true, 'only a JSON true confirms');
    assert.equal((await (await as('global-admin', 'POST', '/activate', { confirm: true })).json()).changed, true);
    const demoteDry = await as('global-admin', 'POST', '/demote');
    assert.equal(demoteDry.status, 400);
    assert.equal((await demoteDry.json()).error.code, 'dr_not_confirmed');
    assert.equal((await as('global-admin', 'POST', '/demote', { confirm: true })).status, 200);
    assert.deepEqual(calls, ['activate:false', 'activate:false', 'activate:true', 'demote']);
  } finally {
    await api.stop(Date.now() + 1000);
  }
});
