import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

const q = (query: string) => `/api/v1/search?q=${encodeURIComponent(query)}&from=now-30d`;

/** Issue 16: stored events cannot be replaced, query errors are 4xx without SQL, syslog loss is counted. */
describe('hardening: evidence, query errors, intake counters', () => {
  let node: VigilNode;
  before(async () => {
    node = await startVigil();
  });
  after(async () => {
    await node?.close();
  });

  test('a replayed event.id and @timestamp with other content is a second event: search by id and by words agree', async () => {
    const at = new Date(Date.now() - 60_000).toISOString();
    const first = { '@timestamp': at, 'event.id': 'evidence-1', message: 'alpha genuine logon' };
    const forged = { '@timestamp': at, 'event.id': 'evidence-1', message: 'bravo forged logon' };
    assert.equal((await node.post('/api/v1/ingest', JSON.stringify(first))).body.accepted, 1);
    assert.equal((await node.post('/api/v1/ingest', JSON.stringify(forged))).body.accepted, 1);
    const byId = await node.get(q('event.id:evidence-1'));
    assert.equal(byId.status, 200);
    assert.deepEqual(byId.body.events.map((e: Record<string, unknown>) => e.message).sort(), [
      'alpha genuine logon',
      'bravo forged logon',
    ]);
    const byWord = await node.get(q('alpha'));
    assert.deepEqual(
      byWord.body.events.map((e: Record<string, unknown>) => e['event.id']),
      ['evidence-1'],
      'the first version is found by its words and by its id alike',
    );
    assert.equal((await node.get(q('bravo'))).body.total, 1);
  });

  test("a collector's resend of the same event (another receipt time) is stored once", async () => {
    const e = JSON.stringify({ '@timestamp': new Date().toISOString(), 'event.id': 'resend-1', message: 'charlie' });
    await node.post('/api/v1/ingest', e);
    await new Promise((r) => setTimeout(r, 20));
    await node.post('/api/v1/ingest', e);
    assert.deepEqual((await node.get(q('event.id:resend-1 | stats count()'))).body.rows, [[1]]);
  });

  test("an event's own tenant.id and input.type do not change the tenant and input shown for it", async () => {
    const spoof = { message: 'delta spoofed', 'tenant.id': 'other-tenant', input: { type: 'syslog-udp' } };
    assert.equal((await node.post('/api/v1/ingest', JSON.stringify(spoof))).body.accepted, 1);
    const found = await node.get(q('delta'));
    assert.equal(found.body.total, 1);
    assert.equal(found.body.events[0]['tenant.id'], 'default');
    assert.equal(found.body.events[0]['input.type'], 'http');
    const shown = await node.get(q('delta | fields tenant.id input.type'));
    assert.deepEqual(shown.body.events, [{ 'tenant.id': 'default', 'input.type': 'http' }]);
  });

  test('field names of Object.prototype answer 200 with no events; numbers out of range 400; no answer holds SQL', async () => {
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
      const res = await node.get(q(`${name}:x`));
      assert.equal(res.status, 200, `${name}:x ${JSON.stringify(res.body)}`);
      assert.equal(res.body.total, 0);
    }
    for (const query of [
      'bytes>=1e20',
      'bytes:[0 TO 1e400]',
      '@timestamp>=9999999999999999',
      '* | stats constructor(a)',
    ]) {
      const res = await node.get(q(query));
      assert.equal(res.status, 400, `${query} ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'query_syntax');
      assert.doesNotMatch(JSON.stringify(res.body), /SELECT|FROM vigil/i);
    }
    const big = await node.get(q('bytes>=1e20'));
    assert.match(big.body.error.message, /number '1e20' is out of range/);
    const far = await node.get('/api/v1/search?q=*&from=0&to=99999999999999999999');
    assert.equal(far.status, 400, JSON.stringify(far.body));
    assert.doesNotMatch(JSON.stringify(far.body), /SELECT/i);
  });

  test('a cut-off octet-counted syslog frame and the node keep counting in /metrics', async () => {
    const socket = connect(node.syslogPort, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.end('200 <13>cut short');
    await new Promise((resolve) => socket.once('close', resolve));
    const deadline = Date.now() + 5000;
    let text = '';
    while (Date.now() < deadline) {
      text = (await node.get('/metrics')).body;
      if (/reason="truncated"\} 1/.test(text)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(text, /vigil_intake_events_rejected_total\{source="syslog-tcp",reason="truncated"\} 1/);
    assert.match(text, /vigil_intake_udp_kernel_drops_total/);
  });
});
