import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { EventStore } from '../store/index.ts';
import { BackupError, createBackup, eventIdSum, redactConfig } from './create.ts';
import { listBackups } from './manifest.ts';

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

test('a backup that fails while the count fails too: the backup fails, the count is logged and counted, the folder and freeze removed', async () => {
  const root = mkdtempSync(join(tmpdir(), 'vigil-create-'));
  try {
    const store = {
      query: async (sql: string) => {
        if (sql.includes('system.disks')) return [{ path: `${root}/` }];
        if (sql.includes('system.tables')) {
          return [{ name: 'events', engine: 'ReplacingMergeTree', data_paths: [`${root}/store/events/`] }];
        }
        if (sql.startsWith('SHOW CREATE')) return [{ statement: 'CREATE TABLE vigil.events (x UInt8)' }];
        throw new Error('the engine went away');
      },
      exec: async (sql: string) => {
        const name = /FREEZE WITH NAME '(\w+)'/.exec(sql)?.[1];
        if (!name) return;
        // A frozen part holding a folder where files are expected: the copy fails on it.
        const part = join(root, 'shadow', name, 'store', 'events', '20260101_1_1_0');
        mkdirSync(join(part, 'unexpected'), { recursive: true });
        writeFileSync(join(part, 'checksums.txt'), 'sums');
        writeFileSync(join(part, 'count.txt'), '1');
      },
    } as unknown as EventStore;
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    const metrics = new Registry();
    const dir = join(root, 'backups');
    await assert.rejects(
      createBackup({
        dir,
        dataDir: join(root, 'data'),
        nodeId: 'n1',
        store,
        config: {},
        includeSecrets: false,
        maxChain: 6,
        existing: [],
        logger,
        metrics,
      }),
      (err: unknown) => err instanceof BackupError && err.reason === 'disk' && /is not a file/.test(err.message),
    );
    assert.match(await metrics.metrics(), /vigil_backup_cleanup_failures_total\{step="count"\} 1/);
    const logged = lines.map((l) => JSON.parse(l) as { step?: string; err?: string; msg: string });
    assert.ok(
      logged.some((l) => l.step === 'count' && /the engine went away/.test(l.err ?? '')),
      `the count's failure is logged: ${lines.join('')}`,
    );
    assert.deepEqual(readdirSync(dir), [], 'the failed backup folder is removed');
    assert.deepEqual(readdirSync(join(root, 'shadow')), [], 'the freeze is removed');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a file copy that fails on a copy thread fails the backup: no folder is left, none is listed, the freeze is removed', async () => {
  const root = mkdtempSync(join(tmpdir(), 'vigil-create-'));
  try {
    const dir = join(root, 'backups');
    const part = '20260101_1_1_0';
    const store = {
      query: async (sql: string) => {
        if (sql.includes('system.disks')) return [{ path: `${root}/` }];
        if (sql.includes('system.tables')) {
          return [{ name: 'alerts', engine: 'ReplacingMergeTree', data_paths: [`${root}/store/alerts/`] }];
        }
        if (sql.startsWith('SHOW CREATE')) return [{ statement: 'CREATE TABLE vigil.alerts (x UInt8)' }];
        throw new Error(`unexpected query ${sql}`);
      },
      exec: async (sql: string) => {
        const name = /FREEZE WITH NAME '(\w+)'/.exec(sql)?.[1];
        if (!name) return;
        const frozen = join(root, 'shadow', name, 'store', 'alerts', part);
        mkdirSync(frozen, { recursive: true });
        writeFileSync(join(frozen, 'checksums.txt'), 'sums');
        writeFileSync(join(frozen, 'count.txt'), '1');
        for (let i = 0; i < 20; i++) writeFileSync(join(frozen, `c${i}.bin`), `column ${i}`);
        // The backup's folder is made before the freeze: a file already where one copy goes makes that copy
        // fail on its thread ('wx' never overwrites), among twenty that succeed.
        const [id] = readdirSync(dir);
        const to = join(dir, id, 'engine', 'data', 'vigil', 'alerts', part);
        mkdirSync(to, { recursive: true });
        writeFileSync(join(to, 'c7.bin'), 'in the way');
      },
    } as unknown as EventStore;
    const metrics = new Registry();
    await assert.rejects(
      createBackup({
        dir,
        dataDir: join(root, 'data'),
        nodeId: 'n1',
        store,
        config: {},
        includeSecrets: false,
        maxChain: 6,
        existing: [],
        logger: pino({ level: 'silent' }),
        metrics,
      }),
      (err: unknown) =>
        err instanceof BackupError &&
        err.reason === 'disk' &&
        /copying the frozen parts failed: copying .*c7\.bin to .*c7\.bin: .*EEXIST/.test(err.message),
    );
    assert.deepEqual(readdirSync(dir), [], 'the failed backup folder is removed');
    assert.deepEqual(listBackups(dir), [], 'no backup is listed, partial or not');
    assert.deepEqual(readdirSync(join(root, 'shadow')), [], 'the freeze is removed');
    assert.doesNotMatch(await metrics.metrics(), /vigil_backup_cleanup_failures_total\{/, 'no cleanup failed');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
