import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FieldValue, NormalizedEvent } from '../../lib/event.ts';
import { createSigmaEngine } from './engine.ts';
import { loadSigmaText } from './load.ts';

/** A rule on the declared logsource `product: test` whose detection is `selection` (indented YAML). */
function rule(selection: string, condition = 'selection'): string {
  return `title: t
id: 00000000-0000-0000-0000-000000000001
logsource:
    product: test
detection:
${selection
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
    condition: ${condition}
`;
}

function event(fields: Record<string, FieldValue>, raw = ''): NormalizedEvent {
  return {
    id: 'e',
    timestamp: Date.parse('2024-03-10T22:15:00Z'),
    ingested: 0,
    tenant: 't',
    source: 'test',
    layout: 'json',
    logsource: { product: 'test' },
    raw,
    fields,
  };
}

function matcher(text: string, placeholders?: Record<string, string[]>): (f: Record<string, FieldValue>) => boolean {
  const loaded = loadSigmaText(text, 'test.yml', { placeholders });
  assert.deepEqual(loaded.rejected, []);
  const engine = createSigmaEngine({ rules: loaded.rules });
  return (f) => engine.match(event(f)).length > 0;
}

interface Case {
  name: string;
  selection: string;
  yes: Record<string, FieldValue>[];
  no: Record<string, FieldValue>[];
  placeholders?: Record<string, string[]>;
}

