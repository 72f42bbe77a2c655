import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import type { NormalizedEvent } from '../lib/event.ts';
import { silentLogger } from '../lib/logger.ts';
import { TURN_BUDGET_MS } from '../lib/turns.ts';
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

test('a large batch is evaluated in slices: the event loop turns every few milliseconds, and every match is alerted', async () => {
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
  const batch = Array.from({ length: 20_000 }, (_, i) => event(i));
  const t = performance.now();
  const { turns } = await eventLoopTurnsDuring(() => detector.handle(batch));
  const ms = performance.now() - t;
  assert.equal(saved.length, 2000, 'one alert per failed logon');
  // A turn every TURN_BUDGET_MS of work; five times that leaves room for a loaded machine.
  const least = Math.floor(ms / (5 * TURN_BUDGET_MS));
  assert.ok(turns >= least, `the event loop turned ${turns} times in ${Math.round(ms)} ms (at least ${least})`);
  await detector.stop(Date.now() + 1000);
});
