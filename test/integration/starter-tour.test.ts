import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

// The README tour (issue 18): a node started as `npm start` starts it (starter rules on) says it loaded the
// starter rules, and the tour's curl line raises an alert of one of them and an incident.

let node: VigilNode;
before(async () => {
  // As `npm start` runs it: starter rules and the node's own health events on.
  node = await startVigil({
    env: { VIGIL_DETECT__STARTER_RULES: 'true', VIGIL_SELFMON__ENABLED: 'true', VIGIL_LOG_LEVEL: 'info' },
  });
});
after(() => node?.close());

/** The NDJSON body of the README tour's scanner curl line. */
function tourBody(): string {
  const readme = readFileSync(resolve(import.meta.dirname, '../../README.md'), 'utf8');
  const line = readme.split('\n').find((l) => l.includes('--data-binary') && l.includes('sqlmap'));
  assert.ok(line, 'the README tour has a curl line that triggers a starter rule');
  const m = /\$'(.*)'/.exec(line);
  assert.ok(m);
  return m[1].replaceAll('\\n', '\n');
}

test('npm start loads the starter rules and the tour raises an alert and an incident', async () => {
  assert.match(node.output(), /"starter":24,/);
  const ingest = await node.post('/api/v1/ingest', tourBody());
  assert.equal(ingest.status, 200);
  assert.equal(ingest.body.accepted, 1);
  // Generous: the machine running the tests may be loaded.
  // Waits for the scanner rule's own alert and incident: the node's health rules may open incidents of
  // their own first (a data disk over 80 % on the machine running the tests, for one).
  const scanner = '7a1e5000-0000-4000-8000-000000000020';
  const deadline = Date.now() + 60000;
  let alerts: { rule: { id: string } }[] = [];
  let incidents: { ruleId: string }[] = [];
  while (Date.now() < deadline) {
    alerts = (await node.get('/api/v1/alerts')).body.alerts;
    incidents = (await node.get('/api/v1/incidents')).body.incidents;
    if (alerts.some((a) => a.rule.id === scanner) && incidents.some((i) => i.ruleId === scanner)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(
    alerts.some((a) => a.rule.id === scanner),
    JSON.stringify(alerts),
  );
  assert.ok(
    incidents.some((i) => i.ruleId === scanner),
    JSON.stringify(incidents),
  );
});

test("the tour's health search finds the node's own health events", async () => {
  const readme = readFileSync(resolve(import.meta.dirname, '../../README.md'), 'utf8');
  const line = readme.split('\n').find((l) => l.startsWith('./bin/vigil search') && l.includes('vigil.health.check'));
  const q = line && /'([^']+)'/.exec(line)?.[1];
  assert.ok(q, 'the README tour searches the health events');
  const deadline = Date.now() + 30000;
  let counts = new Map<unknown, unknown>();
  while (Date.now() < deadline) {
    const { body } = await node.get(`/api/v1/search?q=${encodeURIComponent(q)}&from=now-1h`);
    const columns: string[] = body.columns ?? [];
    const check = columns.indexOf('vigil.health.check');
    const count = columns.indexOf('count');
    counts = new Map(((body.rows ?? []) as unknown[][]).map((r) => [r[check], r[count]]));
    if (counts.has('disk')) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(Number(counts.get('disk')) >= 1, JSON.stringify([...counts]));
});
