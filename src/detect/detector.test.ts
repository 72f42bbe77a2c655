import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import type { NormalizedEvent } from '../lib/event.ts';
import { silentLogger } from '../lib/logger.ts';
import { type Alert, createDetector, detectConfigSchema } from './index.ts';
import { eventLoopTurnsDuring } from '../../test/harness/event-loop.ts';
import { memoryAlertStore, plantedRules } from '../../test/harness/planted-rules.ts';

const root = mkdtempSync(join(tmpdir(), 'vigil-detector-'));
after(() => rmSync(root, { recursive: true, force: true }));

function event(i: number): NormalizedEvent {
  return {
    id: `e${i}`,
    timestamp: Date.now(),
    ingested: Date.now(),
    tenant: 'default',
    source: 'http',
    layout: 'windows',
    logsource: { product: 'windows', service: 'security' },
    raw: '',
    fields: { EventID: i % 10 === 0 ? 4625 : 4624, Channel: 'Security' },
  } as NormalizedEvent;
}

test('a large batch is evaluated in slices: the event loop runs between them, and every match is alerted', async () => {
  const rules = join(root, 'rules');
  mkdirSync(rules);
  writeFileSync(join(rules, 'failed-logon.yml'), plantedRules('d').files['failed-logon.yml']);
  const saved: Alert[] = [];
  const alerts = memoryAlertStore(saved);
  const detector = createDetector(detectConfigSchema.parse({ rules_dirs: [rules], starter_rules: false }), {
    dataDir: join(root, 'data'),
    alerts,
    metrics: new Registry(),
    logger: silentLogger,
  });
  await detector.start();
  const { turns } = await eventLoopTurnsDuring(() => detector.handle(Array.from({ length: 5000 }, (_, i) => event(i))));
  assert.equal(saved.length, 500, 'one alert per failed logon');
  assert.ok(turns >= 9, `the event loop turned ${turns} times during 10 slices`);
  await detector.stop(Date.now() + 1000);
});
