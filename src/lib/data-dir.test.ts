import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { makePrivate, secureDataDir } from './data-dir.ts';

const modeOf = (p: string) => statSync(p).mode & 0o7777;

describe('secureDataDir keeps the data directory 0700', () => {
  const root = mkdtempSync(join(tmpdir(), 'vigil-data-dir-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('creates a missing directory (and its parents) 0700, whatever the umask', () => {
    const old = process.umask(0o022);
    try {
      const dir = join(root, 'new', 'data');
      assert.deepEqual(secureDataDir(dir), { created: true });
      assert.equal(modeOf(dir), 0o700);
    } finally {
      process.umask(old);
    }
  });

  for (const mode of [0o755, 0o750, 0o701, 0o777]) {
    it(`tightens an existing 0${mode.toString(8)} directory to 0700 and warns`, () => {
      const dir = join(root, `open-${mode.toString(8)}`);
      mkdirSync(dir);
      chmodSync(dir, mode);
      const warnings: unknown[] = [];
      const result = secureDataDir(dir, { warn: (...args: unknown[]) => warnings.push(args) } as never);
      assert.deepEqual(result, { created: false, previousMode: mode });
      assert.equal(modeOf(dir), 0o700);
      assert.equal(warnings.length, 1);
    });
  }

  it('leaves a private directory as it is, silently', () => {
    const dir = join(root, 'private');
    mkdirSync(dir);
    chmodSync(dir, 0o700);
    const warnings: unknown[] = [];
    assert.deepEqual(secureDataDir(dir, { warn: (...a: unknown[]) => warnings.push(a) } as never), {
      created: false,
    });
    assert.equal(warnings.length, 0);
  });
});

describe('makePrivate takes group and other permissions off a tree', () => {
  it('files become owner-only, folders 0700, and a private tree is left unchanged', () => {
    const root = mkdtempSync(join(tmpdir(), 'vigil-private-'));
    try {
      mkdirSync(join(root, 'a', 'b'), { recursive: true });
      writeFileSync(join(root, 'a', 'b', 'f'), 'x', { mode: 0o666 });
      writeFileSync(join(root, 'g'), 'x', { mode: 0o644 });
      chmodSync(join(root, 'a', 'b', 'f'), 0o666);
      chmodSync(join(root, 'g'), 0o644);
      chmodSync(join(root, 'a'), 0o755);
      chmodSync(join(root, 'a', 'b'), 0o700);
      assert.equal(makePrivate(root), 3);
      assert.equal(modeOf(join(root, 'a', 'b', 'f')), 0o600);
      assert.equal(modeOf(join(root, 'g')), 0o600);
      assert.equal(modeOf(join(root, 'a')), 0o700);
      assert.equal(makePrivate(root), 0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
