import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clusterConfigSchema } from '../cluster/config.ts';
import { initialRole } from './index.ts';

test('cluster.site and cluster.peer_site: set together, different; the first name starts active by default', () => {
  const parse = (v: object) => clusterConfigSchema.safeParse(v);
  assert.equal(parse({ site: 'a' }).success, false, 'site without peer_site');
  assert.equal(parse({ peer_site: 'b' }).success, false, 'peer_site without site');
  assert.equal(parse({ site: 'a', peer_site: 'a' }).success, false, 'a site is not its own peer');
  assert.equal(parse({ site: 'a.b', peer_site: 'c' }).success, false, 'a site name is a JetStream domain token');
  const a = clusterConfigSchema.parse({ site: 'a', peer_site: 'b' });
  const b = clusterConfigSchema.parse({ site: 'b', peer_site: 'a' });
  assert.equal(initialRole(a), 'active');
  assert.equal(initialRole(b), 'standby');
  assert.equal(initialRole({ ...b, site_role_at_start: 'active' }), 'active');
  assert.equal(initialRole({ ...a, site_role_at_start: 'standby' }), 'standby');
});
