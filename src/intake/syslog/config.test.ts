import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Gauge, Registry } from 'prom-client';
import { syslogConfigSchema } from './config.ts';
import { intakeMetrics } from '../metrics.ts';

test('config: an empty section gets the documented defaults', () => {
  assert.deepEqual(syslogConfigSchema.parse({}), {
    enabled: true,
    host: '127.0.0.1',
    udp_port: 5514,
    tcp_port: 5514,
    relp_port: 0,
    relp_tls_port: 0,
    framing: 'auto',
    timezone: 'UTC',
    timezones: {},
    max_future_ms: 300000,
    drain_grace_ms: 5000,
    tls_port: 6514,
    max_line_bytes: 65536,
    max_connections: 1000,
    batch_max_events: 1000,
    batch_max_wait_ms: 50,
    max_pending_events: 20000,
    tenant: 'default',
    idle_timeout_ms: 300000,
  });
});

const invalid: { name: string; input: Record<string, unknown>; path: string }[] = [
  { name: 'an unknown key', input: { port: 514 }, path: '' },
  { name: 'an unknown logsource key', input: { logsource: { vendor: 'x' } }, path: 'logsource' },
  { name: 'a port out of range', input: { udp_port: 70000 }, path: 'udp_port' },
  { name: 'a certificate without a key', input: { tls_cert_file: 'c.pem' }, path: 'tls_key_file' },
  { name: 'a key without a certificate', input: { tls_key_file: 'k.pem' }, path: 'tls_cert_file' },
  { name: 'a CA without certificate and key', input: { tls_ca_file: 'ca.pem' }, path: 'tls_ca_file' },
  {
    name: 'TLS on the TCP port',
    input: { tls_cert_file: 'c.pem', tls_key_file: 'k.pem', tls_port: 5514 },
    path: 'tls_port',
  },
  { name: 'a zero batch size', input: { batch_max_events: 0 }, path: 'batch_max_events' },
  { name: 'an unknown time zone', input: { timezone: 'Mars/Olympus' }, path: 'timezone' },
  { name: 'an unknown zone of a sender', input: { timezones: { '10.0.0.0/8': 'EST5' } }, path: 'timezones.10.0.0.0/8' },
  {
    name: 'a sender key that is no host and no CIDR',
    input: { timezones: { '10.0.0.0/40': 'UTC' } },
    path: 'timezones.10.0.0.0/40',
  },
  { name: 'an unknown framing', input: { framing: 'lf' }, path: 'framing' },
  { name: 'RELP over TLS without a certificate', input: { relp_tls_port: 2514 }, path: 'relp_tls_port' },
  { name: 'RELP on the TCP port', input: { relp_port: 5514 }, path: 'relp_port' },
];

for (const c of invalid) {
  test(`config: rejects ${c.name}`, () => {
    const result = syslogConfigSchema.safeParse(c.input);
    assert.equal(result.success, false);
    assert.ok(
      result.error!.issues.some((i) => i.path.join('.') === c.path),
      JSON.stringify(result.error!.issues),
    );
  });
}

test('metrics: a second caller on the same registry gets the same metrics', () => {
  const registry = new Registry();
  const a = intakeMetrics(registry);
  const b = intakeMetrics(registry);
  assert.equal(a.received, b.received);
  assert.equal(a.rejected, b.rejected);
  assert.equal(a.pending, b.pending);
  assert.ok(a.connections instanceof Gauge);
});

test('metrics: reuses a compatible metric another component registered first', () => {
  const registry = new Registry();
  const first = new Counter({
    name: 'vigil_intake_events_received_total',
    help: 'x',
    labelNames: ['source'],
    registers: [registry],
  });
  assert.equal(intakeMetrics(registry).received, first);
});

test('metrics: refuses a name taken by another type or other labels', () => {
  const registry = new Registry();
  new Gauge({ name: 'vigil_intake_events_accepted_total', help: 'x', labelNames: ['source'], registers: [registry] });
  assert.throws(() => intakeMetrics(registry), { code: 'metric_conflict' });
  const other = new Registry();
  new Counter({ name: 'vigil_intake_events_rejected_total', help: 'x', labelNames: ['source'], registers: [other] });
  assert.throws(() => intakeMetrics(other), { code: 'metric_conflict' });
});

test("config: a listener cannot declare Vigil's own logsource product (its health events)", () => {
  for (const product of ['vigil', 'VIGIL', ' Vigil ']) {
    const r = syslogConfigSchema.safeParse({ logsource: { product, service: 'health' } });
    assert.equal(r.success, false, product);
    assert.deepEqual(r.error?.issues[0].path, ['logsource', 'product']);
    assert.match(r.error?.issues[0].message ?? '', /reserved for Vigil's own health events/);
  }
  assert.equal(syslogConfigSchema.safeParse({ logsource: { product: 'linux', service: 'health' } }).success, true);
});
