import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { parseSchedule } from '../../backup/index.ts';
import { clusterMetrics } from '../../cluster/metrics.ts';
import { intakeMetrics } from '../../intake/metrics.ts';
import type { EventLayout, NormalizedEvent } from '../../lib/event.ts';
import { silentLogger } from '../../lib/logger.ts';
import { gauge } from '../../lib/metrics.ts';
import { createNormalizer } from '../../parse/index.ts';
import { createSelfmon, type SelfmonDeps, selfmonConfigSchema } from '../../selfmon/index.ts';
import type { CorrelationEngine } from '../correlation/index.ts';
import { evaluateEvents } from '../evaluate.ts';
import { compileRuleFolders } from '../rule-set.ts';
import { eventFromJson } from '../sigma/fixtures.ts';
import { STARTER_RULES_DIR } from './index.ts';

/**
 * Every starter rule, run on real events through the production parser and the detection engine: a case
 * whose events fire it and one whose events do not.
 */

const normalizer = createNormalizer();
const base = Date.parse('2026-12-01T10:00:00Z');

function syslog(line: string): NormalizedEvent {
  return normalizer.fromSyslog(line, { source: 'syslog', receivedAt: base, tenant: 'default' });
}

function json(obj: Record<string, unknown>, layout: EventLayout): NormalizedEvent {
  return eventFromJson(JSON.stringify(obj), layout);
}

let record = 0;
const win = (fields: Record<string, unknown>) =>
  json({ '@timestamp': new Date(base).toISOString(), Hostname: 'dc-1', RecordNumber: ++record, ...fields }, 'windows');
const failedLogon = (user: string, ip: string) =>
  win({ EventID: 4625, Channel: 'Security', TargetUserName: user, IpAddress: ip, LogonType: 3 });
const sshFailure = (ip: string, i: number) =>
  syslog(
    `<38>Dec  1 10:00:${String(i).padStart(2, '0')} bastion sshd[7${i}]: Failed password for root from ${ip} port ${40000 + i} ssh2`,
  );
const web = (fields: Record<string, unknown>) =>
  json(
    {
      '@timestamp': new Date(base).toISOString(),
      'event.dataset': 'nginx.access',
      'source.ip': '198.51.100.7',
      'http.request.method': 'GET',
      'http.response.status_code': 200,
      ...fields,
    },
    'ecs',
  );
const proxy = (ua: string) =>
  json(
    {
      '@timestamp': new Date(base).toISOString(),
      'event.dataset': 'squid.log',
      'observer.type': 'proxy',
      'url.original': 'http://example.org/a.bin',
      'user_agent.original': ua,
    },
    'ecs',
  );
const sysmon = (image: string, commandLine: string) =>
  win({ EventID: 1, Channel: 'Microsoft-Windows-Sysmon/Operational', Image: image, CommandLine: commandLine });
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * The health events a node sends (src/selfmon) once its metrics are as `setup` leaves them: the real
 * component reads them and publishes its events here. The disk reads 40 % full unless `deps` says otherwise.
 */
async function health(
  setup: (m: Registry) => void,
  deps: Partial<Omit<SelfmonDeps, 'publish' | 'metrics'>> = {},
): Promise<NormalizedEvent[]> {
  const metrics = new Registry();
  setup(metrics);
  const out: NormalizedEvent[] = [];
  const selfmon = createSelfmon(selfmonConfigSchema.parse({}), {
    publish: async (events) => {
      out.push(...events);
    },
    tenant: 'default',
    nodeId: 'node-1',
    dataDir: tmpdir(),
    readDisk: () => ({ ratio: 0.4, free: 6e10 }),
    metrics,
    logger: silentLogger,
    ...deps,
  });
  await selfmon.check();
  return out;
}
const replicaLag = (n: number) => (m: Registry) => gauge(m, 'vigil_store_replica_lag_messages', 'lag').set(n);
const alertsBacklog = (n: number) => (m: Registry) =>
  gauge(m, 'vigil_alerts_consumer_backlog_alerts', 'backlog', ['consumer']).set({ consumer: 'incidents' }, n);