const cases: Case[] = [
  {
    name: 'plain value: case-insensitive equality',
    selection: "selection:\n    Image: 'C:\\Windows\\System32\\whoami.exe'",
    yes: [{ Image: 'c:\\windows\\system32\\WHOAMI.exe' }],
    no: [{ Image: 'C:\\Windows\\System32\\whoami.exe.bak' }, {}],
  },
  {
    name: 'numbers equal numeric strings and other numerals',
    selection: 'selection:\n    EventID: 4688',
    yes: [{ EventID: 4688 }, { EventID: '4688' }, { EventID: '0x1250' }],
    no: [{ EventID: 46880 }, { EventID: '' }],
  },
  {
    name: 'a quoted number is text, matched against numbers too',
    selection: "selection:\n    LogonType: '3'",
    yes: [{ LogonType: 3 }, { LogonType: '3' }],
    no: [{ LogonType: 33 }],
  },
  {
    name: 'hex numbers keep their written form',
    selection: 'selection:\n    TicketEncryptionType: 0x17',
    yes: [{ TicketEncryptionType: '0x17' }, { TicketEncryptionType: 23 }],
    no: [{ TicketEncryptionType: '0x18' }],
  },
  {
    name: 'booleans',
    selection: 'selection:\n    Initiated: true',
    yes: [{ Initiated: true }, { Initiated: 'true' }],
    no: [{ Initiated: false }],
  },
  {
    name: 'list of values: OR',
    selection: 'selection:\n    Image|endswith:\n        - \\a.exe\n        - \\b.exe',
    yes: [{ Image: 'c:\\b.exe' }],
    no: [{ Image: 'c:\\c.exe' }],
  },
  {
    name: 'array field values match when one element matches',
    selection: 'selection:\n    tags: evil',
    yes: [{ tags: ['good', 'EVIL'] }],
    no: [{ tags: ['good'] }],
  },
  {
    name: 'contains',
    selection: "selection:\n    CommandLine|contains: ' -enc '",
    yes: [{ CommandLine: 'powershell -ENC abc' }],
    no: [{ CommandLine: 'powershell -encoded' }],
  },
  {
    name: 'startswith',
    selection: "selection:\n    Image|startswith: 'C:\\Users\\'",
    yes: [{ Image: 'c:\\users\\bob\\x.exe' }],
    no: [{ Image: 'd:\\c:\\users\\' }],
  },
  {
    name: 'endswith',
    selection: "selection:\n    Image|endswith: '\\cmd.exe'",
    yes: [{ Image: 'C:\\Windows\\cmd.exe' }],
    no: [{ Image: 'C:\\Windows\\xcmd.exe.' }],
  },
  {
    name: 'contains keeps inner wildcards',
    selection: "selection:\n    CommandLine|contains: 'net*user'",
    yes: [{ CommandLine: 'cmd /c net  localgroup user' }],
    no: [{ CommandLine: 'user net' }],
  },
  {
    name: 'all: every value',
    selection: 'selection:\n    CommandLine|contains|all:\n        - -nop\n        - -w hidden',
    yes: [{ CommandLine: 'powershell -w hidden -nop' }],
    no: [{ CommandLine: 'powershell -nop' }],
  },
  {
    name: 'windash: dash variants at word start',
    selection: "selection:\n    CommandLine|windash|contains: ' -urlcache '",
    yes: [
      { CommandLine: 'certutil /urlcache -f' },
      { CommandLine: 'certutil \u2013urlcache x' },
      { CommandLine: 'certutil -urlcache x' },
    ],
    no: [{ CommandLine: 'certutil +urlcache x' }],
  },
  {
    name: 're: case-sensitive search',
    selection: "selection:\n    CommandLine|re: 'Invoke-[A-Z]\\w+'",
    yes: [{ CommandLine: 'x Invoke-Mimikatz y' }],
    no: [{ CommandLine: 'invoke-mimikatz' }],
  },
  {
    name: 're|i: case-insensitive',
    selection: "selection:\n    CommandLine|re|i: 'invoke-[a-z]+'",
    yes: [{ CommandLine: 'INVOKE-MIMIKATZ' }],
    no: [{ CommandLine: 'invoke-' }],
  },
  {
    name: 're|m: ^ and $ per line',
    selection: "selection:\n    Data|re|m: '^evil$'",
    yes: [{ Data: 'a\nevil\nb' }],
    no: [{ Data: 'a evil b' }],
  },
  {
    name: 're|s: dot matches newline',
    selection: "selection:\n    Data|re|s: 'a.b'",
    yes: [{ Data: 'a\nb' }],
    no: [{ Data: 'ab' }],
  },
  {
    name: 're with an inline (?i) prefix',
    selection: "selection:\n    CommandLine|re: '(?i)evil'",
    yes: [{ CommandLine: 'EVIL' }],
    no: [{ CommandLine: 'good' }],
  },
  {
    name: 'base64: the value encoded',
    selection: "selection:\n    Payload|base64|contains: 'http://'",
    yes: [{ Payload: 'xx aHR0cDovLw== yy' }],
    no: [{ Payload: 'http://' }, { Payload: 'AHR0CDOVLW==' }],
  },
  {
    name: 'base64offset: the value anywhere in a base64 string',
    selection: "selection:\n    CommandLine|base64offset|contains: 'foobar'",
    yes: [{ CommandLine: 'ps -enc Zm9vYmFy' }, { CommandLine: 'IGZvb2Jhcg==' }, { CommandLine: 'ICBmb29iYXI=' }],
    no: [{ CommandLine: 'foobar' }],
  },
  {
    name: 'utf16le|base64offset: PowerShell -EncodedCommand content',
    selection: "selection:\n    CommandLine|utf16le|base64offset|contains: 'Invoke'",
    yes: [{ CommandLine: `powershell -enc ${Buffer.from('Invoke-Expression', 'utf16le').toString('base64')}` }],
    no: [{ CommandLine: `powershell -enc ${Buffer.from('Invoke', 'utf8').toString('base64')}` }],
  },
  {
    name: 'wide is utf16le',
    selection: "selection:\n    CommandLine|wide|base64offset|contains: 'ping'",
    yes: [{ CommandLine: Buffer.from('xping', 'utf16le').toString('base64') }],
    no: [{ CommandLine: Buffer.from('xping', 'utf8').toString('base64') }],
  },
  {
    name: 'utf16be and utf16 (with byte order mark)',
    selection: "selection:\n    - Blob|utf16be|base64: 'ab'\n    - Blob|utf16|base64: 'ab'",
    yes: [
      { Blob: Buffer.from([0, 0x61, 0, 0x62]).toString('base64') },
      { Blob: Buffer.from([0xff, 0xfe, 0x61, 0, 0x62, 0]).toString('base64') },
    ],
    no: [{ Blob: Buffer.from('ab').toString('base64') }],
  },
  {
    name: 'cidr: IPv4',
    selection: 'selection:\n    DestinationIp|cidr:\n        - 10.0.0.0/8\n        - 192.168.0.0/16',
    yes: [{ DestinationIp: '10.20.30.40' }, { DestinationIp: '192.168.1.1' }],
    no: [{ DestinationIp: '172.16.0.1' }, { DestinationIp: 'not an ip' }],
  },
  {
    name: 'cidr: IPv6',
    selection: "selection:\n    DestinationIp|cidr: 'fe80::/10'",
    yes: [{ DestinationIp: 'fe80::1' }],
    no: [{ DestinationIp: '2001:db8::1' }],
  },
  {
    name: 'gt',
    selection: 'selection:\n    Size|gt: 100',
    yes: [{ Size: 101 }, { Size: '1000' }],
    no: [{ Size: 100 }, { Size: 'big' }, {}],
  },
  {
    name: 'gte',
    selection: 'selection:\n    Size|gte: 100',
    yes: [{ Size: 100 }],
    no: [{ Size: 99.5 }],
  },
  {
    name: 'lt',
    selection: 'selection:\n    Size|lt: 10',
    yes: [{ Size: 9 }, { Size: -1 }],
    no: [{ Size: 10 }],
  },
  {
    name: 'lte',
    selection: 'selection:\n    Size|lte: 10',
    yes: [{ Size: '10' }],
    no: [{ Size: 11 }],
  },
  {
    name: 'neq: different from every value',
    selection: "selection:\n    User|neq:\n        - SYSTEM\n        - 'LOCAL SERVICE'",
    yes: [{ User: 'bob' }, {}],
    no: [{ User: 'system' }, { User: 'local service' }],
  },
  {
    name: 'exists: true',
    selection: 'selection:\n    PasswordLastSet|exists: true',
    yes: [{ PasswordLastSet: '' }, { PasswordLastSet: null }],
    no: [{}],
  },
  {
    name: 'exists: false',
    selection: 'selection:\n    PasswordLastSet|exists: false',
    yes: [{}],
    no: [{ PasswordLastSet: 'x' }],
  },
  {
    name: 'cased: case-sensitive',
    selection: "selection:\n    CommandLine|cased|contains: 'AbC'",
    yes: [{ CommandLine: 'xAbCx' }],
    no: [{ CommandLine: 'xabcx' }],
  },
  {
    name: 'fieldref: equals another field',
    selection: 'selection:\n    TargetFilename|fieldref: Image',
    yes: [{ TargetFilename: 'C:\\a.exe', Image: 'c:\\A.exe' }],
    no: [{ TargetFilename: 'C:\\a.exe', Image: 'C:\\b.exe' }, { TargetFilename: 'C:\\a.exe' }],
  },
  {
    name: 'fieldref|neq',
    selection: 'selection:\n    User|fieldref|neq: ParentUser',
    yes: [{ User: 'a', ParentUser: 'b' }],
    no: [{ User: 'a', ParentUser: 'A' }],
  },
  {
    name: 'fieldref|startswith',
    selection: 'selection:\n    CommandLine|fieldref|startswith: Image',
    yes: [{ CommandLine: 'c:\\x.exe /q', Image: 'C:\\x.exe' }],
    no: [{ CommandLine: 'run c:\\x.exe', Image: 'C:\\x.exe' }],
  },
  {
    name: 'expand: placeholder values',
    selection: "selection:\n    Workstation|expand: '%Workstations%'",
    placeholders: { Workstations: ['WS-*', 'LAPTOP1'] },
    yes: [{ Workstation: 'ws-042' }, { Workstation: 'laptop1' }],
    no: [{ Workstation: 'srv1' }, { Workstation: '%Workstations%' }],
  },
  {
    name: 'expand: escaped percent and text around the placeholder',
    selection: "selection:\n    Path|expand: '\\%plain%dir%\\x'",
    placeholders: { dir: ['a', 'b'] },
    yes: [{ Path: '%plainb\\x' }],
    no: [{ Path: 'plainb\\x' }],
  },
  {
    name: 'a value without expand is literal, percent signs included',
    selection: "selection:\n    Path: '%name%'",
    yes: [{ Path: '%NAME%' }],
    no: [{ Path: 'x' }],
  },
  {
    name: 'hour: from a timestamp field',
    selection: 'selection:\n    UtcTime|hour: 22',
    yes: [{ UtcTime: '2024-03-10 22:15:00.123' }, { UtcTime: '2024-03-10T22:59:59Z' }],
    no: [{ UtcTime: '2024-03-10 21:15:00.123' }, { UtcTime: 'not a date' }],
  },
  {
    name: 'hour with gte',
    selection: 'selection:\n    UtcTime|hour|gte: 20',
    yes: [{ UtcTime: '2024-03-10T23:00:00Z' }],
    no: [{ UtcTime: '2024-03-10T08:00:00Z' }],
  },
  {
    name: 'minute, day, month, year, week',
    selection: 'selection:\n    T|minute: 15\n    T|day: 10\n    T|month: 3\n    T|year: 2024\n    T|week: 10',
    yes: [{ T: '2024-03-10T22:15:00Z' }],
    no: [{ T: '2024-03-11T22:15:00Z' }],
  },
  {
    name: 'time modifiers read epoch numbers and fall back to the event time for @timestamp',
    selection: 'selection:\n    "@timestamp|hour": 22',
    yes: [{}, { '@timestamp': Date.parse('2024-01-01T22:00:00Z') }],
    no: [{ '@timestamp': '2024-01-01T10:00:00Z' }],
  },
  {
    name: 'null: absent or null field',
    selection: 'selection:\n    OriginalFileName: null',
    yes: [{}, { OriginalFileName: null }],
    no: [{ OriginalFileName: '' }, { OriginalFileName: 'x' }],
  },
  {
    name: 'empty string: present and empty',
    selection: "selection:\n    OriginalFileName: ''",
    yes: [{ OriginalFileName: '' }],
    no: [{}, { OriginalFileName: 'x' }],
  },
];

