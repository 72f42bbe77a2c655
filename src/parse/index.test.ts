import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { InputError } from '../lib/errors.ts';
import {
  createNormalizer,
  NORMALIZER_DEFAULTS,
  type NormalizeContext,
  ParseError,
  parseConfigSchema,
  splitJson,
} from './index.ts';

const RECEIVED = Date.UTC(2026, 0, 2, 12);
const CTX: NormalizeContext = { source: 'http', receivedAt: RECEIVED, tenant: 't1' };
const REGRESSION_FILE =
  '/work/shared/sigma/regression/rules/windows/process_creation/proc_creation_win_findstr_recon_everyone/47e4bab7-c626-47dc-967b-255608c9a920.json';
const MORDOR_ZIP = '/work/shared/datasets/mordor-windows/execution/empire_launcher_vbs.zip';

describe('fromJson', () => {
  const normalizer = createNormalizer();

  for (const [name, value] of [
    ['a number', 42],
    ['a string', 'hello'],
    ['null', null],
    ['an array', [{ a: 1 }]],
    ['a boolean', true],
  ] as const) {
    test(`refuses ${name} with a ParseError (parse_error, HTTP 400)`, () => {
      assert.throws(
        () => normalizer.fromJson(value, JSON.stringify(value), CTX),
        (err: unknown) =>
          err instanceof ParseError &&
          err instanceof InputError &&
          err.code === 'parse_error' &&
          err.status === 400 &&
          /must be a JSON object/.test(err.message),
      );
    });
  }

  test('fills the typed properties and leaves them out of fields', () => {
    const raw =
      '{"@timestamp":"2024-01-01T00:00:00Z","event":{"id":"e-1","original":"x","ingested":"y","kind":"event"},"host":{"name":"h"},"message":"m"}';
    const e = normalizer.fromJson(JSON.parse(raw), raw, { ...CTX, logsource: { product: 'linux' } });
    assert.deepEqual(e, {
      id: 'e-1',
      timestamp: Date.UTC(2024, 0, 1),
      ingested: RECEIVED,
      tenant: 't1',
      source: 'http',
      layout: 'ecs',
      logsource: { product: 'linux' },
      raw,
      fields: { 'event.kind': 'event', 'host.name': 'h', message: 'm' },
      // The three fields are strings of the text at their paths: the store keeps them there only (ADR 12).
      inRaw: [3, 'message'],
    });
  });

  test('no readable time: receipt time, noted in vigil.timestamp_source', () => {
    const e = normalizer.fromJson({ a: 1 }, '{"a":1}', CTX);
    assert.equal(e.timestamp, RECEIVED);
    assert.equal(e.fields['vigil.timestamp_source'], 'received');
  });

  test('an unusable event.id is replaced and kept as event.original_id', () => {
    const e = normalizer.fromJson({ event: { id: 'bad\nid' } }, '{}', CTX);
    assert.notEqual(e.id, 'bad\nid');
    assert.equal(e.fields['event.original_id'], 'bad\nid');
  });

  test('id precedence: a valid event.id, then the idempotency seed, then the Windows record, then a new one', () => {
    const win = { EventID: 4624, Channel: 'Security', Hostname: 'WS1', RecordNumber: 5 };
    const raw = JSON.stringify(win);
    const withId = normalizer.fromJson({ ...win, 'event.id': 'mine' }, raw, { ...CTX, idSeed: 'k:1' });
    assert.equal(withId.id, 'mine');
    const seeded = normalizer.fromJson(win, raw, { ...CTX, idSeed: 'k:1' });
    assert.equal(seeded.id, normalizer.fromJson(win, raw, { ...CTX, idSeed: 'k:1' }).id);
    const record = normalizer.fromJson(win, raw, CTX);
    assert.notEqual(record.id, seeded.id);
    assert.equal(normalizer.fromJson(win, `${raw} `, { ...CTX, receivedAt: RECEIVED + 1000 }).id, record.id);
    const fresh = normalizer.fromJson({ a: 1 }, '{"a":1}', CTX);
    assert.match(fresh.id, /^[0-9a-f-]{36}$/);
    assert.notEqual(normalizer.fromJson({ a: 1 }, '{"a":1}', CTX).id, fresh.id);
  });

  test('the same element of a retried request gets the same id; another tenant gets another', () => {
    const ctx = { ...CTX, idSeed: 'retry-key:3' };
    const a = normalizer.fromJson({ x: 1 }, '{"x":1}', ctx);
    assert.equal(normalizer.fromJson({ x: 1 }, '{"x":1}', { ...ctx, receivedAt: RECEIVED + 5000 }).id, a.id);
    assert.notEqual(normalizer.fromJson({ x: 1 }, '{"x":1}', { ...ctx, tenant: 't2' }).id, a.id);
  });

  test('a limit that is hit still gives the event, with parseError', () => {
    const small = createNormalizer({ max_fields: 2 });
    const e = small.fromJson({ a: 1, b: 2, c: 3 }, '{"a":1,"b":2,"c":3}', CTX);
    assert.match(e.parseError ?? '', /max_fields 2/);
    assert.deepEqual(Object.keys(e.fields).sort(), ['a', 'b', 'vigil.timestamp_source']);
  });

  test('every element of a real evtx_dump file normalizes, re-ingestion gives the same ids', {
    skip: !existsSync(REGRESSION_FILE),
  }, () => {
    const body = readFileSync(REGRESSION_FILE, 'utf8');
    const ids = splitJson(body).map((el) => {
      assert.ok(!('error' in el));
      const e = normalizer.fromJson(el.value, el.raw, CTX);
      assert.equal(e.layout, 'evtx');
      assert.equal(e.fields['event.code'], '1');
      return e.id;
    });
    const again = splitJson(body).map((el) => normalizer.fromJson((el as { value: unknown }).value, el.raw, CTX).id);
    assert.deepEqual(again, ids);
    assert.equal(new Set(ids).size, ids.length);
  });

  test('real Mordor NDJSON normalizes without errors', { skip: !existsSync(MORDOR_ZIP) }, () => {
    const body = execFileSync('sh', ['-c', `unzip -p '${MORDOR_ZIP}' | head -200`], {
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    const els = splitJson(body);
    assert.equal(els.length, 200);
    for (const el of els) {
      assert.ok(!('error' in el));
      const e = normalizer.fromJson(el.value, el.raw, CTX);
      assert.equal(e.layout, 'windows');
      assert.equal(e.parseError, undefined);
      assert.equal(typeof e.fields['host.name'], 'string');
      assert.notEqual(e.fields['vigil.timestamp_source'], 'received');
    }
  });
});

describe('fromSyslog', () => {
  const normalizer = createNormalizer();

  test('produces a syslog event whose fields include host.name and message', () => {
    const line = '<38>Jan  2 10:00:00 bastion sshd[7]: Failed password for root from 10.0.0.1 port 22 ssh2';
    const e = normalizer.fromSyslog(line, { ...CTX, source: 'syslog-udp' });
    assert.equal(e.layout, 'syslog');
    assert.equal(e.raw, line);
    assert.equal(e.timestamp, Date.UTC(2026, 0, 2, 10));
    assert.equal(e.ingested, RECEIVED);
    assert.equal(e.fields['host.name'], 'bastion');
    assert.equal(e.fields['event.outcome'], 'failure');
    assert.equal(e.parseError, undefined);
  });

  test('a line that is not syslog is kept raw with parseError and message = the line', () => {
    const e = normalizer.fromSyslog('garbage', CTX);
    assert.equal(e.parseError, 'not a syslog message: no PRI and no timestamp');
    assert.equal(e.fields.message, 'garbage');
    assert.equal(e.raw, 'garbage');
    assert.equal(e.timestamp, RECEIVED);
  });

  test('a seed makes the id deterministic', () => {
    const line = '<13>Jan  2 10:00:00 h app: x';
    const a = normalizer.fromSyslog(line, { ...CTX, idSeed: 's' });
    assert.equal(normalizer.fromSyslog(line, { ...CTX, idSeed: 's' }).id, a.id);
    assert.notEqual(normalizer.fromSyslog(line, CTX).id, normalizer.fromSyslog(line, CTX).id);
  });
});

describe('configuration', () => {
  test('defaults are NORMALIZER_DEFAULTS', () => {
    assert.deepEqual(parseConfigSchema.parse({}), { ...NORMALIZER_DEFAULTS });
    assert.ok(Object.isFrozen(NORMALIZER_DEFAULTS));
  });

  test('unknown keys and out-of-range values are refused', () => {
    assert.equal(parseConfigSchema.safeParse({ max_depht: 3 }).success, false);
    assert.equal(parseConfigSchema.safeParse({ max_depth: 0 }).success, false);
    assert.equal(parseConfigSchema.safeParse({ max_fields: 1.5 }).success, false);
    assert.throws(() => createNormalizer({ nope: 1 } as never));
  });

  test('max_depth applies', () => {
    const e = createNormalizer({ max_depth: 1 }).fromJson({ a: { b: 1 } }, '{"a":{"b":1}}', CTX);
    assert.equal(e.fields.a, '{"b":1}');
    assert.match(e.parseError ?? '', /max_depth 1/);
  });
});
