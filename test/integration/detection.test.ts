import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startVigil, type VigilNode } from '../harness/vigil.ts';

const BIN = join(import.meta.dirname, '../../bin/vigil');
const SHARED = join(import.meta.dirname, '../../../shared');

const FAILED_LOGON = `title: Failed logon
id: 0f5e1a40-0000-4000-8000-00000000a001
name: failed_logon
status: test
level: low
tags: [attack.credential-access]
logsource:
  product: windows
  service: security
detection:
  selection:
    EventID: 4625
  condition: selection
`;

const BRUTE_FORCE = `title: Many failed logons for one user
id: 0f5e1a40-0000-4000-8000-00000000a002
status: test
level: high
correlation:
  type: event_count
  rules: [failed_logon]
  group-by: [TargetUserName]
  timespan: 5m
  condition:
    gte: 3
  generate: true
`;

function failedLogon(user: string, seconds: number, record: number): string {
  return JSON.stringify({
    '@timestamp': new Date(Date.now() - 60000 + seconds * 1000).toISOString(),
    EventID: 4625,
    Channel: 'Security',
    Hostname: 'dc-1',
    RecordNumber: record,
    TargetUserName: user,
    IpAddress: '10.9.8.7',
  });
}

describe('detection on the live stream', () => {
  let node: VigilNode;
  let rulesDir: string;
  before(async () => {
    rulesDir = mkdtempSync(join(tmpdir(), 'vigil-rules-'));
    writeFileSync(join(rulesDir, 'failed-logon.yml'), FAILED_LOGON);
    writeFileSync(join(rulesDir, 'brute-force.yml'), BRUTE_FORCE);
    node = await startVigil({ env: { VIGIL_DETECT__RULES_DIRS: JSON.stringify([rulesDir]) } });
  });
  after(async () => {
    await node?.close();
  });

  const alerts = async (query = '') => (await node.get(`/api/v1/alerts?limit=1000${query}`)).body.alerts as any[];
  const waitFor = async (check: (a: any[]) => boolean) => {
    const deadline = Date.now() + 10000;
    let last = await alerts();
    while (!check(last) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      last = await alerts();
    }
    return last;
  };

  test('rules and a correlation fire once each, and a replay of the same events adds nothing', async () => {
    const body = [1, 2, 3].map((i) => failedLogon('mallory', i, 100 + i)).join('\n');
    assert.equal((await node.post('/api/v1/ingest', body)).body.accepted, 3);
    const first = await waitFor((a) => a.length >= 4);
    assert.equal(first.filter((a) => a.kind === 'rule').length, 3);
    const corr = first.filter((a) => a.kind === 'correlation');
    assert.equal(corr.length, 1);
    assert.equal(corr[0].rule.title, 'Many failed logons for one user');
    assert.deepEqual(corr[0].matched.TargetUserName, 'mallory');
    assert.equal(corr[0].eventIds.length, 3);
    // Windows events with a record number get deterministic ids: resending them is a replay.
    assert.equal((await node.post('/api/v1/ingest', body)).body.accepted, 3);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await alerts()).length, 4);
    const high = await alerts('&level=high');
    assert.equal(high.length, 1);
    const hosts = await alerts('&host=dc-1&rule=failed_logon');
    assert.ok(hosts.length === 0 || hosts.every((a) => a.host === 'dc-1'));
  });

  test('an alert can be acknowledged', async () => {
    const [a] = await alerts('&level=high');
    const res = await fetch(`${node.url}/api/v1/alerts/${a.id}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'acknowledged' }),
    });
    assert.equal(res.status, 200);
    const acked = await alerts('&status=acknowledged');
    assert.deepEqual(
      acked.map((x) => x.id),
      [a.id],
    );
  });

  test('rules are managed at runtime: validation errors, add, disable, delete', async () => {
    const send = (method: string, path: string, body?: string, type = 'application/yaml') =>
      fetch(`${node.url}${path}`, {
        method,
        body,
        headers: { authorization: `Bearer ${node.token}`, 'content-type': type },
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
    const before = (await node.get('/api/v1/rules')).body;
    const bad = await send(
      'POST',
      '/api/v1/rules',
      'title: x\nid: bad-rule\nlogsource: {product: windows}\ndetection:\n  sel:\n    Image|nosuchmodifier: a\n  condition: sel\n',
    );
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /nosuchmodifier/);
    const rule = `title: Whoami
id: 0f5e1a40-0000-4000-8000-00000000a003
level: medium
logsource: {product: windows, category: process_creation}
detection:
  sel:
    Image|endswith: '\\\\whoami.exe'
  condition: sel
`;
    const added = await send('POST', '/api/v1/rules', rule);
    assert.equal(added.status, 201, JSON.stringify(added.body));
    assert.ok(added.body.version > before.version);
    const dup = await send('POST', '/api/v1/rules', rule);
    assert.equal(dup.status, 409);
    const sysmon = (image: string, rec: number) =>
      JSON.stringify({
        '@timestamp': new Date().toISOString(),
        EventID: 1,
        Channel: 'Microsoft-Windows-Sysmon/Operational',
        Hostname: 'ws-7',
        RecordNumber: rec,
        Image: image,
        CommandLine: 'whoami /all',
      });
    await node.post('/api/v1/ingest', sysmon('C:\\Windows\\System32\\whoami.exe', 1));
    const fired = await waitFor((a) => a.some((x) => x.rule.title === 'Whoami'));
    assert.equal(fired.filter((x) => x.rule.title === 'Whoami').length, 1);
    const disabled = await send(
      'PATCH',
      '/api/v1/rules/0f5e1a40-0000-4000-8000-00000000a003',
      '{"enabled":false}',
      'application/json',
    );
    assert.equal(disabled.status, 200);
    await node.post('/api/v1/ingest', sysmon('C:\\Windows\\System32\\whoami.exe', 2));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await alerts()).filter((x) => x.rule.title === 'Whoami').length, 1, 'a disabled rule does not fire');
    const removed = await send('DELETE', '/api/v1/rules/0f5e1a40-0000-4000-8000-00000000a003');
    assert.equal(removed.status, 200);
    const folderRule = await send('DELETE', '/api/v1/rules/0f5e1a40-0000-4000-8000-00000000a001');
    assert.equal(folderRule.status, 404, 'rules from folders are read-only');
  });

  test('retro-hunt runs a rule over stored events of a time range', async () => {
    const res = await fetch(`${node.url}/api/v1/hunt`, {
      method: 'POST',
      headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ rule_id: '0f5e1a40-0000-4000-8000-00000000a001', from: 'now-1h', to: 'now' }),
    });
    const body = (await res.json()) as any;
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.total, 3);
    assert.ok(body.matches.every((m: any) => m.event.TargetUserName === 'mallory'));
    const adHoc = await fetch(`${node.url}/api/v1/hunt`, {
      method: 'POST',
      headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        rule: FAILED_LOGON.replace('00000000a001', '00000000a009').replace('EventID: 4625', 'TargetUserName: nobody'),
        from: 'now-1h',
        to: 'now',
      }),
    });
    assert.equal(((await adHoc.json()) as any).total, 0);
  });
});

test('vigil sigma scan prints matches of evtx_dump files as JSON lines', () => {
  const dir = join(SHARED, 'sigma/regression/rules-emerging-threats/2026/Exploits/CVE-2026-33829');
  const out = execFileSync(
    BIN,
    ['sigma', 'scan', '--rules', join(SHARED, 'sigma/rules-emerging-threats/2026'), dir, '--format', 'jsonl'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  ).toString();
  const lines = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const hits = lines.filter((l) => l.rule_id === '7c3a5b1d-9e2f-4a8c-b5d7-1e0f3c6a9b2d');
  assert.equal(hits.length, 2);
  assert.ok(hits.every((h) => h.rule_title && h.level === 'high' && h.event['Event.System.EventID'] !== undefined));
});

test('vigil rules check reports loaded and rejected rules', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-check-'));
  writeFileSync(join(dir, 'ok.yml'), FAILED_LOGON);
  writeFileSync(
    join(dir, 'legacy.yml'),
    FAILED_LOGON.replace('condition: selection', 'condition: selection | count() by TargetUserName > 5').replace(
      'a001',
      'a0ff',
    ),
  );
  let out = '';
  try {
    execFileSync(BIN, ['rules', 'check', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    assert.fail('a rejected rule makes the check fail');
  } catch (err: any) {
    out = err.stdout.toString();
    assert.equal(err.status, 1);
  }
  assert.match(out, /1 rules loaded/);
  assert.match(out, /legacy\.yml/);
});