describe('modifiers and value types', () => {
  for (const c of cases) {
    it(c.name, () => {
      const m = matcher(rule(c.selection), c.placeholders);
      for (const f of c.yes) assert.equal(m(f), true, `should match ${JSON.stringify(f)}`);
      for (const f of c.no) assert.equal(m(f), false, `should not match ${JSON.stringify(f)}`);
    });
  }
});

describe('modifier errors reject the rule with a reason', () => {
  const bad: { name: string; selection: string; reason: RegExp }[] = [
    {
      name: 'unknown modifier',
      selection: 'selection:\n    Image|sometimes: x',
      reason: /unknown modifier 'sometimes'/,
    },
    { name: 'bad regex', selection: "selection:\n    Image|re: '(unclosed'", reason: /invalid regular expression/ },
    { name: 'bad cidr', selection: "selection:\n    Ip|cidr: '10.0.0.0/40'", reason: /prefix length/ },
    { name: 'gt needs a number', selection: 'selection:\n    Size|gt: big', reason: /needs a number/ },
    { name: 'exists needs a boolean', selection: 'selection:\n    X|exists: maybe', reason: /true or false/ },
    {
      name: 'contains and endswith together',
      selection: 'selection:\n    X|contains|endswith: a',
      reason: /cannot be combined/,
    },
    { name: 're sub-modifier without re', selection: 'selection:\n    X|i: a', reason: /only valid after re/ },
    { name: 'base64 of a wildcard', selection: "selection:\n    X|base64: 'a*'", reason: /wildcards/ },
    { name: 'unresolvable placeholder', selection: "selection:\n    X|expand: '%nope%'", reason: /placeholder %nope%/ },
  ];
  for (const b of bad) {
    it(b.name, () => {
      const r = loadSigmaText(rule(b.selection), 'bad.yml');
      assert.equal(r.rules.length, 0);
      assert.equal(r.rejected.length, 1);
      assert.match(r.rejected[0].reason, b.reason);
      assert.equal(r.rejected[0].ruleId, '00000000-0000-0000-0000-000000000001');
      assert.equal(r.rejected[0].line, 7, 'the line of the offending field');
    });
  }
});

