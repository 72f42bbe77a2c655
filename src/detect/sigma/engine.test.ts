import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EventLayout, FieldValue, Logsource, NormalizedEvent } from '../../lib/event.ts';
import { parseAuditd } from './compile.ts';
import { createSigmaEngine } from './engine.ts';
import { eventFromJson } from './fixtures.ts';
import { loadSigmaText } from './load.ts';

/** An evtx_dump record as the HTTP intake stores it (through the parser of src/parse/). */
const evtx = (record: object): NormalizedEvent => eventFromJson(JSON.stringify(record), 'evtx');

function ev(layout: EventLayout, fields: Record<string, FieldValue>, logsource?: Logsource, raw = ''): NormalizedEvent {
  return { id: 'e', timestamp: 0, ingested: 0, tenant: 't', source: 's', layout, logsource, raw, fields };
}

const RULES = loadSigmaText(
  `title: Whoami
id: 00000000-0000-0000-0000-00000000000a
logsource: { category: process_creation, product: windows }
detection:
    selection:
        Image|endswith: '\\whoami.exe'
    filter:
        ParentImage|endswith: '\\explorer.exe'
    condition: selection and not filter
---
title: Service installed
id: 00000000-0000-0000-0000-00000000000b
logsource: { product: windows, service: system }
detection:
    selection:
        Provider_Name: 'Service Control Manager'
        EventID: 7045
        ServiceName|contains: evil
    condition: selection
---
title: Log cleared
id: 00000000-0000-0000-0000-00000000000c
logsource: { product: windows, service: security }
detection:
    selection:
        EventID: 1102
        SubjectUserName: bob
    condition: selection
---
title: Registry key created
id: 00000000-0000-0000-0000-00000000000d
logsource: { category: registry_add, product: windows }
detection:
    selection:
        TargetObject|contains: '\\Run\\'
    condition: selection
---
title: Any Windows event with mimikatz
id: 00000000-0000-0000-0000-00000000000e
logsource: { product: windows }
detection:
    keywords: [ 'sekurlsa::' ]
    condition: keywords
---
title: Defender detection
id: 00000000-0000-0000-0000-00000000000f
logsource: { category: antivirus }
detection:
    selection:
        Signature|startswith: 'HackTool:'
    condition: selection
---
title: Defender exclusion added
id: 00000000-0000-0000-0000-000000000016
logsource: { product: windows, service: windefend }
detection:
    selection:
        EventID: 5007
        NewValue|contains: '\\Exclusions\\Paths\\'
    condition: selection
---
title: Cloudtrail delete trail
id: 00000000-0000-0000-0000-000000000010
logsource: { product: aws, service: cloudtrail }
detection:
    selection:
        eventSource: cloudtrail.amazonaws.com
        eventName: DeleteTrail
    condition: selection
---
title: Linux curl download
id: 00000000-0000-0000-0000-000000000011
logsource: { category: process_creation, product: linux }
detection:
    selection:
        CommandLine|contains: 'curl -o'
    condition: selection
---
title: Auditd execve of curl
id: 00000000-0000-0000-0000-000000000012
logsource: { product: linux, service: auditd }
detection:
    selection:
        type: EXECVE
        a0: curl
    condition: selection
---
title: Linux keyword
id: 00000000-0000-0000-0000-000000000013
logsource: { product: linux }
detection:
    keywords: [ 'segfault at' ]
    condition: keywords
---
title: Web path traversal
id: 00000000-0000-0000-0000-000000000014
logsource: { category: webserver }
detection:
    selection:
        cs-uri-query|contains: '../../'
        cs-method: GET
    condition: selection
---
title: Proxy user agent
id: 00000000-0000-0000-0000-000000000015
logsource: { category: proxy }
detection:
    selection:
        c-useragent|contains: 'sqlmap'
    condition: selection
`,
  'engine-test.yml',
);

