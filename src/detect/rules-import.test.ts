import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { RuleRepository } from './rule-set.ts';

const BIN = resolve(import.meta.dirname, '../../bin/vigil');
const tmp = mkdtempSync(join(tmpdir(), 'vigil-import-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const rule = (id: string, name: string, condition = 'selection') => `title: Rule ${name}
id: ${id}
name: ${name}
logsource:
  product: windows
  service: security
detection:
  selection:
    EventID: 4625
  condition: ${condition}
level: low
`;

test('vigil rules import copies what loads and compiles, and says why the rest did not', async () => {
  const corpus = join(tmp, 'corpus');
  mkdirSync(join(corpus, 'windows'), { recursive: true });
  writeFileSync(join(corpus, 'windows', 'good.yml'), rule('11111111-0000-4000-8000-000000000001', 'good'));
  writeFileSync(
    join(corpus, 'windows', 'bad.yml'),
    rule('11111111-0000-4000-8000-000000000002', 'bad', 'selection and nowhere'),
  );
  writeFileSync(join(corpus, 'windows', 'broken.yml'), 'title: [unclosed\n');
  // A correlation over the rejected rule loads alone, but cannot compile without it.
  writeFileSync(
    join(corpus, 'corr.yml'),
    `title: Many bad
id: 11111111-0000-4000-8000-000000000003
correlation:
  type: event_count
  rules: [bad]
  group-by: [TargetUserName]
  timespan: 5m
  condition: { gte: 3 }
level: high
`,
  );
  const dataDir = join(tmp, 'data');
  const { stdout } = await promisify(execFile)(BIN, ['rules', 'import', corpus, '--data-dir', dataDir, '--json']);
  const report = JSON.parse(stdout) as {
    imported: number;
    destination: string;
    skipped: { file: string; reasons: string[] }[];
  };
  assert.equal(report.imported, 1);
  assert.equal(report.destination, join(dataDir, 'rules', 'imported', 'corpus'));
  assert.ok(existsSync(join(report.destination, 'windows', 'good.yml')));
  const skipped = Object.fromEntries(report.skipped.map((s) => [s.file, s.reasons.join('; ')]));
  assert.deepEqual(Object.keys(skipped).sort(), [
    join(corpus, 'corr.yml'),
    join(corpus, 'windows', 'bad.yml'),
    join(corpus, 'windows', 'broken.yml'),
  ]);
  assert.match(skipped[join(corpus, 'windows', 'bad.yml')], /nowhere/);
  assert.match(skipped[join(corpus, 'corr.yml')], /bad/);

  // The node loads the imported rule from its data folder beside the API's rules.
  const set = new RuleRepository(dataDir, [], {}).compile();
  assert.deepEqual(
    set.rules.map((r) => r.id),
    ['11111111-0000-4000-8000-000000000001'],
  );
  assert.deepEqual(set.rejected, []);

  // The human report, and a folder with nothing loadable exits 1.
  const empty = join(tmp, 'empty');
  mkdirSync(empty);
  writeFileSync(join(empty, 'x.yml'), 'title: [unclosed\n');
  const failed = await promisify(execFile)(BIN, ['rules', 'import', empty, '--data-dir', dataDir]).then(
    () => undefined,
    (err: { code: number; stdout: string }) => err,
  );
  assert.equal(failed?.code, 1);
  assert.match(failed?.stdout ?? '', /Imported 0 files into .*; 1 files left out/);
});
