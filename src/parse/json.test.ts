import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import type { FieldValue } from '../lib/event.ts';
import { normalizeJson } from './json.ts';

const LIMITS = { maxDepth: 16, maxFields: 1000 };
const MORDOR_ZIP = '/work/shared/datasets/mordor-windows/execution/empire_launcher_vbs.zip';
const REGRESSION_FILE =
  '/work/shared/sigma/regression/rules/windows/process_creation/proc_creation_win_findstr_recon_everyone/47e4bab7-c626-47dc-967b-255608c9a920.json';

function assertFields(fields: Record<string, FieldValue>, expected: Record<string, FieldValue | undefined>): void {
  for (const [k, v] of Object.entries(expected)) {
    if (v === undefined) assert.equal(Object.hasOwn(fields, k), false, `${k} should be absent`);
    else assert.deepEqual(fields[k], v, k);
  }
}

/** Reads the first line of a Mordor dataset that matches `pattern`, straight from the zip. */
function mordorLine(pattern: string): string {
  return execFileSync('sh', ['-c', `unzip -p '${MORDOR_ZIP}' | grep -m1 -e '${pattern}'`], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
}

describe('layouts from real samples', () => {
  test('a Mordor Sysmon event is the flat windows layout, originals kept and ECS added', {
    skip: !existsSync(MORDOR_ZIP),
  }, () => {
    const original = JSON.parse(mordorLine('"EventID":1,'));
    const n = normalizeJson(original, LIMITS);
    assert.equal(n.layout, 'windows');
    assert.equal(n.timestamp, Date.parse('2020-09-04T20:09:55.953Z'));
    assertFields(n.fields, {
      EventID: 1,
      Image: 'C:\\Windows\\System32\\wscript.exe',
      host: 'wec.internal.cloudapp.net',
      'event.code': '1',
      'winlog.event_id': '1',
      'winlog.channel': 'Microsoft-Windows-Sysmon/Operational',
      'winlog.provider_name': 'Microsoft-Windows-Sysmon',
      'winlog.record_id': '251079',
      'host.name': 'WORKSTATION5.theshire.local',
      'event.category': ['process'],
      'event.type': ['start'],
      'event.action': 'process-created',
      'process.executable': 'C:\\Windows\\System32\\wscript.exe',
      'process.name': 'wscript.exe',
      'process.pid': 2440,
      'process.parent.executable': 'C:\\Windows\\explorer.exe',
      'user.name': 'pgustavo',
      'user.domain': 'THESHIRE',
      message: original.Message,
      '@timestamp': undefined,
    });
    for (const [k, v] of Object.entries(original)) {
      if (k !== '@timestamp' && (v === null || typeof v !== 'object')) assert.deepEqual(n.fields[k], v, k);
    }
    assert.deepEqual(n.record, {
      computer: 'WORKSTATION5.theshire.local',
      channel: 'Microsoft-Windows-Sysmon/Operational',
      recordId: '251079',
    });
  });

  test('a Sigma regression evtx_dump event is the evtx layout', { skip: !existsSync(REGRESSION_FILE) }, () => {
    const first = readFileSync(REGRESSION_FILE, 'utf8').split(/\n(?=\{)/)[0];
    const n = normalizeJson(JSON.parse(first), LIMITS);
    assert.equal(n.layout, 'evtx');
    assert.equal(n.timestamp, Date.parse('2025-10-25T17:47:01.671Z'));
    assertFields(n.fields, {
      'Event.System.EventID': 1,
      'Event.EventData.Image': 'C:\\Windows\\System32\\icacls.exe',
      'Event.System.Correlation': null,
      'event.code': '1',
      'winlog.channel': 'Microsoft-Windows-Sysmon/Operational',
      'winlog.provider_name': 'Microsoft-Windows-Sysmon',
      'winlog.record_id': '12249325',
      'host.name': 'ar-win-dc.attackrange.local',
      'process.executable': 'C:\\Windows\\System32\\icacls.exe',
      'process.command_line': 'icacls  "C:\\Program Files\\*"',
      'process.parent.executable': 'C:\\Windows\\System32\\cmd.exe',
      'process.parent.command_line': '"C:\\Windows\\system32\\cmd.exe"',
      'user.name': 'Administrator',
      'user.domain': 'ATTACKRANGE',
      'process.hash.sha256': '054355c415f5686da598011065e6fdf6bed35c5fdda81bc5bf22b9d093cc30e2',
    });
  });
});

/** Flat Windows events as the Mordor datasets hold them (trimmed to the fields that matter). */
function flat(
  eventId: number,
  channel: string,
  source: string,
  data: Record<string, unknown>,
): Record<string, unknown> {
  return {
    EventID: eventId,
    Channel: channel,
    SourceName: source,
    Hostname: 'WS1.corp.local',
    RecordNumber: 42,
    '@timestamp': '2020-09-04T20:09:40.845Z',
    ...data,
  };
}
const SECURITY = ['Security', 'Microsoft-Windows-Security-Auditing'] as const;
const SYSMON = ['Microsoft-Windows-Sysmon/Operational', 'Microsoft-Windows-Sysmon'] as const;
const POWERSHELL = ['Microsoft-Windows-PowerShell/Operational', 'Microsoft-Windows-PowerShell'] as const;

describe('ECS mappings of well-known Windows events', () => {
  const cases: { name: string; event: Record<string, unknown>; expected: Record<string, FieldValue | undefined> }[] = [
    {
      name: '4624 logon: the target user, source address, success',
      event: flat(4624, ...SECURITY, {
        TargetUserName: 'alice',
        TargetDomainName: 'CORP',
        SubjectUserName: '-',
        IpAddress: '10.0.0.5',
        IpPort: '51000',
        ProcessName: '-',
        ProcessId: '0x0',
        LogonType: '3',
      }),
      expected: {
        'event.category': ['authentication'],
        'event.type': ['start'],
        'event.action': 'logged-in',
        'event.outcome': 'success',
        'user.name': 'alice',
        'user.domain': 'CORP',
        'source.ip': '10.0.0.5',
        'source.port': 51000,
        'process.executable': undefined,
        'process.pid': undefined,
      },
    },
    {
      name: '4625 failed logon: failure outcome, "-" values left out',
      event: flat(4625, ...SECURITY, { TargetUserName: 'bob', IpAddress: '-', IpPort: '-' }),
      expected: {
        'event.outcome': 'failure',
        'event.action': 'logon-failed',
        'user.name': 'bob',
        'source.ip': undefined,
      },
    },
    {
      name: '4634 logoff',
      event: flat(4634, ...SECURITY, { TargetUserName: 'alice' }),
      expected: { 'event.type': ['end'], 'event.action': 'logged-out', 'user.name': 'alice' },
    },
    {
      name: '4648 explicit credentials: the actor and the target user, hex process id',
      event: flat(4648, ...SECURITY, {
        SubjectUserName: 'svc',
        SubjectDomainName: 'CORP',
        TargetUserName: 'admin',
        ProcessName: 'C:\\Windows\\System32\\svchost.exe',
        ProcessId: '0x5b4',
      }),
      expected: {
        'event.action': 'logged-in-explicit',
        'user.name': 'svc',
        'user.target.name': 'admin',
        'process.name': 'svchost.exe',
        'process.pid': 0x5b4,
      },
    },
    {
      name: '4672 special privileges',
      event: flat(4672, ...SECURITY, { SubjectUserName: 'admin', SubjectDomainName: 'CORP' }),
      expected: { 'event.category': ['iam'], 'event.action': 'logged-in-special', 'user.name': 'admin' },
    },
    {
      name: '4688 process creation: new process and its creator',
      event: flat(4688, ...SECURITY, {
        NewProcessName: 'C:\\Windows\\System32\\cmd.exe',
        NewProcessId: '0x7d8',
        CommandLine: 'cmd /c whoami',
        ParentProcessName: 'C:\\Windows\\explorer.exe',
        ProcessId: '0x2b8',
        SubjectUserName: 'alice',
        SubjectDomainName: 'CORP',
      }),
      expected: {
        'event.category': ['process'],
        'event.action': 'created-process',
        'process.executable': 'C:\\Windows\\System32\\cmd.exe',
        'process.name': 'cmd.exe',
        'process.pid': 0x7d8,
        'process.command_line': 'cmd /c whoami',
        'process.parent.executable': 'C:\\Windows\\explorer.exe',
        'process.parent.pid': 0x2b8,
        'user.name': 'alice',
      },
    },
    {
      name: '4720 user created',
      event: flat(4720, ...SECURITY, { SubjectUserName: 'admin', TargetUserName: 'backdoor', TargetDomainName: 'WS6' }),
      expected: { 'event.type': ['user', 'creation'], 'user.name': 'admin', 'user.target.name': 'backdoor' },
    },
    {
      name: '4732 member added to a group',
      event: flat(4732, ...SECURITY, {
        SubjectUserName: 'admin',
        MemberName: 'CN=bob,DC=corp',
        TargetUserName: 'Administrators',
      }),
      expected: {
        'event.action': 'added-member-to-group',
        'group.name': 'Administrators',
        'user.target.name': 'CN=bob,DC=corp',
      },
    },
    {
      name: 'Sysmon 3 network connection',
      event: flat(3, ...SYSMON, {
        Image: 'C:\\x\\beacon.exe',
        ProcessId: '1000',
        SourceIp: '10.0.0.5',
        SourcePort: '50000',
        DestinationIp: '93.184.216.34',
        DestinationPort: '443',
        Protocol: 'tcp',
        Initiated: 'true',
      }),
      expected: {
        'event.category': ['network'],
        'process.name': 'beacon.exe',
        'source.ip': '10.0.0.5',
        'source.port': 50000,
        'destination.ip': '93.184.216.34',
        'destination.port': 443,
        'network.direction': 'egress',
      },
    },
    {
      name: 'Sysmon 7 image loaded: the DLL is file.path',
      event: flat(7, ...SYSMON, { Image: 'C:\\a.exe', ImageLoaded: 'C:\\Windows\\System32\\evil.dll' }),
      expected: {
        'event.action': 'image-loaded',
        'file.path': 'C:\\Windows\\System32\\evil.dll',
        'file.name': 'evil.dll',
      },
    },
    {
      name: 'Sysmon 8 and 10: the source process is the process',
      event: flat(10, ...SYSMON, {
        SourceImage: 'C:\\m\\mimikatz.exe',
        SourceProcessId: 77,
        TargetImage: 'C:\\Windows\\system32\\lsass.exe',
        SourceUser: 'CORP\\eve',
      }),
      expected: { 'event.type': ['access'], 'process.name': 'mimikatz.exe', 'process.pid': 77, 'user.name': 'eve' },
    },
    {
      name: 'Sysmon 11 file created',
      event: flat(11, ...SYSMON, { Image: 'C:\\a.exe', TargetFilename: 'C:\\Users\\x\\run.ps1' }),
      expected: { 'event.category': ['file'], 'file.path': 'C:\\Users\\x\\run.ps1', 'file.name': 'run.ps1' },
    },
    {
      name: 'Sysmon 13 registry value set',
      event: flat(13, ...SYSMON, { TargetObject: 'HKLM\\Software\\Run\\evil', Details: 'C:\\evil.exe' }),
      expected: {
        'event.category': ['registry'],
        'registry.path': 'HKLM\\Software\\Run\\evil',
        'registry.value': 'evil',
        'registry.data.strings': ['C:\\evil.exe'],
      },
    },
    {
      name: 'Sysmon 22 DNS query',
      event: flat(22, ...SYSMON, { Image: 'C:\\a.exe', QueryName: 'evil.example' }),
      expected: { 'event.action': 'dns-query', 'dns.question.name': 'evil.example' },
    },
    {
      name: 'PowerShell 4104 script block',
      event: flat(4104, ...POWERSHELL, { ScriptBlockText: 'IEX (New-Object Net.WebClient)', Path: 'C:\\s.ps1' }),
      expected: {
        'event.action': 'script-block-logged',
        'powershell.file.script_block_text': 'IEX (New-Object Net.WebClient)',
        'file.path': 'C:\\s.ps1',
      },
    },
    {
      name: 'PowerShell 4103 pipeline: host application and user from ContextInfo',
      event: flat(4103, ...POWERSHELL, {
        ContextInfo:
          '        Severity = Informational\r\n        Host Application = powershell.exe -enc AAAA\r\n        User = CORP\\alice\r\n',
      }),
      expected: {
        'event.action': 'pipeline-executed',
        'process.command_line': 'powershell.exe -enc AAAA',
        'user.name': 'alice',
        'user.domain': 'CORP',
      },
    },
    {
      name: 'an unknown event id gets the winlog fields but no category',
      event: flat(9999, ...SECURITY, {}),
      expected: { 'event.code': '9999', 'winlog.record_id': '42', 'event.category': undefined },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const n = normalizeJson(c.event, LIMITS);
      assert.equal(n.layout, 'windows');
      assertFields(n.fields, c.expected);
    });
  }

  test('evtx EventID given as {#text} (with Qualifiers) is read too', () => {
    const n = normalizeJson(
      {
        Event: {
          System: {
            EventID: { '#attributes': { Qualifiers: 0 }, '#text': 4625 },
            Channel: 'Security',
            Computer: 'DC1',
            EventRecordID: 7,
            Provider: { '#attributes': { Name: 'Microsoft-Windows-Security-Auditing' } },
            TimeCreated: { '#attributes': { SystemTime: '2024-05-01T00:00:00.1234567Z' } },
          },
          EventData: { TargetUserName: 'mallory', IpAddress: '192.0.2.1' },
        },
      },
      LIMITS,
    );
    assert.equal(n.layout, 'evtx');
    assert.equal(n.timestamp, Date.parse('2024-05-01T00:00:00.123Z'));
    assertFields(n.fields, {
      'Event.System.EventID.#text': 4625,
      'event.code': '4625',
      'event.outcome': 'failure',
      'user.name': 'mallory',
      'source.ip': '192.0.2.1',
      'host.name': 'DC1',
    });
  });
});

describe('ECS and generic JSON', () => {
  test('ECS input: the nested and the dotted spelling give the same fields', () => {
    const nested = normalizeJson(
      {
        '@timestamp': '2024-01-01T00:00:00Z',
        event: { kind: 'event', code: '7' },
        host: { name: 'h1' },
        ecs: { version: '8.11.0' },
      },
      LIMITS,
    );
    const dotted = normalizeJson(
      {
        '@timestamp': '2024-01-01T00:00:00Z',
        'event.kind': 'event',
        'event.code': '7',
        'host.name': 'h1',
        'ecs.version': '8.11.0',
      },
      LIMITS,
    );
    assert.equal(nested.layout, 'ecs');
    assert.equal(dotted.layout, 'ecs');
    assert.deepEqual(nested.fields, dotted.fields);
    assert.equal(nested.timestamp, Date.UTC(2024, 0, 1));
  });

  test('ECS input: event.id, event.original and event.ingested are not fields', () => {
    const n = normalizeJson(
      {
        '@timestamp': '2024-01-01T00:00:00Z',
        event: { id: 'abc', original: 'x', ingested: '2024-01-01T00:00:00Z', kind: 'event' },
      },
      LIMITS,
    );
    assert.equal(n.eventId, 'abc');
    assert.deepEqual(n.fields, { 'event.kind': 'event' });
  });

  test('Winlogbeat ECS output gets a record identity for replay-stable ids', () => {
    const n = normalizeJson(
      {
        '@timestamp': '2024-01-01T00:00:00Z',
        winlog: { record_id: 9, channel: 'Security', computer_name: 'DC1' },
        event: { code: '4624' },
      },
      LIMITS,
    );
    assert.deepEqual(n.record, { computer: 'DC1', channel: 'Security', recordId: '9' });
  });

  test('generic JSON: host.name from a host string; message stays as sent', () => {
    const n = normalizeJson({ time: '2024-01-01T00:00:00Z', host: 'app-3', message: 'hello', level: 'info' }, LIMITS);
    assert.equal(n.layout, 'json');
    assertFields(n.fields, { host: 'app-3', 'host.name': 'app-3', message: 'hello', level: 'info' });
    assert.equal(n.timestamp, Date.UTC(2024, 0, 1));
  });

  test('@timestamp without ECS fields is generic JSON', () => {
    assert.equal(normalizeJson({ '@timestamp': '2024-01-01T00:00:00Z', msg: 'x' }, LIMITS).layout, 'json');
  });
});

describe('flattening', () => {
  test('nested objects become dotted keys; arrays of scalars stay arrays; arrays with objects become JSON text', () => {
    const n = normalizeJson(
      {
        a: { b: { c: 1 } },
        tags: ['x', 'y'],
        mixed: [1, 'a', null, true],
        objs: [{ k: 1 }],
        nested: [[1]],
        empty: {},
        nil: null,
      },
      LIMITS,
    );
    assert.deepEqual(n.fields, {
      'a.b.c': 1,
      tags: ['x', 'y'],
      mixed: [1, 'a', null, true],
      objs: '[{"k":1}]',
      nested: '[[1]]',
      nil: null,
    });
  });

  test('an ECS field never overwrites an original field of the same name', () => {
    const n = normalizeJson(flat(1, ...SYSMON, { Image: 'C:\\a.exe', 'process.name': 'as-sent' }), LIMITS);
    assert.equal(n.fields['process.name'], 'as-sent');
    assert.equal(n.fields['process.executable'], 'C:\\a.exe');
  });

  test('an original scalar that is a prefix of an ECS key is kept beside it', () => {
    const n = normalizeJson(flat(1, ...SYSMON, { host: 'collector' }), LIMITS);
    assert.equal(n.fields.host, 'collector');
    assert.equal(n.fields['host.name'], 'WS1.corp.local');
  });

  test('a "__proto__" key is an ordinary field, not a prototype', () => {
    const n = normalizeJson(JSON.parse('{"__proto__": {"polluted": 1}, "a": 1}'), LIMITS);
    assert.equal(n.fields['__proto__.polluted'], 1);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  test('nesting deeper than max_depth is kept as JSON text, with an error', () => {
    const n = normalizeJson({ a: { b: { c: { d: 1 } } }, ok: 1 }, { maxDepth: 2, maxFields: 1000 });
    assert.deepEqual(n.fields, { 'a.b': '{"c":{"d":1}}', ok: 1 });
    assert.match(n.error ?? '', /field "a.b" nests deeper than max_depth 2/);
  });

  test('more than max_fields fields: the first ones are kept, with an error; ECS fields do not count', () => {
    const input: Record<string, unknown> = flat(1, ...SYSMON, { Image: 'C:\\a.exe' });
    for (let i = 0; i < 50; i++) input[`f${i}`] = i;
    const n = normalizeJson(input, { maxDepth: 16, maxFields: 10 });
    assert.match(n.error ?? '', /more than max_fields 10 fields/);
    assert.equal(Object.keys(n.fields).filter((k) => /^f\d+$/.test(k) || k in input).length, 10);
    assert.equal(n.fields['event.code'], '1');
    assert.equal(n.timestamp, Date.parse('2020-09-04T20:09:40.845Z'));
  });

  test('deep input does not overflow the stack', () => {
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 100000; i++) deep = { d: deep };
    const n = normalizeJson(deep, LIMITS);
    assert.ok(n.error);
  });
});

describe('event time', () => {
  const cases: { name: string; event: Record<string, unknown>; expected: number | undefined }[] = [
    {
      name: '@timestamp wins',
      event: { '@timestamp': '2024-01-01T00:00:00Z', time: '2000-01-01T00:00:00Z' },
      expected: Date.UTC(2024, 0, 1),
    },
    {
      name: 'a time without a zone is UTC',
      event: { EventTime: '2020-09-04 16:09:38' },
      expected: Date.UTC(2020, 8, 4, 16, 9, 38),
    },
    { name: 'an offset is applied', event: { timestamp: '2024-01-01T01:00:00+01:00' }, expected: Date.UTC(2024, 0, 1) },
    { name: 'epoch seconds', event: { ts: 1704067200.5 }, expected: Date.UTC(2024, 0, 1) + 500 },
    { name: 'epoch milliseconds', event: { timestamp: 1704067200000 }, expected: Date.UTC(2024, 0, 1) },
    { name: 'epoch nanoseconds as text', event: { time: '1704067200000000000' }, expected: Date.UTC(2024, 0, 1) },
    {
      name: 'TimeCreated of flat newer Mordor data',
      event: { TimeCreated: '2023-07-19T09:02:17.950Z' },
      expected: Date.UTC(2023, 6, 19, 9, 2, 17, 950),
    },
    { name: 'no time field', event: { a: 1 }, expected: undefined },
    { name: 'a small number is a duration, not a time', event: { time: 250 }, expected: undefined },
    { name: 'an impossible date', event: { timestamp: '2024-02-30T00:00:00Z' }, expected: undefined },
    {
      name: 'the last millisecond of the last day the store partitions by',
      event: { '@timestamp': '2149-06-06T23:59:59.999Z' },
      expected: Date.UTC(2149, 5, 6, 23, 59, 59, 999),
    },
    { name: 'a time past it is no time (ISO)', event: { '@timestamp': '2200-01-01T00:00:00Z' }, expected: undefined },
    { name: 'a time past it is no time (epoch ms)', event: { timestamp: Date.UTC(2149, 5, 7) }, expected: undefined },
    {
      name: 'text without a zone that is not ISO is refused',
      event: { time: 'Jan 1 2024 10:00' },
      expected: undefined,
    },
  ];
  for (const c of cases) test(c.name, () => assert.equal(normalizeJson(c.event, LIMITS).timestamp, c.expected));

  test('an unreadable @timestamp is kept as vigil.original_timestamp and the next time field is used', () => {
    const n = normalizeJson({ '@timestamp': 'yesterday', time: '2024-01-01T00:00:00Z' }, LIMITS);
    assert.equal(n.fields['vigil.original_timestamp'], 'yesterday');
    assert.equal(n.timestamp, Date.UTC(2024, 0, 1));
  });
});