describe('engine routing and field mapping', () => {
  assert.deepEqual(RULES.rejected, []);
  const engine = createSigmaEngine({ rules: RULES.rules });
  const titles = (e: NormalizedEvent): string[] => engine.match(e).map((m) => m.rule.title);

  it('windows layout: Sysmon 1 is process_creation', () => {
    const e = ev('windows', {
      Channel: 'Microsoft-Windows-Sysmon/Operational',
      EventID: 1,
      Image: 'C:\\Windows\\System32\\whoami.exe',
      ParentImage: 'C:\\Windows\\System32\\cmd.exe',
    });
    assert.deepEqual(titles(e), ['Whoami']);
  });

  it('windows layout: Security 4688 is process_creation with Image -> NewProcessName (any channel case)', () => {
    const e = ev('windows', {
      Channel: 'security',
      EventID: '4688',
      NewProcessName: 'C:\\Windows\\System32\\whoami.exe',
      ParentProcessName: 'C:\\Windows\\explorer.exe',
    });
    assert.deepEqual(titles(e), [], 'the filter reads ParentImage from ParentProcessName');
    e.fields.ParentProcessName = 'C:\\Windows\\cmd.exe';
    assert.deepEqual(titles(e), ['Whoami']);
  });

  it('rules sharing a field are each bound through their variant: fields are resolved once per variant, not shared across', () => {
    // The engine resolves a field once per (layout, category, variant) for all rules; Sysmon 1 and Security
    // 4688 name Image and ParentImage differently, and both rules must read the right key in each.
    const engine = createSigmaEngine({
      rules: loadSigmaText(
        `title: A
id: 00000000-0000-0000-0000-0000000000a1
logsource: { category: process_creation, product: windows }
detection:
    selection:
        Image|endswith: '\\whoami.exe'
    condition: selection
---
title: B
id: 00000000-0000-0000-0000-0000000000b1
logsource: { category: process_creation, product: windows }
detection:
    selection:
        Image|endswith: '\\whoami.exe'
        ParentImage|endswith: '\\cmd.exe'
    condition: selection
`,
        'shared.yml',
      ).rules,
    });
    const names = (e: NormalizedEvent) => engine.match(e).map((m) => m.rule.title);
    const sysmon = (parent: string) =>
      ev('windows', {
        Channel: 'Microsoft-Windows-Sysmon/Operational',
        EventID: 1,
        Image: 'C:\\Windows\\System32\\whoami.exe',
        ParentImage: parent,
      });
    const security = (parent: string) =>
      ev('windows', {
        Channel: 'Security',
        EventID: 4688,
        NewProcessName: 'C:\\Windows\\System32\\whoami.exe',
        ParentProcessName: parent,
      });
    for (const make of [sysmon, security, sysmon, security]) {
      assert.deepEqual(names(make('C:\\Windows\\System32\\cmd.exe')), ['A', 'B']);
      assert.deepEqual(names(make('C:\\Windows\\explorer.exe')), ['A']);
    }
    assert.deepEqual(
      names(ev('windows', { Channel: 'Security', EventID: 4689, NewProcessName: 'C:\\x\\whoami.exe' })),
      [],
      'another EventID of the channel reaches neither rule',
    );
  });

  it('a rule only sees events of its logsource', () => {
    const e = ev('windows', {
      Channel: 'Microsoft-Windows-Sysmon/Operational',
      EventID: 3,
      Image: 'C:\\Windows\\System32\\whoami.exe',
    });
    assert.deepEqual(titles(e), []);
  });

  it('windows layout: Provider_Name is SourceName in Mordor-style events', () => {
    const e = ev('windows', {
      Channel: 'System',
      EventID: 7045,
      SourceName: 'Service Control Manager',
      ServiceName: 'evilsvc',
    });
    assert.deepEqual(titles(e), ['Service installed']);
  });

  it('registry_add needs EventType CreateKey on Sysmon 12', () => {
    const base = { Channel: 'Microsoft-Windows-Sysmon/Operational', EventID: 12, TargetObject: 'HKLM\\x\\Run\\y' };
    assert.deepEqual(titles(ev('windows', { ...base, EventType: 'CreateKey' })), ['Registry key created']);
    assert.deepEqual(titles(ev('windows', { ...base, EventType: 'DeleteKey' })), []);
  });

  it('product-only rules see every Windows channel; keywords search every field', () => {
    const e = ev('windows', {
      Channel: 'Windows PowerShell',
      EventID: 800,
      Message: 'Invoke sekurlsa::logonpasswords',
    });
    assert.deepEqual(titles(e), ['Any Windows event with mimikatz']);
  });

  it('category antivirus (no product) is Defender events with Signature -> ThreatName', () => {
    const e = ev('windows', {
      Channel: 'Microsoft-Windows-Windows Defender/Operational',
      EventID: 1116,
      ThreatName: 'HackTool:Win32/Mimikatz',
    });
    assert.deepEqual(titles(e), ['Defender detection']);
  });

  it('evtx layout: EventData, System fields and UserData', () => {
    const sysmon = evtx({
      Event: {
        System: { EventID: 1, Channel: 'Microsoft-Windows-Sysmon/Operational' },
        EventData: { Image: 'C:\\Windows\\System32\\whoami.exe', ParentImage: 'C:\\x.exe' },
      },
    });
    assert.deepEqual(titles(sysmon), ['Whoami']);
    const scm = evtx({
      Event: {
        System: {
          EventID: 7045,
          Channel: 'System',
          Provider: { '#attributes': { Name: 'Service Control Manager' } },
        },
        EventData: { ServiceName: 'EvilService' },
      },
    });
    assert.deepEqual(titles(scm), ['Service installed']);
    const cleared = evtx({
      Event: {
        System: { EventID: 1102, Channel: 'Security' },
        UserData: { LogFileCleared: { SubjectUserName: 'bob' } },
      },
    });
    assert.deepEqual(titles(cleared), ['Log cleared']);
    // A field found under UserData is reported under its Sigma name.
    assert.deepEqual(engine.match(cleared)[0].matchedFields, { 'Event.System.EventID': 1102, SubjectUserName: 'bob' });
  });

  it('a Windows event without a channel is routed by the service it declares', () => {
    const e = ev('windows', { EventID: 1102, SubjectUserName: 'bob' }, { product: 'windows', service: 'security' });
    assert.deepEqual(titles(e), ['Log cleared']);
    assert.deepEqual(titles({ ...e, logsource: undefined }), []);
  });

  it('field names Sigma wrote without spaces match event names with spaces (Defender)', () => {
    const e = ev('evtx', {
      'Event.System.EventID': 5007,
      'Event.System.Channel': 'Microsoft-Windows-Windows Defender/Operational',
      'Event.EventData.New Value': 'HKLM\\SOFTWARE\\Microsoft\\Windows Defender\\Exclusions\\Paths\\C:\\x = 0x0',
    });
    assert.deepEqual(titles(e), ['Defender exclusion added']);
  });

  it('ecs layout: ECS names first, winlog.event_data as fallback', () => {
    const e = ev('ecs', {
      'winlog.channel': 'Microsoft-Windows-Sysmon/Operational',
      'event.code': '1',
      'process.executable': 'C:\\Windows\\System32\\whoami.exe',
      'process.parent.executable': 'C:\\Windows\\explorer.exe',
    });
    assert.deepEqual(titles(e), []);
    delete e.fields['process.parent.executable'];
    assert.deepEqual(titles(e), ['Whoami']);
    const fallback = ev('ecs', {
      'winlog.channel': 'System',
      'winlog.event_id': 7045,
      'winlog.provider_name': 'Service Control Manager',
      'winlog.event_data.ServiceName': 'evil',
    });
    assert.deepEqual(titles(fallback), ['Service installed']);
  });

  it('declared logsource routes events directly', () => {
    const e = ev(
      'json',
      { eventSource: 'cloudtrail.amazonaws.com', eventName: 'DeleteTrail' },
      { product: 'aws', service: 'cloudtrail' },
    );
    assert.deepEqual(titles(e), ['Cloudtrail delete trail']);
    assert.deepEqual(titles({ ...e, logsource: { product: 'gcp' } }), []);
  });

  it('syslog auditd EXECVE records are auditd and linux process_creation', () => {
    const e = ev('syslog', {
      'process.name': 'audisp-syslog',
      message: 'type=EXECVE msg=audit(1700000000.123:42): argc=3 a0="curl" a1="-o" a2="/tmp/x"',
    });
    assert.deepEqual(titles(e), ['Linux curl download', 'Auditd execve of curl']);
  });

  it('linux keyword rules fire once although several syslog sources cover them', () => {
    const e = ev('syslog', {
      'process.name': 'sshd',
      'log.syslog.facility.name': 'auth',
      message: 'sshd[1]: segfault at 0 ip',
    });
    assert.deepEqual(titles(e), ['Linux keyword']);
  });

  it('ecs web server and proxy events by event.dataset or observer.type', () => {
    const web = ev('ecs', {
      'event.dataset': 'nginx.access',
      'url.original': '/a/../../etc/passwd',
      'http.request.method': 'GET',
    });
    assert.deepEqual(titles(web), ['Web path traversal']);
    const proxy = ev('ecs', { 'observer.type': 'proxy', 'user_agent.original': 'sqlmap/1.5' });
    assert.deepEqual(titles(proxy), ['Proxy user agent']);
  });

  it('matchedFields holds the fields of the selections that matched, by event key', () => {
    const e = ev('evtx', {
      'Event.System.EventID': 7045,
      'Event.System.Channel': 'System',
      'Event.System.Provider.#attributes.Name': 'Service Control Manager',
      'Event.EventData.ServiceName': 'evil',
      'Event.EventData.ImagePath': 'c:\\x.exe',
    });
    const [m] = engine.match(e);
    assert.deepEqual(m.matchedFields, {
      'Event.System.Provider.#attributes.Name': 'Service Control Manager',
      'Event.System.EventID': 7045,
      'Event.EventData.ServiceName': 'evil',
    });
    assert.equal(m.rule.id, '00000000-0000-0000-0000-00000000000b');
    assert.equal(m.rule.level, 'medium');
    assert.equal(m.rule.file, 'engine-test.yml');
  });

  it('fieldValue reads a Sigma field through the layout mapping', () => {
    const e = ev('evtx', { 'Event.System.Computer': 'WS1', 'Event.EventData.User': 'bob' });
    assert.equal(engine.fieldValue(e, 'Computer'), 'WS1');
    assert.equal(engine.fieldValue(e, 'User'), 'bob');
    assert.equal(engine.fieldValue(ev('json', { a: 1 }), 'a'), 1);
  });

  it('Windows events are only evaluated against rules of their channel and EventID', () => {
    const before = engine.stats().evaluations;
    engine.match(ev('windows', { Channel: 'Security', EventID: 4624, SubjectUserName: 'bob' }));
    // Only the product-only keyword rule (every channel, no needle) is evaluated; the 1102 rule is not.
    assert.equal(engine.stats().evaluations - before, 1);
  });
});