const lastBackup = (agoMs: number) => (m: Registry) =>
  gauge(m, 'vigil_backup_last_success_timestamp_seconds', 'last').set((Date.now() - agoMs) / 1000);
const rejected = (source: string, reason: string, n: number) => (m: Registry) =>
  intakeMetrics(m).rejected.inc({ source, reason }, n);
const spool = (events: number, ageMs: number) => () => ({
  events,
  batches: events > 0 ? 1 : 0,
  bytes: events * 500,
  ...(events > 0 ? { oldestAt: Date.now() - ageMs } : {}),
});
const DAY = 86_400_000;

interface Case {
  rule: string;
  file: string;
  fires: () => NormalizedEvent[] | Promise<NormalizedEvent[]>;
  quiet: () => NormalizedEvent[] | Promise<NormalizedEvent[]>;
}

const cases: Case[] = [
  {
    rule: '7a1e5000-0000-4000-8000-000000000002',
    file: 'linux/ssh-password-guessing.yml',
    fires: () => range(10).map((i) => sshFailure('203.0.113.9', i)),
    // Nine from one address, and ten successes: below the threshold, and not failures.
    quiet: () => [
      ...range(9).map((i) => sshFailure('203.0.113.9', i)),
      ...range(10).map((i) =>
        syslog(
          `<38>Dec  1 10:01:0${i % 10} bastion sshd[8${i}]: Accepted publickey for alice from 203.0.113.9 port 5002${i} ssh2`,
        ),
      ),
    ],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000003',
    file: 'linux/sudo-failure.yml',
    fires: () => [
      syslog(
        '<85>Dec  1 10:00:00 web-1 sudo:    alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash',
      ),
    ],
    quiet: () => [
      syslog(
        '<85>Dec  1 10:00:00 web-1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/apt update',
      ),
    ],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000004',
    file: 'linux/new-user-or-group.yml',
    fires: () => [
      syslog(
        '<86>Dec  1 10:00:00 web-1 useradd[311]: new user: name=backdoor, UID=1001, GID=1001, home=/home/backdoor, shell=/bin/bash, from=/dev/pts/0',
      ),
      syslog('<86>Dec  1 10:00:00 web-1 groupadd[312]: new group: name=backdoor, GID=1001'),
    ],
    quiet: () => [syslog("<86>Dec  1 10:00:00 web-1 useradd[311]: failed adding user 'backdoor', exit code: 9")],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000010',
    file: 'windows/security-log-cleared.yml',
    fires: () => [win({ EventID: 1102, Channel: 'Security', SubjectUserName: 'mallory' })],
    quiet: () => [win({ EventID: 1102, Channel: 'Application' }), win({ EventID: 4624, Channel: 'Security' })],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000011',
    file: 'windows/privileged-group-member-added.yml',
    fires: () => [
      win({
        EventID: 4732,
        Channel: 'Security',
        TargetUserName: 'Administrators',
        TargetSid: 'S-1-5-32-544',
        MemberSid: 'S-1-5-21-1-2-3-1107',
      }),
      win({ EventID: 4728, Channel: 'Security', TargetUserName: 'Domaenen-Admins', TargetSid: 'S-1-5-21-1-2-3-512' }),
    ],
    quiet: () => [
      win({ EventID: 4732, Channel: 'Security', TargetUserName: 'Printers', TargetSid: 'S-1-5-21-1-2-3-1200' }),
    ],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000013',
    file: 'windows/password-guessing.yml',
    fires: () => range(10).map(() => failedLogon('alice', '10.9.8.7')),
    // Ten failures, but for one account from two addresses: five each.
    quiet: () => range(10).map((i) => failedLogon('alice', i % 2 ? '10.9.8.7' : '10.9.8.6')),
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000014',
    file: 'windows/password-spraying.yml',
    fires: () => range(10).map((i) => failedLogon(`user${i}`, '10.9.8.7')),
    quiet: () => range(9).map((i) => failedLogon(`user${i}`, '10.9.8.7')),
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000015',
    file: 'windows/new-service.yml',
    fires: () => [
      win({
        EventID: 7045,
        Channel: 'System',
        SourceName: 'Service Control Manager',
        ServiceName: 'evil',
        ImagePath: 'C:\\Windows\\Temp\\evil.exe',
      }),
    ],
    quiet: () => [win({ EventID: 7036, Channel: 'System', SourceName: 'Service Control Manager', param1: 'Spooler' })],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000016',
    file: 'windows/new-service-security.yml',
    fires: () => [
      win({ EventID: 4697, Channel: 'Security', ServiceName: 'evil', ServiceFileName: 'C:\\Windows\\Temp\\evil.exe' }),
    ],
    quiet: () => [win({ EventID: 4697, Channel: 'System' })],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000017',
    file: 'windows/encoded-powershell.yml',
    fires: () => [
      sysmon(
        'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe',
        'powershell.exe -NoP -W Hidden -enc SQBFAFgA',
      ),
      sysmon('C:\\Program Files\\PowerShell\\7\\pwsh.exe', 'pwsh.exe /EncodedCommand SQBFAFgA'),
    ],
    quiet: () => [
      sysmon(
        'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe',
        'powershell.exe -ExecutionPolicy Bypass -File C:\\ops\\backup.ps1',
      ),
      sysmon('C:\\Windows\\System32\\cmd.exe', 'cmd.exe /c echo -enc'),
    ],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000020',
    file: 'web/scanner-user-agent.yml',
    fires: () => [
      web({ 'url.original': '/index.php?id=1', 'user_agent.original': 'sqlmap/1.7.2#stable (https://sqlmap.org)' }),
    ],
    quiet: () => [
      web({
        'url.original': '/',
        'user_agent.original': 'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0',
      }),
    ],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000021',
    file: 'web/sensitive-path-probe.yml',
    fires: () => [
      web({ 'url.original': '/.git/config', 'url.path': '/.git/config' }),
      web({ 'url.original': '/download?f=../../etc/passwd' }),
    ],
    quiet: () => [web({ 'url.original': '/static/app.js', 'url.path': '/static/app.js' })],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000022',
    file: 'web/proxy-suspicious-user-agent.yml',
    fires: () => [
      proxy('Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.19041.1'),
      proxy('python-requests/2.31.0'),
    ],
    quiet: () => [
      proxy(
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36',
      ),
    ],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000030',
    file: 'vigil/consumer-lag.yml',
    fires: async () => [...(await health(replicaLag(1500))), ...(await health(alertsBacklog(2000)))],
    quiet: async () => [...(await health(replicaLag(1000))), ...(await health(alertsBacklog(12)))],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000031',
    file: 'vigil/replication-lag.yml',
    fires: () => health(() => {}, { peerLags: async () => [{ name: 'site-b', lag: 5000, activeAgoMs: 90_000 }] }),
    // Behind by a few events for 20 s, and caught up.
    quiet: async () => [
      ...(await health(() => {}, { peerLags: async () => [{ name: 'site-b', lag: 30, activeAgoMs: 20_000 }] })),
      ...(await health(() => {}, { peerLags: async () => [{ name: 'site-b', lag: 0, activeAgoMs: 600_000 }] })),
    ],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000032',
    file: 'vigil/backup-stale.yml',
    fires: () => health(lastBackup(3 * DAY), { backupSchedule: parseSchedule('1d') }),
    // A day-old backup on a daily schedule; an old one without a schedule (backups on request only).
    quiet: async () => [
      ...(await health(lastBackup(DAY), { backupSchedule: parseSchedule('1d') })),
      ...(await health(lastBackup(30 * DAY))),
    ],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000033',
    file: 'vigil/disk-full.yml',
    fires: () => health(() => {}, { readDisk: () => ({ ratio: 0.86, free: 1e9 }) }),
    quiet: () => health(() => {}, { readDisk: () => ({ ratio: 0.8, free: 2e10 }) }),
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000034',
    file: 'vigil/spool-growing.yml',
    fires: () => health(() => {}, { spool: spool(40_000, 400_000) }),
    // Events spooled for 30 s (a short NATS restart), and an empty spool.
    quiet: async () => [
      ...(await health(() => {}, { spool: spool(5000, 30_000) })),
      ...(await health(() => {}, { spool: spool(0, 0) })),
    ],
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000035',
    file: 'vigil/lease-lost.yml',
    fires: () => health((m) => clusterMetrics(m).leaseLosses.inc()),
    // Cluster metrics registered, no loss: nothing to report.
    quiet: () => health((m) => clusterMetrics(m)),
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000036',
    file: 'vigil/failover.yml',
    fires: () => health((m) => clusterMetrics(m).failovers.inc(3)),
    quiet: () => health((m) => clusterMetrics(m).leaseLosses.inc()),
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000037',
    file: 'vigil/intake-overloaded.yml',
    fires: () => health(rejected('syslog-tcp', 'overloaded', 120)),
    // The sender's own fault: malformed JSON and an oversize line.
    quiet: () =>
      health((m) => {
        rejected('http', 'malformed_json', 3)(m);
        rejected('syslog-udp', 'oversize', 1)(m);
      }),
  },
  {
    rule: '7a1e5000-0000-4000-8000-000000000038',
    file: 'vigil/health-forgery.yml',
    fires: () => health(rejected('http', 'reserved_logsource', 2)),
    quiet: () => health(rejected('http', 'malformed_json', 2)),
  },
];

