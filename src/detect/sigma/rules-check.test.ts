import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { checkRules, formatRulesCheck, reasonKind } from './rules-check.ts';

describe('rules check', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-rules-check-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const rule = (name: string, extra: string) =>
    writeFileSync(join(dir, name), `title: ${name}\nlogsource: { product: windows, service: security }\n${extra}`);
  rule('ok.yml', 'detection:\n    s: { EventID: 4624 }\n    condition: s\n');
  rule('deprecated.yml', 'status: deprecated\ndetection:\n    s: { EventID: 4625 }\n    condition: s\n');
  rule('count1.yml', 'detection:\n    s: { EventID: 4625 }\n    condition: s | count() by IpAddress > 10\n');
  rule('count2.yml', 'detection:\n    s: { EventID: 4625 }\n    condition: s | count(TargetUserName) > 3\n');
  rule('modifier.yml', 'detection:\n    s: { Image|fuzzy: x }\n    condition: s\n');
  writeFileSync(
    join(dir, 'cloud.yml'),
    'title: cloud\nlogsource: { product: aws, service: cloudtrail }\ndetection:\n    s: { eventName: x }\n    condition: s\n',
  );

  it('counts loaded, flagged and rejected documents, by kind of reason', () => {
    const report = checkRules([dir, join(dir, 'missing')]);
    assert.equal(report.files, 6);
    assert.equal(report.loaded, 3);
    assert.equal(report.deprecated, 1);
    assert.equal(report.rejected.length, 4);
    assert.equal(
      report.byReason[
        'unsupported condition: legacy aggregation syntax … is not part of Sigma v2; express it as a correlation rule'
      ],
      2,
    );
    assert.equal(report.byReason['unknown modifier …'], 1);
    assert.deepEqual(report.unmapped, { 'aws/cloudtrail/*': 1 });
  });

  it('formats the report for a terminal', () => {
    const text = formatRulesCheck(checkRules(dir));
    assert.match(
      text,
      /^Checked 6 files: 3 rules loaded \(1 deprecated, 0 unsupported\), 0 filters, 0 correlations, 3 rejected\./,
    );
    assert.match(text, /modifier\.yml:4:10: unknown modifier 'fuzzy'/);
    assert.match(text, /aws\/cloudtrail\/\*/);
  });

  it('a condition nested thousands deep is one rejected file, not a crash', () => {
    const deep = mkdtempSync(join(tmpdir(), 'vigil-rules-check-deep-'));
    try {
      const write = (name: string, cond: string) =>
        writeFileSync(
          join(deep, name),
          `title: ${name}\nlogsource: { product: windows }\ndetection:\n    sel: { EventID: 1 }\n    condition: ${cond}\n`,
        );
      write('parens.yml', `${'('.repeat(3000)}sel${')'.repeat(3000)}`);
      write('not.yml', `${'not '.repeat(5000)}sel`);
      write('ok.yml', 'sel');
      const report = checkRules(deep);
      assert.equal(report.loaded, 1);
      assert.deepEqual(report.rejected.map((r) => [r.file.split('/').pop(), r.limit]).sort(), [
        ['not.yml', 'max_condition_depth'],
        ['parens.yml', 'max_condition_depth'],
      ]);
      assert.match(formatRulesCheck(report), /more than 64 levels deep \(limit max_condition_depth\)/);
    } finally {
      rmSync(deep, { recursive: true, force: true });
    }
  });

  it('reasonKind drops names and positions', () => {
    assert.equal(reasonKind("unknown modifier 'x'"), 'unknown modifier …');
    assert.equal(reasonKind('placeholder %abc% has no configured values'), 'placeholder %…% has no configured values');
  });
});
