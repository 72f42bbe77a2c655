import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { newBackupId } from '../../src/backup/manifest.ts';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

// Vigil watches itself (issue 18): a single node whose last backup is three days old on a daily schedule
// sends a backup health event through its own pipeline, and the starter rule turns it into an alert and an
// incident, as any detection; a client that sends events as Vigil's health is refused, and that refusal is
// itself reported and detected.

const BACKUP_STALE = '7a1e5000-0000-4000-8000-000000000032';
const FORGERY = '7a1e5000-0000-4000-8000-000000000038';
const backupDir = mkdtempSync(join(tmpdir(), 'vigil-selfmon-backups-'));
let node: VigilNode;

/** A complete backup as `vigil backup create` leaves it, cut `agoMs` ago (its manifest, no engine files). */
function oldBackup(agoMs: number): string {
  const cut = Date.now() - agoMs;
  const id = newBackupId(cut);
  mkdirSync(join(backupDir, id), { mode: 0o700 });
  const manifest = {
    format: 1,
    id,
    kind: 'full',
    base: null,
    chain: [id],
    node: 'node-1',
    vigil_version: '0.1.0',
    cut_at: new Date(cut).toISOString(),
    finished_at: new Date(cut + 2000).toISOString(),
    duration_ms: 2000,
    schema: { events: 1, postgres: [] },
    engine: { tables: {}, events: { count: 0, first_ts: null, last_ts: null, id_sum: '0' }, positions: [] },
    postgres: { kind: 'none', tables: {} },
    files: [],
    size_bytes: 0,
  };
  writeFileSync(join(backupDir, id, 'manifest.json'), JSON.stringify(manifest));
  return manifest.cut_at;
}

let cutAt = '';
before(async () => {
  cutAt = oldBackup(3 * 86_400_000);
  node = await startVigil({
    env: {
      VIGIL_SELFMON__ENABLED: 'true',
      VIGIL_SELFMON__CHECK_INTERVAL_MS: '1000',
      VIGIL_DETECT__STARTER_RULES: 'true',
      VIGIL_BACKUP__DIR: backupDir,
      VIGIL_BACKUP__SCHEDULE: '1d',
    },
  });
});

after(async () => {
  await node?.close();
  rmSync(backupDir, { recursive: true, force: true });
});

async function until<T>(what: string, read: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await read();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Incident {
  id: string;
  ruleId: string;
  tenant: string;
  title: string;
}

test('a stale backup opens an incident from the health rule, in the admin token tenant', async () => {
  const incident = await until('the stale-backup incident', async () => {
    const { body } = await node.get('/api/v1/incidents');
    return (body.incidents as Incident[]).find((i) => i.ruleId === BACKUP_STALE);
  });
  assert.equal(incident.tenant, 'default');
  const { body: alerts } = await node.get(`/api/v1/alerts?rule=${BACKUP_STALE}`);
  assert.ok(alerts.alerts.length >= 1);
  // The event behind it is stored and searchable like any other, with the backup's cut time.
  const { body: found } = await node.get(
    `/api/v1/search?q=${encodeURIComponent('vigil.health.check:backup')}&from=now-1h`,
  );
  const event = found.events[0];
  assert.ok(event, JSON.stringify(found));
  const fields = JSON.stringify(event);
  assert.ok(fields.includes(cutAt), fields);
  assert.match(fields, /older than twice the backup schedule \(1d\)/);
});

test('events sent as Vigil health are refused, and the refusal is detected as a forgery attempt', async () => {
  const forged = await node.post(
    '/api/v1/ingest?product=vigil&service=health',
    '{"vigil.health.check":"backup","vigil.health.backup.stale":false}\n',
  );
  assert.equal(forged.status, 400);
  assert.equal(forged.body.error.code, 'reserved_logsource');
  const metrics = await fetch(`${node.url}/metrics`, { headers: { authorization: `Bearer ${node.token}` } });
  assert.match(
    await metrics.text(),
    /vigil_intake_events_rejected_total\{source="http",reason="reserved_logsource"\} 1/,
  );
  const incident = await until('the forgery incident', async () => {
    const { body } = await node.get('/api/v1/incidents');
    return (body.incidents as Incident[]).find((i) => i.ruleId === FORGERY);
  });
  assert.equal(incident.tenant, 'default');
});

test("another tenant's users see none of Vigil's health", async () => {
  const password = 'a long enough passphrase 42';
  const json = { 'content-type': 'application/json' };
  const created = await node.post(
    '/api/v1/users',
    JSON.stringify({ username: 'acme-analyst', password, role: 'analyst', tenants: ['acme'] }),
    json,
  );
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const login = await fetch(`${node.url}/api/v1/auth/login`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({ username: 'acme-analyst', password }),
  });
  assert.equal(login.status, 200);
  const auth = { authorization: `Bearer ${((await login.json()) as { token: string }).token}` };
  const incidents = (await (await fetch(`${node.url}/api/v1/incidents`, { headers: auth })).json()) as {
    incidents: Incident[];
  };
  assert.deepEqual(incidents.incidents, []);
  const q = encodeURIComponent('vigil.health.check:*');
  const found = (await (await fetch(`${node.url}/api/v1/search?q=${q}&from=now-1h`, { headers: auth })).json()) as {
    events: unknown[];
  };
  assert.deepEqual(found.events, []);
  // The admin token's tenant holds them.
  const { body } = await node.get(`/api/v1/search?q=${q}&from=now-1h`);
  assert.ok(body.events.length > 0);
});
