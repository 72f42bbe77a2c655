import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { addressKey, createLoginLimiter, type LoginLimits, LoginRateLimitedError } from './login-limiter.ts';

const LIMITS: LoginLimits = {
  windowMs: 60_000,
  accountAddressMax: 5,
  accountMax: 10,
  addressMax: 20,
  lockoutMs: 60_000,
  lockoutMaxMs: 200_000,
  maxKeys: 1000,
};

function limiter(over: Partial<LoginLimits> = {}) {
  let t = 1_000_000;
  const metrics = new Registry();
  const l = createLoginLimiter({ ...LIMITS, ...over }, { metrics, now: () => t });
  return { l, metrics, advance: (ms: number) => (t += ms) };
}

/** Retry-After seconds of a refused attempt, or 0 when the attempt was counted. */
function refusal(fn: () => unknown): number {
  try {
    fn();
    return 0;
  } catch (err) {
    assert.ok(err instanceof LoginRateLimitedError);
    return err.retryAfterSeconds;
  }
}

test('attempts are counted when they begin, so parallel attempts past the quota are refused before any check', () => {
  const { l } = limiter();
  const begun = [];
  let refused = 0;
  for (let i = 0; i < 40; i++) {
    try {
      begun.push(l.begin('ana', '10.0.0.1'));
    } catch (err) {
      assert.ok(err instanceof LoginRateLimitedError);
      refused++;
    }
  }
  assert.equal(begun.length, 5, 'only the per account+address quota is let through');
  assert.equal(refused, 35);
  for (const a of begun) a.failed();
  const wait = refusal(() => l.begin('ana', '10.0.0.1'));
  assert.ok(wait >= 59 && wait <= 60, `locked for the first lockout, Retry-After ${wait}`);
});

test('guesses from many addresses against one account lock the account, for every address', () => {
  const { l } = limiter();
  let counted = 0;
  for (let i = 0; i < 50; i++) {
    if (refusal(() => l.begin('root', `10.0.${i}.1`).failed()) === 0) counted++;
  }
  assert.equal(counted, 10, 'the per-account quota, whatever the addresses');
  assert.ok(refusal(() => l.begin('ROOT', '192.0.2.99')) > 0, 'a fresh address is refused too, whatever the case');
  assert.equal(
    refusal(() => l.begin('someone-else', '192.0.2.99')),
    0,
    'another account is not',
  );
});

test('one address trying many accounts is locked as an address', () => {
  const { l, metrics } = limiter();
  let counted = 0;
  for (let i = 0; i < 30; i++) if (refusal(() => l.begin(`user${i}`, '10.9.9.9').failed()) === 0) counted++;
  assert.equal(counted, 20);
  assert.ok(refusal(() => l.begin('user99', '10.9.9.9')) > 0);
  assert.equal(
    refusal(() => l.begin('user99', '10.9.9.10')),
    0,
  );
  assert.equal(
    refusal(() => l.begin('user98', '2001:db8:1:2:aaaa::1')),
    0,
  );
  return metrics.getSingleMetricAsString('vigil_auth_login_lockouts_total').then((text) => {
    assert.match(text, /scope="address"} 1/);
  });
});

test('each lockout of a key doubles, up to the cap; a success starts the account again', () => {
  const { l, advance } = limiter({ accountAddressMax: 2 });
  const waits: number[] = [];
  for (let round = 0; round < 4; round++) {
    l.begin('bob', '10.0.0.2').failed();
    l.begin('bob', '10.0.0.2').failed();
    const wait = refusal(() => l.begin('bob', '10.0.0.2'));
    waits.push(wait);
    advance(wait * 1000);
  }
  assert.deepEqual(waits, [60, 120, 200, 200]);
  l.begin('bob', '10.0.0.2').succeeded();
  l.begin('bob', '10.0.0.2').failed();
  l.begin('bob', '10.0.0.2').failed();
  assert.equal(
    refusal(() => l.begin('bob', '10.0.0.2')),
    60,
    'back to the first lockout after a success',
  );
});

