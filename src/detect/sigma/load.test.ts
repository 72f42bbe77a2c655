import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { FieldValue, NormalizedEvent } from '../../lib/event.ts';
import { createSigmaEngine } from './engine.ts';
import { aliasBomb } from './fixtures.ts';
import { FILE_LIMITS, loadSigmaRules, loadSigmaText, REQUEST_LIMITS } from './load.ts';

const SPEC = '/work/shared/sigma/spec';

function event(
  fields: Record<string, FieldValue>,
  logsource = { product: 'windows', service: 'system' },
): NormalizedEvent {
  return { id: 'e', timestamp: 0, ingested: 0, tenant: 't', source: 's', layout: 'json', logsource, raw: '', fields };
}

describe('loading documents', () => {
  it('loads the specification example rules', () => {
    const r = loadSigmaRules(join(SPEC, 'tests/schema/rules'));
    assert.deepEqual(r.rejected, []);
    assert.ok(r.rules.length >= 2);
    for (const rule of r.rules) assert.ok(rule.title && rule.id && rule.detection.searches.size > 0);
  });

  it('collects correlation documents for the correlation engine, untouched', () => {
    const r = loadSigmaRules(join(SPEC, 'tests/schema/correlation'));
    assert.deepEqual(r.rejected, []);
    assert.equal(r.rules.length + r.correlations.length >= 8, true);
    const temporal = r.correlations.find((c) => c.file.endsWith('temporal.yml'));
    assert.ok(temporal);
    assert.equal((temporal.doc.correlation as { type: string }).type, 'temporal');
  });

  it('loads the specification filters', () => {
    const r = loadSigmaRules(join(SPEC, 'tests/schema/filter'));
    assert.deepEqual(r.rejected, []);
    assert.equal(r.filters.length, 2);
    assert.deepEqual(r.filters[0].rules, [
      '6f3e2987-db24-4c78-a860-b4f4095a7095',
      'df0841c0-9846-4e9f-ad8a-7df91571771b',
    ]);
  });

  it('gives each rule its id, name, level, tags and status', () => {
    const r = loadSigmaText(
      `title: Named
id: 11111111-1111-1111-1111-111111111111
name: named_rule
status: experimental
level: high
tags: [attack.execution, attack.t1059]
logsource: { product: windows, service: System }
detection:
    sel: { EventID: 7045 }
    condition: sel
`,
      'named.yml',
    );
    const rule = r.rules[0];
    assert.equal(rule.id, '11111111-1111-1111-1111-111111111111');
    assert.equal(rule.name, 'named_rule');
    assert.equal(rule.level, 'high');
    assert.equal(rule.status, 'experimental');
    assert.deepEqual(rule.tags, ['attack.execution', 'attack.t1059']);
    assert.deepEqual(rule.logsource, { product: 'windows', service: 'system' }, 'logsource values are lowercased');
    assert.equal(rule.line, 1);
  });

  it('flags deprecated and unsupported rules but loads them', () => {
    const text = (status: string) =>
      `title: x\nstatus: ${status}\nlogsource: { product: test }\ndetection:\n    s: { a: 1 }\n    condition: s\n`;
    const dep = loadSigmaText(text('deprecated'), 'd.yml').rules[0];
    const uns = loadSigmaText(text('unsupported'), 'u.yml').rules[0];
    assert.equal(dep.deprecated, true);
    assert.equal(uns.unsupported, true);
    assert.equal(loadSigmaText(text('test'), 't.yml').rules[0].deprecated, false);
  });
});

