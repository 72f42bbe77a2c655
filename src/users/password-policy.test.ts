import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InputError } from '../lib/errors.ts';
import { checkPasswordPolicy, type PasswordRule, passwordWeakness } from './password-policy.ts';

const cases: [string, string, PasswordRule | undefined][] = [
  ['a passphrase passes', 'correct horse battery staple', undefined],
  ['a random string passes', 'tQ8#vL2m!pX9wz', undefined],
  ['a long mixed password passes', 'Blue-Kettle-Orbit-57', undefined],
  ['shorter than the minimum', 'tQ8#vL2m!p', 'too_short'],
  ['longer than 1024', `${'tQ8#vL2m!pX9wz'.repeat(80)}`, 'too_long'],
  ['a common number with symbols after it', '4815162342!!', 'common'],
  ['a common password with digits after it', 'basketball12345', 'common'],
  ['a common password in capitals with symbols around', '!!Sunshine2024!!', 'common'],
  ['a common password with symbol swaps', 'P@ssw0rd2024!', 'common'],
  ['a common password with digits before it', '2024iloveyou', 'common'],
  ['one character', 'aaaaaaaaaaaaaa', 'repetitive'],
  ['mostly one character', 'aaaaaaaaaaab1', 'repetitive'],
  ['a short piece repeated', 'xk7xk7xk7xk7', 'repetitive'],
  ['three characters only', 'abcabbacbcab', 'repetitive'],
  ['an alphabet run', 'abcdefghijklm', 'sequence'],
  ['a digit run across the wrap', '123456789012', 'sequence'],
  ['a backwards keyboard row', 'poiuytrewqlkj', 'sequence'],
  ['a keyboard row', 'qwertyuiopasd', 'sequence'],
  ['an even step sequence', 'acegikmoqsuwy', 'sequence'],
  ['the username inside', 'xx-mallory-2024-zz', 'contains_username'],
  ['the username backwards', 'Yrollam-Blue-Kettle', 'contains_username'],
  ['the username in other case', 'MALLORY forever and ever', 'contains_username'],
];

test('the password policy refuses what guessing tries first, and names the rule', () => {
  for (const [what, password, rule] of cases) {
    assert.equal(passwordWeakness(password, { minLength: 12, username: 'mallory' })?.rule, rule, what);
  }
});

test('a refusal is a 400 naming the rule and never the password, and is counted', () => {
  const counted: string[] = [];
  const password = 'P@ssw0rd2024!';
  assert.throws(
    () => checkPasswordPolicy(password, { minLength: 12, username: 'ana', refused: (r) => counted.push(r) }),
    (err: unknown) => {
      assert.ok(err instanceof InputError);
      assert.equal(err.status, 400);
      assert.equal(err.code, 'weak_password');
      assert.deepEqual(err.details, { rule: 'common' });
      assert.match(err.message, /commonest/);
      assert.ok(!err.message.includes(password));
      return true;
    },
  );
  assert.deepEqual(counted, ['common']);
  assert.throws(() => checkPasswordPolicy(42, { minLength: 12 }), { code: 'bad_password' });
  assert.doesNotThrow(() => checkPasswordPolicy('correct horse battery staple', { minLength: 12, username: 'ana' }));
});

test('a huge password is refused as too long before it is normalised or split', () => {
  // 16 MiB took ~400 ms (and ~128 MB of one-character strings) when the length was checked after [...NFKC].
  const password = 'x'.repeat(16 * 1024 * 1024);
  const started = performance.now();
  assert.equal(passwordWeakness(password, { minLength: 12 })?.rule, 'too_long');
  const ms = performance.now() - started;
  assert.ok(ms < 50, `took ${ms.toFixed(1)} ms`);
});