const set = compileRuleFolders([STARTER_RULES_DIR], {});

function alertsOf(events: NormalizedEvent[]): string[] {
  const correlators = new Map<string, CorrelationEngine>();
  return evaluateEvents(events, set, correlators, { maxCorrelationState: 100000 }).alerts.map((a) => a.rule.id);
}

test('every starter rule loads, with ATT&CK tags, and has a test case', () => {
  assert.deepEqual(set.rejected, []);
  const files = readdirSync(STARTER_RULES_DIR, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.yml'));
  assert.equal(set.rules.length, files.length);
  for (const file of files) {
    const text = readFileSync(join(STARTER_RULES_DIR, file), 'utf8');
    // Rules over Vigil's own health (vigil/) are about the platform, not an attack technique.
    if (file.startsWith('vigil')) assert.match(text, /- vigil\.health/, `${file} is tagged vigil.health`);
    else assert.match(text, /- attack\.t\d{4}/, `${file} has an ATT&CK technique tag`);
    // Base rules of correlations raise no alert of their own; their correlations are tested.
    if (/^level: informational$/m.test(text)) continue;
    assert.ok(
      cases.some((c) => c.file === file.replaceAll('\\', '/')),
      `${file} has a firing and a quiet case`,
    );
  }
});

for (const c of cases) {
  test(`starter rule ${c.file}: fires on its events, not on the quiet ones`, async () => {
    const fired = alertsOf(await c.fires());
    assert.ok(fired.includes(c.rule), `${c.file} fired: ${JSON.stringify(fired)}`);
    const quiet = alertsOf(await c.quiet());
    assert.ok(!quiet.includes(c.rule), `${c.file} stayed quiet: ${JSON.stringify(quiet)}`);
  });
}

test('base rules of correlations raise no alert of their own', () => {
  const fired = alertsOf([failedLogon('bob', '10.0.0.1'), sshFailure('10.0.0.1', 1)]);
  assert.deepEqual(fired, []);
});

test('health rules read only events of the vigil logsource: the same fields sent by a client fire nothing', async () => {
  const sent = await health(lastBackup(3 * DAY), { backupSchedule: parseSchedule('1d') });
  const backup = sent.find((e) => e.fields['vigil.health.check'] === 'backup');
  assert.ok(backup && alertsOf([backup]).includes('7a1e5000-0000-4000-8000-000000000032'));
  // What a client could send through the JSON intake: the event's own fields, no declared logsource.
  const forged = normalizer.fromJson(backup.fields, JSON.stringify(backup.fields), {
    source: 'http',
    receivedAt: base,
    tenant: 'default',
  });
  assert.deepEqual(alertsOf([forged]), []);
  assert.deepEqual(alertsOf([{ ...forged, logsource: { service: 'health' } }]), []);
});

test('the quiet health cases are events the node sends, below the thresholds', async () => {
  const quiet = await health(replicaLag(1000), { spool: spool(5000, 30_000) });
  const checks = quiet.map((e) => e.fields['vigil.health.check']).sort();
  assert.deepEqual(checks, ['consumer_lag', 'disk', 'spool']);
  assert.deepEqual(alertsOf(quiet), []);
});