test('a locked key refuses even the attempt that would have been right, and forgets its past after a quiet spell', () => {
  const { l, advance } = limiter({ accountAddressMax: 1 });
  l.begin('eve', '10.0.0.3').failed();
  assert.equal(
    refusal(() => l.begin('eve', '10.0.0.3')),
    60,
  );
  advance(60_000);
  l.begin('eve', '10.0.0.3').failed();
  assert.equal(
    refusal(() => l.begin('eve', '10.0.0.3')),
    120,
  );
  advance(120_000 + LIMITS.lockoutMaxMs);
  l.begin('eve', '10.0.0.3').failed();
  assert.equal(
    refusal(() => l.begin('eve', '10.0.0.3')),
    60,
    'quiet for lockoutMaxMs: the backoff starts again',
  );
});

test('an attempt whose check could not be made is given back', () => {
  const { l } = limiter({ accountAddressMax: 2 });
  for (let i = 0; i < 10; i++) l.begin('dan', '10.0.0.4').abandoned();
  assert.equal(
    refusal(() => l.begin('dan', '10.0.0.4')),
    0,
  );
});

test('memory stays bounded under a flood of names, and a locked account outlives the flood', () => {
  const { l } = limiter({ maxKeys: 1000, addressMax: 1_000_000 });
  for (let i = 0; i < 5; i++) l.begin('admin', '10.0.0.5').failed();
  for (let i = 0; i < 20_000; i++) refusal(() => l.begin(`junk${i}`, `10.1.${i >> 8}.${i & 255}`).failed());
  assert.ok(l.size() <= 1000, `tracked ${l.size()}`);
  assert.ok(refusal(() => l.begin('admin', '10.0.0.5')) > 0, 'still locked');
});

test('addresses are counted by IPv4 address, by IPv6 /64, and IPv4-mapped IPv6 as IPv4', () => {
  const cases: [string, string][] = [
    ['10.0.0.1', '10.0.0.1'],
    ['::ffff:10.0.0.1', '10.0.0.1'],
    ['2001:db8:1:2:aaaa::1', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
  ];
  for (const [ip, key] of cases) assert.equal(addressKey(ip), key, ip);
});

test('guesses from elsewhere lock the account but not out an address that logged in to it within a day', () => {
  const { l } = limiter();
  l.begin('ana', '10.0.0.7').succeeded();
  let counted = 0;
  for (let i = 0; i < 50; i++) {
    if (refusal(() => l.begin('ana', `10.9.${i}.1`).failed()) === 0) counted++;
  }
  assert.equal(counted, 10, 'the per-account quota still holds for other addresses');
  assert.ok(refusal(() => l.begin('ana', '192.0.2.99')) > 0, 'a new address is locked out');
  assert.equal(
    refusal(() => l.begin('ana', '10.0.0.7').succeeded()),
    0,
    'the known address logs in',
  );
  assert.ok(refusal(() => l.begin('ana', '192.0.2.99')) > 0, 'and its success does not lift the lock');
  for (let i = 0; i < LIMITS.accountAddressMax; i++) l.begin('ana', '10.0.0.7').failed();
  assert.ok(refusal(() => l.begin('ana', '10.0.0.7')) > 0, 'the known pair keeps its own limit');

  const fresh = limiter();
  fresh.l.begin('bo', '10.0.0.8').succeeded();
  fresh.advance(24 * 3600_000);
  for (let i = 0; i < 10; i++) fresh.l.begin('bo', `10.8.${i}.1`).failed();
  assert.ok(refusal(() => fresh.l.begin('bo', '10.0.0.8')) > 0, 'a day after its last login the pair is a stranger');
});

test('the known pairs are bounded like the keys, least recent forgotten first', () => {
  const { l } = limiter({ maxKeys: 100, addressMax: 1_000_000 });
  l.begin('cy', '10.0.0.9').succeeded();
  for (let i = 0; i < 100; i++) l.begin(`user${i}`, '10.0.0.10').succeeded();
  for (let i = 0; i < 10; i++) l.begin('cy', `10.7.${i}.1`).failed();
  assert.ok(refusal(() => l.begin('cy', '10.0.0.9')) > 0, 'forgotten: held by the account lock again');
});
