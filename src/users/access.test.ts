import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  isCollectorKey,
  keyRole,
  maxScope,
  requireRole,
  requireTenant,
  type Role,
  type Scope,
  type UserPrincipal,
} from './access.ts';
import { hashPassword, verifyPassword } from './password.ts';

test('an API key acts with the lower of its user role and its highest scope', () => {
  const cases: [Role, Scope[], Role][] = [
    ['admin', ['read'], 'viewer'],
    ['admin', ['read', 'write'], 'analyst'],
    ['admin', ['admin'], 'admin'],
    ['analyst', ['admin'], 'analyst'],
    ['viewer', ['write'], 'viewer'],
    ['analyst', [], 'viewer'],
  ];
  for (const [role, scopes, want] of cases) assert.equal(keyRole(role, scopes), want, `${role} ${scopes}`);
  assert.deepEqual((['viewer', 'analyst', 'admin'] as const).map(maxScope), ['read', 'write', 'admin']);
});

test('a collector key has no role of its own (viewer, below every route that writes) and is told apart', () => {
  assert.equal(keyRole('admin', ['collector']), 'viewer');
  const key = (scopes: Scope[]): UserPrincipal => ({
    name: 'c',
    role: keyRole('analyst', scopes),
    tenants: ['t'],
    via: 'api_key',
    scopes,
  });
  assert.equal(isCollectorKey(key(['collector'])), true);
  assert.equal(isCollectorKey(key(['write'])), false);
  assert.equal(
    isCollectorKey({ name: 'admin', role: 'admin', tenants: ['t'], via: 'admin_token', global: true } as UserPrincipal),
    false,
  );
  assert.equal(
    isCollectorKey({ name: 'x', role: 'admin', tenants: ['t'] }),
    false,
    'a principal of another authenticator',
  );
});

test('requireRole lets a role at or above the minimum through and refuses the others with 403', () => {
  const roles: Role[] = ['viewer', 'analyst', 'admin'];
  for (const [i, role] of roles.entries()) {
    for (const [j, min] of roles.entries()) {
      const p = { name: 'p', role, tenants: [] };
      if (i >= j) assert.doesNotThrow(() => requireRole(p, min));
      else
        assert.throws(
          () => requireRole(p, min),
          (err: any) => err.status === 403 && err.code === 'forbidden',
        );
    }
  }
});

test('passwords are hashed with scrypt and a per-hash salt, and verified', async () => {
  const a = await hashPassword('open sesame 123', 12);
  const b = await hashPassword('open sesame 123', 12);
  assert.notEqual(a, b, 'a fresh salt each time');
  assert.match(a, /^scrypt\$12\$8\$1\$[\w-]+\$[\w-]+$/);
  assert.equal(await verifyPassword('open sesame 123', a), true);
  assert.equal(await verifyPassword('open sesame 124', a), false);
  assert.equal(await verifyPassword('x', 'not-a-hash'), false);
  const strong = await hashPassword('pw', 15);
  assert.equal(await verifyPassword('pw', strong), true, 'N = 2^15 fits the memory limit');
});

test('requireTenant lets a principal act in its own tenants, the global admin in any, and refuses the rest', () => {
  const ana = { name: 'ana', role: 'admin' as const, tenants: ['a'] };
  const root = { name: 'admin', role: 'admin' as const, tenants: ['a'], global: true };
  assert.doesNotThrow(() => requireTenant(ana, 'a'));
  assert.throws(() => requireTenant(ana, 'b'), { code: 'forbidden_tenant', status: 403 });
  assert.doesNotThrow(() => requireTenant(root, 'b'));
  // Only an admin is global: a global flag on a lower role gives no tenant.
  assert.throws(() => requireTenant({ ...root, role: 'analyst' }, 'b'), { code: 'forbidden_tenant' });
});
