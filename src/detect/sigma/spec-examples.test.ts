/** The examples of the Sigma rules specification (v2.1), as written there, loaded and evaluated. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FieldValue, NormalizedEvent } from '../../lib/event.ts';
import { createSigmaEngine } from './engine.ts';
import { loadSigmaText } from './load.ts';

function engineOf(detection: string, logsource = 'product: windows\n    service: security') {
  const text = `title: Spec example\nlogsource:\n    ${logsource}\n${detection}`;
  const loaded = loadSigmaText(text, 'spec.yml');
  assert.deepEqual(loaded.rejected, []);
  return createSigmaEngine({ rules: loaded.rules });
}

function json(fields: Record<string, FieldValue>): NormalizedEvent {
  return {
    id: 'e',
    timestamp: 0,
    ingested: 0,
    tenant: 't',
    source: 's',
    layout: 'json',
    logsource: { product: 'windows', service: 'security' },
    raw: '',
    fields,
  };
}

describe('examples of the rules specification', () => {
  it('Whoami Execution (YAML file example) on a Sysmon process creation', () => {
    const loaded = loadSigmaText(
      `title: Whoami Execution
description: Detects a whoami.exe execution
references:
      - https://speakerdeck.com/heirhabarov/hunting-for-privilege-escalation-in-windows-environment
author: Florian Roth
date: 2019-10-23
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        Image: 'C:\\Windows\\System32\\whoami.exe'
    condition: selection
level: high
`,
      'whoami.yml',
    );
    assert.deepEqual(loaded.rejected, []);
    const engine = createSigmaEngine({ rules: loaded.rules });
    const e = (image: string): NormalizedEvent => ({
      ...json({ Channel: 'Microsoft-Windows-Sysmon/Operational', EventID: 1, Image: image }),
      layout: 'windows',
      logsource: undefined,
    });
    assert.equal(engine.match(e('C:\\Windows\\System32\\whoami.exe')).length, 1);
    assert.equal(engine.match(e('C:\\Windows\\System32\\where.exe')).length, 0);
    assert.equal(engine.match(e('C:\\Windows\\System32\\whoami.exe'))[0].rule.level, 'high');
  });

  it('Lists: a list of maps is OR', () => {
    const engine = engineOf(`detection:
    selection:
        - Image|endswith: '\\\\example.exe'
        - Description|contains: 'Test executable'
    condition: selection
`);
    assert.equal(engine.match(json({ Image: 'C:\\example.exe' })).length, 1);
    assert.equal(engine.match(json({ Description: 'A Test executable here' })).length, 1);
    assert.equal(engine.match(json({ Image: 'C:\\other.exe', Description: 'x' })).length, 0);
  });

  it('Maps: EventLog Security and (EventID 517 or 1102)', () => {
    const engine = engineOf(`detection:
    selection:
        EventLog: Security
        EventID:
            - 517
            - 1102
    condition: selection
`);
    assert.equal(engine.match(json({ EventLog: 'Security', EventID: 1102 })).length, 1);
    assert.equal(engine.match(json({ EventLog: 'Security', EventID: '517' })).length, 1);
    assert.equal(engine.match(json({ EventLog: 'System', EventID: 1102 })).length, 0);
  });

  it('Maps: the TicketOptions example with quoted hexadecimal strings', () => {
    const engine = engineOf(`detection:
    selection:
          EventLog: Security
          EventID: 4769
          TicketOptions: '0x40810000'
          TicketEncryption: '0x17'
    condition: selection
`);
    const base = { EventLog: 'Security', EventID: 4769, TicketOptions: '0x40810000' };
    assert.equal(engine.match(json({ ...base, TicketEncryption: '0x17' })).length, 1);
    assert.equal(engine.match(json({ ...base, TicketEncryption: '0x12' })).length, 0);
  });

  it('Special field values: not null as a negated selection', () => {
    const engine = engineOf(`detection:
    selection:
        EventID: 4738
    filter:
        PasswordLastSet: null
    condition: selection and not filter
`);
    assert.equal(engine.match(json({ EventID: 4738, PasswordLastSet: '2024-01-01' })).length, 1);
    assert.equal(engine.match(json({ EventID: 4738 })).length, 0);
    assert.equal(engine.match(json({ EventID: 4738, PasswordLastSet: null })).length, 0);
  });

  it("Special field values: '' and null as separate selections", () => {
    const engine = engineOf(`detection:
    selection_main:
        FieldA: 'something'
    selection_empty1:
        FieldB: ''
    selection_empty2:
        FieldB: null
    condition: selection_main and 1 of selection_empty*
`);
    assert.equal(engine.match(json({ FieldA: 'something', FieldB: '' })).length, 1);
    assert.equal(engine.match(json({ FieldA: 'something' })).length, 1);
    assert.equal(engine.match(json({ FieldA: 'something', FieldB: 'x' })).length, 0);
  });

  it('Field Existence', () => {
    const engine = engineOf(`detection:
    selection:
        EventID: 4738
        PasswordLastSet|exists: true
    condition: selection
`);
    assert.equal(engine.match(json({ EventID: 4738, PasswordLastSet: '' })).length, 1);
    assert.equal(engine.match(json({ EventID: 4738 })).length, 0);
  });

  it('Keywords search, OR and |all', () => {
    const or = engineOf(`detection:
    mimikatz_keywords:
        - 'event::clear'
        - 'event::drop'
    condition: mimikatz_keywords
`);
    assert.equal(or.match(json({ CommandLine: 'mimikatz "event::drop" exit' })).length, 1);
    assert.equal(or.match(json({ CommandLine: 'event:: clear' })).length, 0);
    const all = engineOf(`detection:
    keywords_cmdlet:
        '|all':
            - 'OabVirtualDirectory'
            - ' -ExternalUrl '
    condition: keywords_cmdlet
`);
    assert.equal(all.match(json({ Payload: 'Set-OabVirtualDirectory -ExternalUrl http://x' })).length, 1);
    assert.equal(all.match(json({ Payload: 'Set-OabVirtualDirectory' })).length, 0);
  });

  it('Condition: a list of conditions is OR', () => {
    const engine = engineOf(`detection:
    a: { x: 1 }
    b: { y: 2 }
    condition:
        - a
        - b
`);
    assert.equal(engine.match(json({ y: 2 })).length, 1);
    assert.equal(engine.match(json({ z: 3 })).length, 0);
  });

  it('Placeholders: only with expand; a plain %name% is literal', () => {
    const loaded = loadSigmaText(
      `title: p
logsource: { product: windows, service: security }
detection:
    literal:
        field: '%name%'
    placeholder:
        field|expand: '%name%'
    condition: literal or placeholder
`,
      'p.yml',
      { placeholders: { name: ['srv*'] } },
    );
    const engine = createSigmaEngine({ rules: loaded.rules });
    assert.equal(engine.match(json({ field: '%name%' })).length, 1);
    assert.equal(engine.match(json({ field: 'srv01' })).length, 1);
    assert.equal(engine.match(json({ field: 'ws01' })).length, 0);
  });
});
