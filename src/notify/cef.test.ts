import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Alert } from '../detect/alerts/index.ts';
import { cefHeader, cefSeverity, cefValue, formatCef, formatSyslog5424 } from './cef.ts';
import { notifyConfigSchema } from './config.ts';
import { deliveryId, destinationMatches } from './service.ts';

const alert: Alert = {
  id: 'a1',
  timestamp: 1_700_000_000_000,
  created: 1_700_000_000_000,
  tenant: 'default',
  kind: 'rule',
  rule: { id: 'r|1', title: 'Pipe | and back\\slash\nnewline', level: 'high', tags: ['attack.t1110', 'x=y'] },
  host: 'web-1',
  status: 'new',
  matched: {},
  eventIds: ['e1', 'e2'],
  partition: 'p0',
  fencingToken: 0,
};

test('CEF header fields escape backslash and pipe, and turn line breaks into spaces', () => {
  for (const [input, want] of [
    ['plain', 'plain'],
    ['a|b', 'a\\|b'],
    ['a\\b', 'a\\\\b'],
    ['a\\|b', 'a\\\\\\|b'],
    ['line\r\nbreak', 'line break'],
    ['a=b', 'a=b'],
  ]) {
    assert.equal(cefHeader(input), want, input);
  }
});

test('CEF extension values escape backslash, equals and line breaks, and leave pipes alone', () => {
  for (const [input, want] of [
    ['plain', 'plain'],
    ['a=b', 'a\\=b'],
    ['a\\b', 'a\\\\b'],
    ['a|b', 'a|b'],
    ['l1\nl2', 'l1\\nl2'],
    ['l1\r\nl2', 'l1\\nl2'],
    ['l1\rl2', 'l1\\rl2'],
  ]) {
    assert.equal(cefValue(input), want, input);
  }
});

test('a CEF message has the seven header fields, the level as 0-10 severity, and escaped extensions', () => {
  const cef = formatCef(alert, 'd1');
  assert.ok(cef.startsWith('CEF:0|Vigil|Vigil|0.1|r\\|1|Pipe \\| and back\\\\slash newline|8|'), cef);
  assert.match(cef, / cs2=attack.t1110,x\\=y /);
  assert.match(cef, / msg=Pipe \| and back\\\\slash\\nnewline$/);
  assert.match(cef, /^[^\n\r]*$/, 'one line');
  assert.deepEqual(
    ['informational', 'low', 'medium', 'high', 'critical', 'weird'].map(cefSeverity),
    [1, 3, 5, 8, 10, 5],
  );
});

test('the RFC 5424 header carries facility and level as PRI and an ISO timestamp', () => {
  const line = formatSyslog5424('CEF:0|x', { facility: 13, level: 'critical', time: 0 });
  assert.match(line, /^<106>1 1970-01-01T00:00:00\.000Z \S+ vigil \d+ alert - CEF:0\|x$/);
});

test('delivery ids are deterministic per alert and destination', () => {
  assert.equal(deliveryId('a1', 'siem'), deliveryId('a1', 'siem'));
  assert.notEqual(deliveryId('a1', 'siem'), deliveryId('a1', 'pager'));
  assert.match(deliveryId('a1', 'siem'), /^[0-9a-f]{32}$/);
});

test('destinations take alerts by minimum level and tags', () => {
  const cases: [Record<string, unknown>, Partial<Alert['rule']>, boolean][] = [
    [{}, { level: 'informational' }, true],
    [{ min_level: 'high' }, { level: 'medium' }, false],
    [{ min_level: 'high' }, { level: 'critical' }, true],
    [{ tags: ['attack.t1110'] }, { tags: ['ATTACK.T1110'] }, true],
    [{ tags: ['attack.*'] }, { tags: ['attack.t1003'] }, true],
    [{ tags: ['attack.*'] }, { tags: ['cve.2024'] }, false],
    [{ min_level: 'high', tags: ['vip'] }, { level: 'high', tags: [] }, false],
    [{ min_level: 'high', tags: ['vip'], match: 'any' }, { level: 'high', tags: [] }, true],
  ];
  for (const [dest, rule, want] of cases) {
    const d = notifyConfigSchema.parse({
      destinations: [{ name: 'd', type: 'webhook', url: 'http://127.0.0.1:1/', secret: 'x'.repeat(16), ...dest }],
    }).destinations[0];
    assert.equal(
      destinationMatches(d, { ...alert, rule: { ...alert.rule, ...rule } }),
      want,
      JSON.stringify([dest, rule]),
    );
  }
});