describe('multi-document files (collections)', () => {
  it('action: global is merged into every later document and is not a rule itself', () => {
    const r = loadSigmaText(
      `action: global
title: Remote Service Creation
id: 4a3a2b96-d7fc-4cb9-80e4-4a545fe95f46
detection:
    selection1:
        EventID: 4624
    condition: selection1 or selection2
level: medium
---
logsource:
    product: windows
    service: security
detection:
    selection2:
        EventID: 4697
---
logsource:
    product: windows
    service: system
detection:
    selection2:
        EventID: 7045
`,
      'collection.yml',
    );
    assert.deepEqual(r.rejected, []);
    assert.equal(r.rules.length, 2);
    assert.deepEqual(
      r.rules.map((x) => x.logsource.service),
      ['security', 'system'],
    );
    assert.deepEqual([...r.rules[1].detection.searches.keys()], ['selection1', 'selection2']);
    assert.equal(r.rules[1].title, 'Remote Service Creation');
    assert.equal(r.rules[1].line, 17);
  });

  it('a later document without a title inherits from the first', () => {
    const r = loadSigmaText(
      `title: Base
id: 22222222-2222-2222-2222-222222222222
logsource: { product: test }
detection:
    sel: { a: 1 }
    condition: sel
---
id: 33333333-3333-3333-3333-333333333333
detection:
    sel: { a: 2 }
`,
      'inherit.yml',
    );
    assert.equal(r.rules.length, 2);
    assert.equal(r.rules[1].title, 'Base');
    assert.equal(r.rules[1].id, '33333333-3333-3333-3333-333333333333');
    const engine = createSigmaEngine({ rules: [r.rules[1]] });
    assert.equal(engine.match(event({ a: 2 }, { product: 'test' } as never)).length, 1);
    assert.equal(engine.match(event({ a: 1 }, { product: 'test' } as never)).length, 0);
  });

  it('action: reset and action: repeat', () => {
    const r = loadSigmaText(
      `action: global
title: G
logsource: { product: test }
---
detection: { s: { a: 1 }, condition: s }
---
action: repeat
detection: { s: { a: 2 } }
---
action: reset
---
title: Own
logsource: { product: other }
detection: { s: { b: 1 }, condition: s }
`,
      'actions.yml',
    );
    assert.deepEqual(r.rejected, []);
    assert.deepEqual(
      r.rules.map((x) => [x.title, x.logsource.product]),
      [
        ['G', 'test'],
        ['G', 'test'],
        ['Own', 'other'],
      ],
    );
  });
});

describe('rejections are reported, never fatal', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-sigma-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'sub'));
  writeFileSync(
    join(dir, 'good.yml'),
    'title: good\nlogsource: { product: test }\ndetection:\n    s: { a: 1 }\n    condition: s\n',
  );
  writeFileSync(join(dir, 'sub', 'yaml-error.yaml'), 'title: bad\ndetection: [unclosed\n');
  writeFileSync(
    join(dir, 'sub', 'legacy.yml'),
    'title: legacy\nid: 44444444-4444-4444-4444-444444444444\nlogsource: { product: test }\ndetection:\n    s: { a: 1 }\n    condition: s | count() by b > 5\n',
  );
  writeFileSync(
    join(dir, 'sub', 'no-condition.yml'),
    'title: x\nlogsource: { product: test }\ndetection:\n    s: { a: 1 }\n',
  );
  writeFileSync(
    join(dir, 'sub', 'no-title.yml'),
    'logsource: { product: test }\ndetection:\n    s: { a: 1 }\n    condition: s\n',
  );
  writeFileSync(join(dir, 'notes.txt'), 'not a rule');

  it('loads the good rule and reports each bad document with file, line, id and reason', () => {
    const r = loadSigmaRules(dir);
    assert.deepEqual(
      r.rules.map((x) => x.title),
      ['good'],
    );
    const byFile = Object.fromEntries(r.rejected.map((x) => [x.file.slice(dir.length + 1), x]));
    assert.deepEqual(Object.keys(byFile).sort(), [
      'sub/legacy.yml',
      'sub/no-condition.yml',
      'sub/no-title.yml',
      'sub/yaml-error.yaml',
    ]);
    assert.match(byFile['sub/yaml-error.yaml'].reason, /^YAML error/);
    assert.ok((byFile['sub/yaml-error.yaml'].line ?? 0) >= 2, 'the line where the parser stopped');
    assert.match(byFile['sub/legacy.yml'].reason, /legacy aggregation syntax/);
    assert.equal(byFile['sub/legacy.yml'].line, 6);
    assert.equal(byFile['sub/legacy.yml'].column, 5);
    assert.equal(byFile['sub/legacy.yml'].ruleId, '44444444-4444-4444-4444-444444444444');
    assert.match(byFile['sub/no-condition.yml'].reason, /no condition/);
    assert.match(byFile['sub/no-title.yml'].reason, /no title/);
  });
});

