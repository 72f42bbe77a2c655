import assert from 'node:assert/strict';
import { test } from 'node:test';
import { shardFilter, shardSubject, streamNames } from './names.ts';

test('record streams are named after the event stream, with subjects outside its prefix', () => {
  const cases = [
    {
      config: { stream: 'VIGIL_EVENTS', subject_prefix: 'vigil.events' },
      alerts: { name: 'VIGIL_ALERTS', subject: 'vigil.alerts' },
      matches: { name: 'VIGIL_MATCHES', subject: 'vigil.matches' },
    },
    {
      config: { stream: 'T1_EVENTS', subject_prefix: 't1' },
      alerts: { name: 'T1_ALERTS', subject: 't1_alerts' },
      matches: { name: 'T1_MATCHES', subject: 't1_matches' },
    },
    {
      config: { stream: 'LOG', subject_prefix: 'site.a.events' },
      alerts: { name: 'LOG_ALERTS', subject: 'site.a.alerts' },
      matches: { name: 'LOG_MATCHES', subject: 'site.a.matches' },
    },
  ];
  for (const c of cases) {
    const names = streamNames(c.config);
    assert.deepEqual(names.alerts, c.alerts, JSON.stringify(c.config));
    assert.deepEqual(names.matches, c.matches, JSON.stringify(c.config));
    assert.ok(!names.alerts.subject.startsWith(`${c.config.subject_prefix}.`), 'alerts outside the events prefix');
  }
});

test("a site of a two-site deployment gets record subjects of its own, apart from the peer's", () => {
  const a = streamNames({ stream: 'VIGIL_EVENTS', subject_prefix: 'vigil.events' }, 'a');
  const b = streamNames({ stream: 'VIGIL_EVENTS', subject_prefix: 'vigil.events' }, 'b');
  assert.deepEqual(a.alerts, { name: 'VIGIL_ALERTS', subject: 'vigil.alerts.a' });
  assert.deepEqual(b.matches, { name: 'VIGIL_MATCHES', subject: 'vigil.matches.b' });
  assert.deepEqual(a.outputs, { name: 'VIGIL_OUTPUTS', subject: 'vigil.outputs.a' });
});

test('shard subjects and filters: a filter matches its shard only, on one site or two', () => {
  const matches = (filter: string, subject: string) => {
    const f = filter.split('.');
    const s = subject.split('.');
    for (let i = 0; i < f.length; i++) {
      if (f[i] === '>') return s.length > i;
      if (f[i] !== '*' && f[i] !== s[i]) return false;
    }
    return f.length === s.length;
  };
  assert.equal(shardSubject('vigil.events', 1, 0, 'acme'), 'vigil.events.acme');
  assert.equal(shardSubject('vigil.events', 8, 3, 'acme'), 'vigil.events.s3.acme');
  assert.ok(matches(shardFilter('vigil.events', 3, false), 'vigil.events.s3.acme'));
  assert.ok(!matches(shardFilter('vigil.events', 3, false), 'vigil.events.s4.acme'));
  assert.ok(!matches(shardFilter('vigil.events', 3, false), 'vigil.events.acme'));
  // Two sites: the local prefix carries the site; the filter takes both sites' events of the shard.
  assert.equal(shardSubject('vigil.events.a', 8, 3, 't'), 'vigil.events.a.s3.t');
  assert.ok(matches(shardFilter('vigil.events', 3, true), 'vigil.events.a.s3.t'));
  assert.ok(matches(shardFilter('vigil.events', 3, true), 'vigil.events.b.s3.t'));
  assert.ok(!matches(shardFilter('vigil.events', 3, true), 'vigil.events.b.s33.t'));
});
