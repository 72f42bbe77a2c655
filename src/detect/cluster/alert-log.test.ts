import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Alert } from '../alerts/index.ts';
import { createAlertStreamConsumer } from './alert-log.ts';
import type { RecordStream, StreamRecord } from './records.ts';

/** A record stream whose one durable consumer is driven by the test (only what the consumer uses). */
function fakeStream() {
  let handler: ((records: StreamRecord<unknown>[]) => Promise<void>) | undefined;
  const records = {
    subject: 'alerts',
    consume(_durable: string, h: (records: StreamRecord<unknown>[]) => Promise<void>) {
      handler = h;
      return { stop: async () => undefined };
    },
  } as unknown as RecordStream;
  const deliver = (value: unknown) =>
    (handler as (records: StreamRecord<unknown>[]) => Promise<void>)([{ seq: 1, value } as StreamRecord<unknown>]);
  return { records, deliver };
}

test('the stream consumer reports degraded while handle fails, and ok again once a batch commits', async () => {
  const { records, deliver } = fakeStream();
  let fail = true;
  const c = createAlertStreamConsumer({
    records,
    durable: 'incidents',
    handle: async () => {
      if (fail) throw new Error('database unavailable');
    },
  });
  await c.start();
  assert.deepEqual(c.health(), { ok: true });
  const alert = { id: 'a1' } as Alert;
  await assert.rejects(deliver({ type: 'alert', alert }), /database unavailable/);
  const h = c.health();
  assert.equal(h.ok, true);
  assert.match(h.detail ?? '', /^degraded: committing alerts: database unavailable/);
  fail = false;
  await deliver({ type: 'alert', alert });
  assert.deepEqual(c.health(), { ok: true });
  await c.stop();
});
