import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FieldValue, NormalizedEvent } from '../lib/event.ts';
import { eventsToRows, rowToEvent } from './rows.ts';
import { contentHash } from './schema.ts';

function events(n: number): NormalizedEvent[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `e-${i}`,
    timestamp: 1_795_000_000_000 + i,
    ingested: 1_795_000_000_000 + i,
    tenant: 'default',
    source: 'http',
    layout: 'ecs',
    raw: `{"message":"line ${i} with \\"quotes\\"","user":{"name":"u${i % 7}"}}`,
    fields: { message: `line ${i} with "quotes"`, 'user.name': `u${i % 7}`, 'event.code': i, tags: ['a', `t${i}`] },
  }));
}

test("an event's own tenant.id, input.type or event.ingested fields never change what is shown for them", () => {
  const event = rowToEvent({
    ts: '2026-12-01 10:00:00.000',
    ingested: '2026-12-01 10:00:01.000',
    id: 'e-1',
    tenant: 'acme',
    source: 'syslog-tcp',
    layout: 'json',
    host: '',
    message: '',
    raw: '{"tenant.id":"globex","input.type":"http","event.ingested":"2001-01-01"}',
    parse_error: '',
    fields: { 'tenant.id': 'globex', 'input.type': 'http', 'event.ingested': '2001-01-01', 'user.name': 'bob' },
  });
  assert.equal(event['tenant.id'], 'acme');
  assert.equal(event['input.type'], 'syslog-tcp');
  assert.equal(event['event.ingested'], '2026-12-01T10:00:01.000Z');
  assert.equal(event['user.name'], 'bob');
  assert.match(String(event['event.original']), /"tenant.id":"globex"/, "the client's value stays in event.original");
});

test('fields named like Object members are fields of the shown event, not its prototype', () => {
  const row = (fields: Record<string, unknown>) => ({
    ts: '2026-12-01 10:00:00.000',
    ingested: '2026-12-01 10:00:00.000',
    id: 'e-2',
    tenant: 'acme',
    source: 'http',
    layout: 'json',
    host: '',
    message: '',
    raw: '{}',
    parse_error: '',
    fields,
  });
  const event = rowToEvent(row({ constructor: 'c', toString: 't' }));
  assert.equal(event.constructor, 'c');
  assert.equal(event.toString, 't');
  // JSON.parse makes `__proto__` an own key, as the engine's map does.
  const withProto = rowToEvent(row(JSON.parse('{"__proto__":"p"}')));
  assert.equal(Object.getOwnPropertyDescriptor(withProto, '__proto__')?.value, 'p');
  assert.equal(Object.getPrototypeOf(withProto), null);
  assert.match(JSON.stringify(withProto), /"__proto__":"p"/);
});

/** The rows as the store built them before they were written piece by piece: one JSON.stringify of the row. */
function rowsByStringify(batch: readonly NormalizedEvent[]): string {
  const stored = (v: unknown): string | undefined => {
    if (v === null) return undefined;
    if (typeof v === 'string') return v;
    if (Array.isArray(v)) return JSON.stringify(v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))));
    return String(v);
  };
  const text = (v: unknown) => (v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v));
  return batch
    .map((e) => {
      const fields: Record<string, string> = {};
      for (const key in e.fields) {
        if (key === 'host.name' || key === 'message') continue;
        const value = stored(e.fields[key]);
        if (value === undefined) continue;
        if (key === '__proto__') Object.defineProperty(fields, key, { value, enumerable: true, writable: true });
        else fields[key] = value;
      }
      for (const k of ['product', 'service', 'category'] as const) {
        const v = e.logsource?.[k];
        if (v) fields[`vigil.logsource.${k}`] = v;
      }
      return JSON.stringify({
        ts: e.timestamp,
        ingested: e.ingested,
        id: e.id,
        content_hash: contentHash(e.raw),
        tenant: e.tenant,
        source: e.source,
        layout: e.layout,
        host: text(e.fields['host.name']),
        message: text(e.fields.message),
        raw: e.raw,
        parse_error: e.parseError ?? '',
        fields,
      });
    })
    .join('\n');
}

test('rows are, byte for byte, the JSON of the row object: escaping, key order, nulls, arrays, logsource, __proto__', () => {
  const protoFields = JSON.parse('{"__proto__":"p","x":1}') as Record<string, FieldValue>;
  const batch: NormalizedEvent[] = [
    ...events(5),
    {
      id: 'w-1\u2028"',
      timestamp: 1_795_000_000_123,
      ingested: 1_795_000_000_456,
      tenant: 'acme',
      source: 'http',
      layout: 'windows',
      raw: '{"a":"tab\\there \\\\ \\u0001 é 😀"}',
      parseError: 'too deep',
      logsource: { product: 'windows', category: 'process_creation' },
      fields: {
        'host.name': 42,
        message: null,
        'vigil.logsource.category': null,
        'vigil.logsource.product': 'linux',
        'vigil.logsource.service': 'own',
        a: 'tab\there \\ \u0001 é 😀 \ud800',
        n: null,
        b: false,
        f: 1.5e300,
        arr: [1, 'x', true, null],
      },
    },
    { ...events(1)[0], id: 'proto', fields: protoFields, logsource: { service: 'sysmon' } },
  ];
  assert.equal(eventsToRows(batch).toString(), rowsByStringify(batch));
});