describe('Sigma filters', () => {
  const rules = loadSigmaText(
    `title: Rar
id: 6f3e2987-db24-4c78-a860-b4f4095a7095
logsource: { category: process_creation, product: windows }
detection:
    sel: { Image|endswith: '\\rar.exe' }
    condition: sel
---
title: Other
name: other_rule
logsource: { category: process_creation, product: windows }
detection:
    sel: { Image|endswith: '\\rar.exe' }
    condition: sel
`,
    'rules.yml',
  );
  const filters = loadSigmaText(
    `title: Filter Administrator account
logsource: { category: process_creation, product: windows }
filter:
    rules:
        - 6f3e2987-db24-4c78-a860-b4f4095a7095
        - other_rule
    selection:
        User|startswith: 'adm_'
    condition: selection
---
title: Filter for another logsource
logsource: { category: image_load, product: windows }
filter:
    rules: [other_rule]
    selection: { User: bob }
    condition: selection
`,
    'filters.yml',
  );

  it('adds `and not filter` to the rules named by id or name whose logsource matches', () => {
    assert.deepEqual(filters.rejected, []);
    const engine = createSigmaEngine({ rules: rules.rules, filters: filters.filters });
    const ev = (user: string) =>
      event({ Image: 'C:\\rar.exe', User: user }, { product: 'windows', category: 'process_creation' } as never);
    assert.deepEqual(
      engine.match(ev('adm_alice')).map((m) => m.rule.title),
      [],
    );
    assert.deepEqual(
      engine.match(ev('bob')).map((m) => m.rule.title),
      ['Rar', 'Other'],
    );
  });
});

describe('a YAML key __proto__ is an ordinary key', () => {
  const hidden = 'logsource: { product: test }\n  detection: { s: { a: 1 }, condition: s }';
  for (const [name, text] of [
    ['in a rule', `title: shown\nid: 11111111-1111-1111-1111-111111111111\n__proto__:\n  ${hidden}\n`],
    ['in a document merged with action: global', `action: global\ntitle: shown\n---\n__proto__:\n  ${hidden}\n`],
    [
      'in a document merged with its first',
      `title: shown\nlogsource: { product: test }\ndetection: { s: { b: one }, condition: s }\n---\nid: x\n__proto__:\n  ${hidden}\n`,
    ],
  ] as const) {
    it(`a rule hidden under __proto__ ${name} does not run: the rule shown is the rule run`, () => {
      const r = loadSigmaText(text, 'proto.yml');
      for (const rule of r.rules) {
        assert.equal(Object.getPrototypeOf(rule.doc), Object.prototype);
        assert.ok(Object.hasOwn(rule.doc, 'detection'), 'the detection that runs is in the document shown');
        assert.deepEqual((rule.doc.detection as Record<string, unknown>).s, { b: 'one' });
      }
      const proto = r.rejected.find((x) => x.title === 'shown' && x.ruleId !== 'x');
      if (!text.includes('---\nid: x')) assert.ok(proto, JSON.stringify(r));
      const engine = createSigmaEngine({ rules: r.rules });
      assert.equal(engine.match(event({ a: 1 }, { product: 'test' } as never)).length, 0);
    });
  }

  it('keeps __proto__ as a key of the document shown, next to the others', () => {
    const r = loadSigmaText(
      'title: t\nlogsource: { product: test }\ndetection: { s: { a: 1 }, condition: s }\n__proto__: { x: 1 }\n',
      'proto.yml',
    );
    assert.deepEqual(r.rejected, []);
    const doc = r.rules[0].doc;
    assert.equal(Object.getPrototypeOf(doc), Object.prototype);
    assert.deepEqual(Object.keys(doc), ['title', 'logsource', 'detection', '__proto__']);
    assert.match(JSON.stringify(doc), /"__proto__":\{"x":1\}\}$/);
  });
});