describe('keywords', () => {
  it('a list of strings searches every field value, case-insensitively', () => {
    const m = matcher(rule("keywords:\n    - 'EVILSERVICE'\n    - 'svchost.exe -n evil'", 'keywords'));
    assert.equal(m({ a: 'x', b: 'started evilservice now' }), true);
    assert.equal(m({ n: 42, b: 'run SVCHOST.EXE -n evil' }), true);
    assert.equal(m({ b: 'nothing' }), false);
  });
  it("'|all' keywords need every value", () => {
    const m = matcher(
      rule("keywords:\n    '|all':\n        - 'OabVirtualDirectory'\n        - ' -ExternalUrl '", 'keywords'),
    );
    assert.equal(m({ a: 'Set-OabVirtualDirectory -ExternalUrl http://x' }), true);
    assert.equal(m({ a: 'Set-OabVirtualDirectory', b: ' -ExternalUrl ' }), true);
    assert.equal(m({ a: 'Set-OabVirtualDirectory' }), false);
  });
  it('keywords with wildcards', () => {
    const m = matcher(rule("keywords:\n    - 'failed*root'", 'keywords'));
    assert.equal(m({ message: 'auth failed for root' }), true);
    assert.equal(m({ message: 'root failed' }), false);
  });
  it('literal keywords search the raw text, JSON escapes included', () => {
    const loaded = loadSigmaText(rule("keywords:\n    - '\\mimilib.dll'\n    - 'sekurlsa::'", 'keywords'), 't.yml');
    const engine = createSigmaEngine({ rules: loaded.rules });
    const raw = JSON.stringify({ ImageLoaded: 'C:\\Temp\\MIMILIB.dll' });
    assert.equal(engine.match(event({ ImageLoaded: 'C:\\Temp\\MIMILIB.dll' }, raw)).length, 1);
    assert.equal(engine.match(event({ a: 'x' }, 'privilege::debug SEKURLSA::logonpasswords')).length, 1);
    assert.equal(engine.match(event({ a: 'sekurlsa::' }, 'no keyword in the raw text')).length, 0);
  });

  it('the raw text is searched when the event has no fields', () => {
    const loaded = loadSigmaText(rule("keywords:\n    - 'panic'", 'keywords'), 't.yml');
    const engine = createSigmaEngine({ rules: loaded.rules });
    assert.equal(engine.match(event({}, 'kernel PANIC at 0x0')).length, 1);
  });
});
