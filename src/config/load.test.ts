import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { listSettings } from './keys.ts';
import { ConfigError, loadConfig } from './load.ts';

test('defaults give the embedded single node of the README', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.http.addr, '127.0.0.1:8080');
  assert.equal(c.syslog.udp_port, 5514);
  assert.equal(c.syslog.tcp_port, 5514);
  assert.equal(c.data_dir, './data');
  assert.ok(Object.isFrozen(c.store));
});

test('the four named variables and VIGIL_<SECTION>__<KEY> override the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-config-'));
  const file = join(dir, 'vigil.yml');
  writeFileSync(file, 'store:\n  retention_days: 7\nhttp:\n  addr: 0.0.0.0:9000\n');
  const c = loadConfig({
    file,
    env: {
      VIGIL_HTTP_ADDR: '127.0.0.1:9999',
      VIGIL_SYSLOG_PORT: '6000',
      VIGIL_DATA_DIR: '/tmp/x',
      VIGIL_ADMIN_TOKEN: 'a-long-enough-admin-token',
      VIGIL_BUS__MAX_PENDING_EVENTS: '5000',
    },
  });
  assert.equal(c.store.retention_days, 7);
  assert.equal(c.http.addr, '127.0.0.1:9999');
  assert.equal(c.syslog.tcp_port, 6000);
  assert.equal(c.data_dir, '/tmp/x');
  assert.equal(c.auth.admin_token, 'a-long-enough-admin-token');
  assert.equal(c.bus.max_pending_events, 5000);
});

test('every problem is reported at once, each naming its key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-config-'));
  const file = join(dir, 'bad.yml');
  writeFileSync(file, 'store:\n  retention_days: "soon"\n  colour: blue\nhttp:\n  addr: nowhere\n');
  try {
    loadConfig({ file, env: { VIGIL_NOPE: '1' } });
    assert.fail('expected a ConfigError');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    const text = err.problems.join('\n');
    assert.match(text, /store\.retention_days/);
    assert.match(text, /store: .*colour/);
    assert.match(text, /http\.addr/);
    assert.match(text, /VIGIL_NOPE/);
  }
});

test('the README configuration table lists every setting', () => {
  const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
  const missing = listSettings()
    .map((s) => s.key)
    .filter((k) => !readme.includes(`\`${k}\``));
  assert.deepEqual(missing, [], 'settings missing from the README table');
});

test('a YAML error quoting a line with a credentialed URL shows the URL redacted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-config-'));
  const file = join(dir, 'vigil.yml');
  writeFileSync(file, 'notify:\n  destinations:\n    - name: a\n      url: http://u:hunter2@h/x?token=abc: [\n');
  assert.throws(
    () => loadConfig({ file, env: {} }),
    (err: Error) => {
      assert.match(err.message, /http:\/\/redacted@h\/x\?token=redacted/);
      assert.ok(!err.message.includes('hunter2') && !err.message.includes('abc'), err.message);
      return true;
    },
  );
});
