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

test('every header value of a notify destination is redacted, and api-key and auth keys in any case', () => {
  const config = {
    notify: {
      webhooks: [
        {
          url: 'https://hooks.example/x',
          headers: { 'X-Api-Key': 'k-1', 'X-Custom-Auth': 'k-2', 'X-Tenant-Signature': 'k-3', Accept: 'k-4' },
        },
      ],
      slack: { API_KEY: 'k-5', apiKey: 'k-6', 'api-key': 'k-7', Auth: 'k-8', nested: { x_auth: 'k-9' } },
    },
    store: { retention_days: 30, engine: 'mergetree' },
  };
  const text = JSON.stringify(redactConfig(config, false));
  for (let i = 1; i <= 9; i++) assert.ok(!text.includes(`k-${i}`), `k-${i} is redacted: ${text}`);
  assert.match(text, /"X-Api-Key":"redacted"/);
  assert.match(text, /"engine":"mergetree"/);
  assert.match(text, /"url":"https:\/\/hooks.example\/x"/);
});

test('id_sum is the same whatever the order of the events, and differs when one is missing', async () => {
  const events = Array.from({ length: 100 }, (_, i) => ({ tenant: 'default', id: `e-${i}` }));
  const sum = await eventIdSum(events);
  assert.equal(await eventIdSum([...events].reverse()), sum);
  assert.notEqual(await eventIdSum(events.slice(1)), sum);
  assert.notEqual(await eventIdSum(events.map((e) => ({ ...e, tenant: 'other' }))), sum);
});