describe('engine placeholders', () => {
  const text = `title: Admin logon
logsource: { product: windows, service: security }
detection:
    selection:
        EventID: 4624
        TargetUserName|expand: '%Administrators%'
    condition: selection
`;
  it('values given to the engine replace those given when loading', () => {
    const loaded = loadSigmaText(text, 'p.yml', { placeholders: { Administrators: ['adm_*'] } });
    const e = (user: string) => ev('windows', { Channel: 'Security', EventID: 4624, TargetUserName: user });
    const a = createSigmaEngine({ rules: loaded.rules });
    assert.equal(a.match(e('adm_bob')).length, 1);
    const b = createSigmaEngine({ rules: loaded.rules, placeholders: { Administrators: ['root'] } });
    assert.equal(b.match(e('adm_bob')).length, 0);
    assert.equal(b.match(e('ROOT')).length, 1);
    const c = createSigmaEngine({ rules: loaded.rules, placeholders: {} });
    assert.equal(c.rules.length, 0);
    assert.match(c.rejected[0].reason, /placeholder %Administrators%/);
  });
});

describe('field names that are members of Object.prototype', () => {
  it('a match reports the fields __proto__ and constructor it matched on', () => {
    const { rules } = loadSigmaText(
      'title: t\nlogsource: { product: test }\ndetection: { s: { __proto__: a, constructor: b }, condition: s }\n',
      'proto.yml',
    );
    const engine = createSigmaEngine({ rules });
    const fields: Record<string, FieldValue> = JSON.parse('{"__proto__": "a", "constructor": "b"}');
    const [m] = engine.match(ev('json', fields, { product: 'test' }));
    assert.ok(m);
    assert.deepEqual(Object.entries(m.matchedFields), [
      ['__proto__', 'a'],
      ['constructor', 'b'],
    ]);
  });

  it('auditd keys named __proto__, constructor or toString are read like any other', () => {
    assert.deepEqual(Object.entries(parseAuditd('type=USER_CMD constructor=a __proto__=b toString=c')), [
      ['type', 'USER_CMD'],
      ['constructor', 'a'],
      ['__proto__', 'b'],
      ['toString', 'c'],
    ]);
  });
});
