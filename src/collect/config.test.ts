import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ConfigError } from '../config/load.ts';
import { collectConfigSchema } from './config.ts';
import { loadCollectConfig } from './load.ts';

const root = mkdtempSync(join(tmpdir(), 'vigil-collect-config-'));
after(() => rmSync(root, { recursive: true, force: true }));

const TOKEN = 'vgk_0123456789abcdef_secret';

const write = (name: string, text: string) => {
  const file = join(root, name);
  writeFileSync(file, text);
  return file;
};

test('a file with only the endpoints gets every default, with units in the names', () => {
  const c = loadCollectConfig(
    write('min.yml', `forward:\n  endpoints:\n    - { url: "http://site-a:8080", token: ${TOKEN} }\n`),
  );
  assert.equal(c.queue.max_bytes, 1024 * 1024 * 1024);
  assert.equal(c.queue.max_age_seconds, 7 * 86400);
  assert.equal(c.queue.fsync, true);
  assert.equal(c.forward.batch_max_events, 1000);
  assert.equal(c.forward.probe_interval_ms, 5000);
  assert.equal(c.http.addr, '127.0.0.1:8090');
  assert.equal(c.syslog.udp_port, 5514);
  assert.equal(c.metrics.addr, undefined);
  assert.ok(Object.isFrozen(c));
});

test('every problem is reported at once, each naming its key; unknown keys are refused at every level', () => {
  const file = write(
    'bad.yml',
    [
      'colour: blue',
      'queue: { max_bytes: 10, max_age_hours: 3 }',
      'syslog: { udp_port: 70000 }',
      'http: { tls_cert_file: /x.crt }',
      'forward:',
      '  retry_initial_ms: 5000',
      '  retry_max_ms: 100',
      '  endpoints:',
      `    - { url: "http://user:pw@site-a:8080", token: ${TOKEN} }`,
      `    - { url: "ftp://site-b", token: ${TOKEN}, token_file: /t }`,
      '    - { url: "http://site-c:8080", token: short }',
    ].join('\n'),
  );
  let err: unknown;
  try {
    loadCollectConfig(file);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ConfigError);
  const text = err.problems.join('\n');
  for (const expected of [
    /^\(root\): .*colour/m,
    /^queue: .*max_age_hours/m,
    /^queue\.max_bytes: /m,
    /^syslog\.udp_port: /m,
    /^http\.tls_cert_file: /m,
    /^forward\.endpoints\.0\.url: no credentials in the URL/m,
    /^forward\.endpoints\.1\.url: expected an http/m,
    /^forward\.endpoints\.1\.token: give exactly one of token and token_file/m,
    /^forward\.endpoints\.2\.token: /m,
  ]) {
    assert.match(text, expected);
  }
  assert.doesNotMatch(text, /pw@/, 'no credentials in the messages');
});

test('the endpoints are required, one at least, sixteen at most', () => {
  assert.equal(collectConfigSchema.safeParse({}).success, false);
  assert.equal(collectConfigSchema.safeParse({ forward: { endpoints: [] } }).success, false);
  const many = Array.from({ length: 17 }, (_, i) => ({ url: `http://s${i}:8080`, token: TOKEN }));
  assert.equal(collectConfigSchema.safeParse({ forward: { endpoints: many } }).success, false);
  assert.equal(collectConfigSchema.safeParse({ forward: { endpoints: many.slice(0, 16) } }).success, true);
});
