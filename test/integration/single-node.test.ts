import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

const SHARED = join(import.meta.dirname, '../../../shared');

/** Polls a search until `check` passes (syslog is acknowledged to nobody, so tests wait for it). */
async function eventually<T>(fn: () => Promise<T>, check: (v: T) => boolean, ms = 15000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: T = await fn();
  while (!check(last) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    last = await fn();
  }
  return last;
}

const q = (query: string, from = 'now-30d') => `/api/v1/search?q=${encodeURIComponent(query)}&from=${from}`;

describe('single node, embedded default', () => {
  let node: VigilNode;
  before(async () => {
    node = await startVigil();
  });
  after(async () => {
    await node?.close();
  });

  test('the API needs a bearer token, health endpoints do not', async () => {
    const open = await fetch(`${node.url}/health/live`);
    assert.equal(open.status, 200);
    const ready = await fetch(`${node.url}/health/ready`);
    assert.equal(ready.status, 200);
    const noToken = await fetch(`${node.url}/api/v1/search?q=*`);
    assert.equal(noToken.status, 401);
    const wrong = await fetch(`${node.url}/api/v1/search?q=*`, { headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.status, 401);
    assert.ok(!JSON.stringify(await wrong.json()).includes('nope'), 'the refused token is not echoed');
  });

  test('NDJSON is acknowledged after commit and searchable, with stats by field', async () => {
    const now = Date.now();
    const lines = [
      {
        '@timestamp': new Date(now - 3000).toISOString(),
        message: 'login failed',
        user: { name: 'bob' },
        host: { name: 'web-1' },
        source: { ip: '10.1.2.3' },
        event: { outcome: 'failure' },
      },
      {
        '@timestamp': new Date(now - 2000).toISOString(),
        message: 'login failed',
        'user.name': 'bob',
        'host.name': 'web-2',
        'source.ip': '10.1.2.4',
        'event.outcome': 'failure',
      },
      {
        '@timestamp': new Date(now - 1000).toISOString(),
        message: 'login ok',
        'user.name': 'alice',
        'host.name': 'web-1',
        'source.ip': '192.168.5.5',
        'event.outcome': 'success',
      },
    ];
    const res = await node.post('/api/v1/ingest', lines.map((l) => JSON.stringify(l)).join('\n'));
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body, { accepted: 3, rejected: [] });
    // Acknowledged means committed: searchable at once, no polling.
    const found = await node.get(q('user.name:bob AND event.outcome:failure'));
    assert.equal(found.status, 200);
    assert.equal(found.body.total, 2);
    assert.ok(found.body.events.every((e: any) => e['user.name'] === 'bob' && typeof e['event.id'] === 'string'));
    const cidr = await node.get(q('source.ip:10.0.0.0/8'));
    assert.equal(cidr.body.total, 2);
    const stats = await node.get(q('event.outcome:* | stats count() by host.name | sort -count'));
    assert.equal(stats.status, 200);
    assert.deepEqual(stats.body.rows[0], ['web-1', 2]);
  });

  test('a JSON array body is accepted the same way', async () => {
    const res = await node.post(
      '/api/v1/ingest',
      JSON.stringify([{ message: 'array-one zeta' }, { message: 'array-two zeta' }]),
      {
        'content-type': 'application/json',
      },
    );
    assert.deepEqual(res.body, { accepted: 2, rejected: [] });
    assert.equal((await node.get(q('zeta'))).body.total, 2);
  });

  test('a retried request with the same Idempotency-Key stores nothing twice', async () => {
    const body = `${JSON.stringify({ message: 'idem-check one' })}\n${JSON.stringify({ message: 'idem-check two' })}`;
    const headers = { 'content-type': 'application/x-ndjson', 'idempotency-key': 'req-42' };
    assert.equal((await node.post('/api/v1/ingest', body, headers)).body.accepted, 2);
    assert.equal((await node.post('/api/v1/ingest', body, headers)).body.accepted, 2);
    const found = await node.get(q('"idem-check"'));
    assert.equal(found.body.total, 2);
    const counted = await node.get(q('"idem-check" | stats count()'));
    assert.deepEqual(counted.body.rows, [[2]]);
  });

  test('the same event.id stored twice shows once', async () => {
    const e = JSON.stringify({
      '@timestamp': new Date().toISOString(),
      'event.id': 'fixed-id-1',
      message: 'replayed-event',
    });
    await node.post('/api/v1/ingest', e);
    await node.post('/api/v1/ingest', e);
    assert.equal((await node.get(q('replayed-event'))).body.total, 1);
  });

  test('flat Windows events (Mordor) and evtx_dump JSON keep their original fields searchable', async () => {
    const dir = join(SHARED, 'datasets/mordor-windows/execution');
    const zip = join(dir, readdirSync(dir).find((f) => f.endsWith('.zip'))!);
    const text = execFileSync('unzip', ['-p', zip], { maxBuffer: 1 << 30 }).toString();
    const mordor = text.split('\n').filter(Boolean).slice(0, 200);
    const res = await node.post('/api/v1/ingest', mordor.join('\n'));
    assert.equal(res.body.accepted, 200, JSON.stringify(res.body.rejected?.slice(0, 3)));
    const first = JSON.parse(mordor[0]);
    const byId = await node.get(q(`EventID:${first.EventID} AND vigil.layout:windows`, '2000-01-01T00:00:00Z'));
    assert.ok(byId.body.total >= 1, JSON.stringify(byId.body).slice(0, 300));

    const regression = execFileSync('find', [join(SHARED, 'sigma/regression'), '-name', '*.json'])
      .toString()
      .split('\n')
      .filter(Boolean)[0];
    const evtx = readFileSync(regression, 'utf8');
    const r2 = await node.post('/api/v1/ingest', evtx);
    assert.ok(r2.body.accepted >= 1, JSON.stringify(r2.body));
    assert.deepEqual(r2.body.rejected, []);
    const layout = await node.get(
      q('vigil.layout:evtx | stats count() by Event.System.Channel', '2000-01-01T00:00:00Z'),
    );
    assert.equal(layout.status, 200, JSON.stringify(layout.body));
    assert.ok(layout.body.rows.length >= 1);
  });

  test('bad input gets a clear error, is counted, and the node keeps serving', async () => {
    const malformed = await node.post('/api/v1/ingest', '{"ok": 1}\n42\n{not json\n');
    assert.equal(malformed.status, 200);
    assert.equal(malformed.body.accepted, 1);
    assert.deepEqual(
      malformed.body.rejected.map((r: any) => r.line),
      [2, 3],
    );
    assert.ok(malformed.body.rejected.every((r: any) => r.error.length > 0));
    const empty = await node.post('/api/v1/ingest', '');
    assert.equal(empty.status, 400);
    const binary = await node.post('/api/v1/ingest', Buffer.from([0, 255, 254, 1, 2, 10, 0]).toString('latin1'));
    assert.ok(binary.status === 200 || binary.status === 400);
    assert.equal(binary.body.accepted ?? 0, 0);
    const big = `{"message":"${'x'.repeat(2 * 1024 * 1024)}"}`;
    const oversize = await node.post('/api/v1/ingest', big);
    assert.equal(oversize.status, 200);
    assert.equal(oversize.body.rejected[0].error.includes('larger than'), true);
    const wrongType = await node.post('/api/v1/ingest', 'x', { 'content-type': 'image/png' });
    assert.equal(wrongType.status, 415);
    const metrics = await node.get('/metrics');
    const text = String(metrics.body);
    for (const reason of ['malformed_json', 'invalid_event', 'oversize', 'empty', 'unsupported_media_type']) {
      assert.match(text, new RegExp(`vigil_intake_events_rejected_total\\{source="http",reason="${reason}"\\} [1-9]`));
    }
    // Answer times by route: every ingest request above was timed.
    const timed = /vigil_http_request_duration_seconds_count\{route="\/api\/v1\/ingest"\} (\d+)/.exec(text);
    assert.ok(timed && Number(timed[1]) >= 5, 'ingest answer times are recorded');
    assert.equal((await fetch(`${node.url}/health/ready`)).status, 200);
  });

  test('a malformed query answers 400 with the position and a hint', async () => {
    const res = await node.get(q('user.name:(bob'));
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'query_syntax');
    assert.equal(typeof res.body.error.details.position, 'number');
    assert.ok(res.body.error.details.hint);
  });

  test('syslog over UDP and TCP (newline and octet-counting framing) is stored and parsed', async () => {
    const udp = createSocket('udp4');
    await new Promise<void>((r) =>
      udp.send('<34>Oct 11 22:14:15 mymachine su: udp-marker failed for lonvick', node.syslogPort, '127.0.0.1', () =>
        r(),
      ),
    );
    udp.close();
    const rfc5424 = '<165>1 2026-11-21T10:00:00.000Z tcp-host app 77 ID47 [exampleSDID@32473 iut="3"] tcp-octet-marker';
    await new Promise<void>((resolve, reject) => {
      const s = connect(node.syslogPort, '127.0.0.1', () => {
        s.write('<13>Nov 21 10:00:00 tcp-host sshd[4242]: tcp-lf-marker hello\n');
        s.end(`${Buffer.byteLength(rfc5424)} ${rfc5424}`);
      });
      s.on('error', reject);
      s.on('close', () => resolve());
    });
    for (const marker of ['udp-marker', 'tcp-lf-marker', 'tcp-octet-marker']) {
      const found = await eventually(
        () => node.get(q(marker, '2000-01-01T00:00:00Z')),
        (r) => r.body.total === 1,
      );
      assert.equal(found.body.total, 1, `${marker}: ${JSON.stringify(found.body).slice(0, 300)}`);
    }
    const lf = await node.get(q('tcp-lf-marker', '2000-01-01T00:00:00Z'));
    assert.equal(lf.body.events[0]['host.name'], 'tcp-host');
    assert.equal(String(lf.body.events[0]['process.pid']), '4242');
  });

  test('vigil search prints results from the command line', () => {
    const out = execFileSync(
      join(import.meta.dirname, '../../bin/vigil'),
      ['search', 'zeta | stats count()', '--from', 'now-1h'],
      {
        env: { ...process.env, VIGIL_URL: node.url, VIGIL_TOKEN: node.token },
      },
    ).toString();
    assert.match(out, /count/);
    assert.match(out, /\b2\b/);
  });
});
