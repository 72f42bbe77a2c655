import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventIdSum, redactConfig } from './create.ts';

test('the backup copy of the configuration has no secrets unless asked', () => {
  const config = {
    auth: { admin_token: 'a-very-secret-admin-token' },
    postgres: { url: 'postgres://vigil:hunter2@db:5432/vigil' },
    notify: {
      webhooks: [{ url: 'https://hooks.example/x?key=abc', secret: 's3', headers: { Authorization: 'Bearer t' } }],
    },
    data_dir: './data',
    store: { retention_days: 30 },
  };
  const text = JSON.stringify(redactConfig(config, false));
  for (const secret of ['a-very-secret-admin-token', 'hunter2', 'key=abc', '"s3"', 'Bearer t']) {
    assert.ok(!text.includes(secret), `${secret} is redacted: ${text}`);
  }
  assert.match(text, /"data_dir":".\/data"/);
  assert.match(text, /"retention_days":30/);
  assert.deepEqual(redactConfig(config, true), config);
});

test('id_sum is the same whatever the order of the events, and differs when one is missing', async () => {
  const events = Array.from({ length: 100 }, (_, i) => ({ tenant: 'default', id: `e-${i}` }));
  const sum = await eventIdSum(events);
  assert.equal(await eventIdSum([...events].reverse()), sum);
  assert.notEqual(await eventIdSum(events.slice(1)), sum);
  assert.notEqual(await eventIdSum(events.map((e) => ({ ...e, tenant: 'other' }))), sum);
});