describe('limits on the YAML of a rule file', () => {
  it('refuses an alias bomb of a few hundred bytes in milliseconds, naming max_nodes', () => {
    const text = aliasBomb();
    assert.ok(text.length < 1024, `${text.length} bytes`);
    const t0 = performance.now();
    const r = loadSigmaText(text, 'bomb.yml');
    const ms = performance.now() - t0;
    assert.ok(ms < 1000, `${ms.toFixed(0)} ms`);
    assert.equal(r.rules.length, 0);
    assert.equal(r.rejected.length, 1);
    assert.equal(r.rejected[0].limit, 'max_nodes');
    assert.match(r.rejected[0].reason, /more than 100000 nodes, aliases included \(limit max_nodes\)/);
  });

  it('applies the stricter limits given for requests', () => {
    const r = loadSigmaText(aliasBomb(4), 'request', { limits: REQUEST_LIMITS });
    assert.equal(r.rejected[0]?.limit, 'max_nodes');
    assert.equal(loadSigmaText(aliasBomb(3), 'file.yml').rejected[0]?.limit, undefined, '9^3 strings fit');
    const big = `title: big\nlogsource: { product: test }\ndetection:\n    s: { a: '${'x'.repeat(70_000)}' }\n    condition: s\n`;
    const r2 = loadSigmaText(big, 'request', { limits: REQUEST_LIMITS });
    assert.equal(r2.rejected[0]?.limit, 'max_bytes');
    assert.match(r2.rejected[0].reason, /more than 65536 \(limit max_bytes\)/);
  });

  it('refuses more than max_aliases aliases in a document', () => {
    const many = `base: &b x\nvalues: [${Array(101).fill('*b').join(',')}]\ntitle: t\n`;
    const r = loadSigmaText(many, 'aliases.yml');
    assert.equal(r.rejected[0]?.limit, 'max_aliases');
    assert.match(r.rejected[0].reason, /more than 100 aliases \(limit max_aliases\)/);
  });

  it('refuses nesting past max_depth', () => {
    const deep = `title: deep\nlogsource: { product: test }\nx: ${'['.repeat(100)}${']'.repeat(100)}\n`;
    const r = loadSigmaText(deep, 'deep.yml');
    assert.equal(r.rejected[0]?.limit, 'max_depth');
  });

  it('refuses flow and block nesting deeper than the YAML library can compose, naming max_depth', () => {
    for (const [name, nested] of [
      ['flow lists', `${'['.repeat(5000)}${']'.repeat(5000)}`],
      ['flow maps', `${'{a: '.repeat(2000)}1${'}'.repeat(2000)}`],
      ['block lists', `\n${'- '.repeat(5000)}1`],
    ]) {
      const t0 = performance.now();
      const r = loadSigmaText(`title: deep\nlogsource: { product: test }\nx: ${nested}\n`, 'request', {
        limits: REQUEST_LIMITS,
      });
      assert.ok(performance.now() - t0 < 1000, name);
      assert.equal(r.rejected.length, 1, name);
      assert.equal(r.rejected[0].limit, 'max_depth', `${name}: ${r.rejected[0].reason}`);
      assert.match(r.rejected[0].reason, /nested more than 64 levels deep \(limit max_depth\)/);
    }
  });

  it('a stored file past a limit is skipped, the others load', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-limits-'));
    try {
      writeFileSync(join(dir, 'a-bomb.yml'), aliasBomb());
      writeFileSync(join(dir, 'b-huge.yml'), `# ${'x'.repeat(FILE_LIMITS.max_bytes)}\n`);
      writeFileSync(
        join(dir, 'c-good.yml'),
        'title: good\nlogsource: { product: test }\ndetection:\n    s: { a: 1 }\n    condition: s\n',
      );
      const t0 = performance.now();
      const r = loadSigmaRules(dir);
      assert.ok(performance.now() - t0 < 1000);
      assert.deepEqual(
        r.rules.map((x) => x.title),
        ['good'],
      );
      assert.deepEqual(
        r.rejected.map((x) => x.limit),
        ['max_nodes', 'max_bytes'],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
