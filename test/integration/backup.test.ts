import assert from 'node:assert/strict';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventIdSum, type Manifest } from '../../src/backup/index.ts';
import { startVigil, type VigilNode, vigilCli } from '../harness/vigil.ts';

async function ingest(node: VigilNode, ids: string[]): Promise<void> {
  const body = ids.map((id) => JSON.stringify({ event: { id }, message: `backup test ${id}` })).join('\n');
  const res = await node.post('/api/v1/ingest', body);
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

/** Every event the node shows: (tenant, event.id) pairs. */
async function allEvents(node: VigilNode): Promise<{ tenant: string; id: string }[]> {
  const res = await node.get(`/api/v1/search?q=*&from=now-7d&to=now%2B1h&limit=10000`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.ok(res.body.total < 10000, 'the test keeps under one page of events');
  return (res.body.events as Record<string, string>[]).map((e) => ({ tenant: e['tenant.id'], id: e['event.id'] }));
}

/** The SQL-backed state an analyst sees: users, rules, incidents with comments, audit entries. */
async function state(node: VigilNode) {
  const users = (await node.get('/api/v1/users')).body;
  const listed = (await node.get('/api/v1/rules')).body;
  // A rule's file is under the node's data folder, which a restore moves; its text must be the same.
  const rules = {
    ...listed,
    rules: await Promise.all(
      listed.rules.map(async ({ file: _file, ...r }: Record<string, unknown>) => ({
        ...r,
        text: (await node.get(`/api/v1/rules/${r.id}`)).body,
      })),
    ),
  };
  const incidents = (await node.get('/api/v1/incidents')).body;
  const audit = (await node.get('/api/v1/audit?limit=1000')).body;
  return { users, rules, incidents, audit };
}

const RULE = `title: Backup test rule
id: 6b1a0000-0000-4000-8000-000000000b01
status: test
level: low
logsource:
  product: windows
detection:
  selection:
    EventID: 4625
  condition: selection
`;

describe('backups: create while ingesting, verify, restore, retention', { timeout: 600_000 }, () => {
  const root = mkdtempSync(join(tmpdir(), 'vigil-backup-'));
  const dir = join(root, 'backups');
  let node: VigilNode;
  let env: Record<string, string>;
  const manifests: Manifest[] = [];

  const read = (id: string) => JSON.parse(readFileSync(join(dir, id, 'manifest.json'), 'utf8')) as Manifest;

  before(async () => {
    node = await startVigil({ env: { VIGIL_BACKUP__DIR: dir, VIGIL_BACKUP__KEEP_LAST: '2' } });
    env = { VIGIL_URL: node.url, VIGIL_TOKEN: node.token, VIGIL_BACKUP__DIR: dir };
  });
  after(async () => {
    await node?.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('a backup taken during a steady ingest restores every event acknowledged before it, and the SQL state', async () => {
    const user = await node.post(
      '/api/v1/users',
      JSON.stringify({ username: 'ana', password: 'correct-horse-battery-9', role: 'analyst' }),
      { 'content-type': 'application/json' },
    );
    assert.equal(user.status, 201, JSON.stringify(user.body));
    const rule = await node.post('/api/v1/rules', RULE, { 'content-type': 'text/plain' });
    assert.equal(rule.status, 201, JSON.stringify(rule.body));
    const incident = await node.post('/api/v1/incidents', JSON.stringify({ title: 'Backed up', severity: 'high' }), {
      'content-type': 'application/json',
    });
    assert.equal(incident.status, 201, JSON.stringify(incident.body));
    const comment = await node.post(
      `/api/v1/incidents/${incident.body.id}/comments`,
      JSON.stringify({ body: 'kept by the backup' }),
      { 'content-type': 'application/json' },
    );
    assert.equal(comment.status, 201, JSON.stringify(comment.body));

    // Steady ingest: 20 events every 10 ms until stopped; each batch's ids noted when acknowledged.
    const acked: { at: number; ids: string[] }[] = [];
    let stop = false;
    let k = 0;
    const loop = (async () => {
      while (!stop) {
        const ids = Array.from({ length: 20 }, () => `steady-${k++}`);
        await ingest(node, ids);
        acked.push({ at: Date.now(), ids });
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    // Three batches acknowledged first (bounded: a loaded machine took over 800 ms for the first one); the
    // last may share its millisecond with the ask, the two before it are before.
    for (let waited = 0; acked.length < 3 && waited < 60_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    const asked = Date.now();
    let created: Awaited<ReturnType<typeof vigilCli>>;
    try {
      created = await vigilCli(['backup', 'create'], env);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      stop = true;
      await loop;
    }
    assert.equal(created.code, 0, created.err);
    const id = created.out.trim();
    const manifest = read(id);
    manifests.push(manifest);
    assert.equal(manifest.kind, 'full');
    assert.equal(statSync(join(dir, id)).mode & 0o777, 0o700, "a backup folder is its owner's only");
    assert.ok(Date.parse(manifest.cut_at) >= asked);
    const before = acked.filter((b) => b.at < asked).flatMap((b) => b.ids);
    assert.ok(before.length >= 40, `ingest ran before the backup (${before.length} events)`);
    assert.ok(
      acked.some((b) => b.at > Date.parse(manifest.finished_at)),
      'ingest went on during the backup',
    );
    const sourceState = await state(node);

    const target = join(root, 'restored-1');
    const restored = await vigilCli(['backup', 'restore', id, '--data-dir', target], env);
    assert.equal(restored.code, 0, restored.err);
    const copy = await startVigil({ dataDir: target, env: { VIGIL_BACKUP__DIR: join(root, 'copy-backups') } });
    try {
      const events = await allEvents(copy);
      assert.equal(events.length, manifest.engine.events.count);
      assert.equal(await eventIdSum(events), manifest.engine.events.id_sum);
      const seen = new Map<string, number>();
      for (const e of events) seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
      for (const e of before) assert.equal(seen.get(e), 1, `event ${e}, acknowledged before the backup, once`);
      const copyState = await state(copy);
      assert.deepEqual(copyState.users, sourceState.users);
      assert.deepEqual(copyState.rules, sourceState.rules);
      assert.deepEqual(copyState.incidents, sourceState.incidents);
      assert.deepEqual(copyState.audit, sourceState.audit);
      assert.equal(manifest.postgres.tables.incident_comments, 1);
    } finally {
      await copy.close();
    }
  });

  test('three backups with ingest between are a chain; the last restores the node as it was at its cut', async () => {
    for (let round = 0; round < 2; round++) {
      await ingest(
        node,
        Array.from({ length: 50 }, (_, i) => `round-${round}-${i}`),
      );
      const created = await vigilCli(['backup', 'create'], env);
      assert.equal(created.code, 0, created.err);
      manifests.push(read(created.out.trim()));
    }
    const [first, second, third] = manifests;
    assert.deepEqual(
      [second.kind, second.base, third.kind, third.base],
      ['incremental', first.id, 'incremental', second.id],
    );
    assert.deepEqual(third.chain, [first.id, second.id, third.id]);
    // An incremental holds the new parts only: no data file of its bases again. (Its total size is no test: a
    // background merge between two backups makes a new part that holds old rows too, and CI saw 110 KB after
    // a 102 KB full backup.)
    const dataFiles = (m: typeof first) =>
      // Column files of events (ids, times, text): a constant column compresses below 1 KiB and may repeat.
      m.files.filter(
        (f: { path: string; size: number }) => f.path.startsWith('engine/') && f.path.endsWith('.bin') && f.size > 1024,
      );
    assert.ok(dataFiles(first).length > 0, 'the full backup holds column files to compare');
    const inBases = new Set([...dataFiles(first), ...dataFiles(second)].map((f: { sha256: string }) => f.sha256));
    const repeated = dataFiles(third).filter((f: { sha256: string }) => inBases.has(f.sha256));
    assert.deepEqual(repeated, [], 'the incremental copies no data file its bases hold');
    const now = await allEvents(node);
    assert.equal(third.engine.events.count, now.length);
    assert.equal(third.engine.events.id_sum, await eventIdSum(now));

    const list = await vigilCli(['backup', 'list', '--json'], env);
    assert.equal(list.code, 0, list.err);
    assert.deepEqual(
      JSON.parse(list.out).backups.map((b: { id: string; kind: string }) => [b.id, b.kind]),
      manifests.map((m) => [m.id, m.kind]),
    );
    const verified = await vigilCli(['backup', 'verify', third.id], env);
    assert.equal(verified.code, 0, verified.err);

    const target = join(root, 'restored-3');
    const restored = await vigilCli(['backup', 'restore', third.id, '--data-dir', target], env);
    assert.equal(restored.code, 0, restored.err);
    const copy = await startVigil({ dataDir: target, env: { VIGIL_BACKUP__DIR: join(root, 'copy-backups') } });
    try {
      const events = await allEvents(copy);
      assert.equal(events.length, now.length);
      assert.equal(await eventIdSum(events), third.engine.events.id_sum);
    } finally {
      await copy.close();
    }
  });

  test('a flipped byte or a missing file is named by verify and refused by restore, which writes nothing', async () => {
    const damaged = join(root, 'damaged');
    cpSync(dir, damaged, { recursive: true });
    const denv = { VIGIL_BACKUP__DIR: damaged };
    const [first, second, third] = manifests;
    const bin = first.files.find((f) => f.path.endsWith('.bin') && f.path.includes('/events/'));
    assert.ok(bin, 'the full backup holds an events data file');
    const flipped = join(damaged, first.id, bin.path);
    const bytes = readFileSync(flipped);
    bytes[Math.floor(bytes.length / 2)] ^= 0x01;
    writeFileSync(flipped, bytes);
    const missing = join(damaged, second.id, second.files.find((f) => f.path.startsWith('engine/'))!.path);
    rmSync(missing);

    const verified = await vigilCli(['backup', 'verify', third.id], denv);
    assert.equal(verified.code, 1);
    assert.match(verified.err, new RegExp(`checksum ${escapeRe(flipped)}`));
    assert.match(verified.err, new RegExp(`missing ${escapeRe(missing)}`));

    const target = join(root, 'not-restored');
    const restored = await vigilCli(['backup', 'restore', third.id, '--data-dir', target], denv);
    assert.equal(restored.code, 1);
    assert.match(restored.err, /backup_corrupt/);
    assert.match(restored.err, new RegExp(escapeRe(flipped)));
    assert.equal(existsSync(target), false, 'nothing written');
    assert.deepEqual(
      readdirSync(root).filter((n) => n.includes('restoring')),
      [],
    );
  });

  test("bad inputs: a partial backup, a newer schema, a non-empty folder, a running node's folder, a bad id; each a clear error, nothing written", async () => {
    const bad = join(root, 'bad');
    mkdirSync(bad);
    const first = manifests[0];
    cpSync(join(dir, first.id), join(bad, first.id), { recursive: true });
    const benv = { VIGIL_BACKUP__DIR: bad };
    const target = join(root, 'bad-target');

    const newer = JSON.parse(readFileSync(join(bad, first.id, 'manifest.json'), 'utf8'));
    newer.schema.events = 99;
    writeFileSync(join(bad, first.id, 'manifest.json'), JSON.stringify(newer));
    let r = await vigilCli(['backup', 'restore', first.id, '--data-dir', target], benv);
    assert.equal(r.code, 1);
    assert.match(r.err, /schema 99, newer than this Vigil's .*backup_schema_newer/);
    assert.equal(existsSync(target), false);

    rmSync(join(bad, first.id, 'manifest.json'));
    r = await vigilCli(['backup', 'restore', first.id, '--data-dir', target], benv);
    assert.equal(r.code, 1);
    assert.match(r.err, /is partial: .*manifest\.json is missing.*backup_partial/);
    assert.equal(existsSync(target), false);

    mkdirSync(target);
    writeFileSync(join(target, 'keep.txt'), 'mine');
    r = await vigilCli(['backup', 'restore', first.id, '--data-dir', target], { VIGIL_BACKUP__DIR: dir });
    assert.equal(r.code, 1);
    assert.match(r.err, /is not empty.*--force.*backup_target_not_empty/);
    assert.deepEqual(readdirSync(target), ['keep.txt']);

    // The running node's own data folder: refused even with --force, and the node goes on unharmed.
    const before = readdirSync(node.dataDir).sort();
    r = await vigilCli(['backup', 'restore', first.id, '--data-dir', node.dataDir, '--force'], {
      VIGIL_BACKUP__DIR: dir,
    });
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /is in use: a running Vigil holds the lock on .*events\/status.*backup_target_in_use/);
    assert.deepEqual(readdirSync(node.dataDir).sort(), before);
    assert.equal((await node.get('/health/ready')).status, 200);

    r = await vigilCli(['backup', 'restore', '../../etc', '--data-dir', join(root, 'x')], benv);
    assert.equal(r.code, 1);
    assert.match(r.err, /is not a backup id.*backup_id/);
    r = await vigilCli(['backup', 'restore', first.id], benv);
    assert.equal(r.code, 2);
    assert.match(r.err, /needs --data-dir/);
    assert.equal(existsSync(join(root, 'x')), false);

    const notJson = await node.post('/admin/backups', '{"full":"yes"}', { 'content-type': 'application/json' });
    assert.equal(notJson.status, 400);
    assert.equal(notJson.body.error.code, 'backup_request');
    for (const [body, code] of [
      ['{"full":', 'malformed_json'],
      ['[true]', 'malformed_json'],
      ['{"ful":true}', 'unknown_field'],
    ] as const) {
      const bad = await node.post('/admin/backups', body, { 'content-type': 'application/json' });
      assert.equal(bad.status, 400, body);
      assert.equal(bad.body.error.code, code, body);
    }
    const login = await node.post(
      '/api/v1/auth/login',
      JSON.stringify({ username: 'ana', password: 'correct-horse-battery-9' }),
      { 'content-type': 'application/json' },
    );
    assert.equal(login.status, 200, JSON.stringify(login.body));
    for (const method of ['POST', 'GET']) {
      const res = await fetch(`${node.url}/admin/backups`, {
        method,
        headers: { authorization: `Bearer ${login.body.token}`, 'content-type': 'application/json' },
        body: method === 'POST' ? '{}' : undefined,
      });
      assert.equal(res.status, 403, `${method} /admin/backups as an analyst`);
    }
    assert.equal(readdirSync(dir).length, manifests.length, 'no backup taken');
  });

  test('retention with keep_last 2 keeps every backup a kept incremental needs', async () => {
    // The chain full <- inc <- inc: the newest two need the full one as well.
    assert.deepEqual(
      readdirSync(dir).sort(),
      manifests.map((m) => m.id),
    );
    const full = await vigilCli(['backup', 'create', '--full'], env);
    assert.equal(full.code, 0, full.err);
    // full2 and third are the newest two; third needs second and first.
    assert.deepEqual(readdirSync(dir).sort(), [...manifests.map((m) => m.id), full.out.trim()]);
    const inc = await vigilCli(['backup', 'create'], env);
    assert.equal(inc.code, 0, inc.err);
    assert.equal(read(inc.out.trim()).base, full.out.trim());
    assert.deepEqual(readdirSync(dir).sort(), [full.out.trim(), inc.out.trim()]);
    const metrics = (await node.get('/metrics')).body as string;
    assert.match(metrics, /vigil_backup_last_success_timestamp_seconds \d/);
    assert.match(metrics, /vigil_backup_pruned_total 3/);
  });
});

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
