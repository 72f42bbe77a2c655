import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { copyFiles, hashFiles } from './hash-files.ts';

const root = mkdtempSync(join(tmpdir(), 'vigil-hash-'));
after(() => rmSync(root, { recursive: true, force: true }));

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// Above the size hashed on the calling thread, so that worker threads read these.
const big = [randomBytes(6 << 20), randomBytes(5 << 20), randomBytes(1), Buffer.alloc(0)];
mkdirSync(join(root, 'a/b'), { recursive: true });
const paths = ['a/big0', 'a/b/big1', 'one', 'empty'];
for (const [i, p] of paths.entries()) writeFileSync(join(root, p), big[i]);

for (const sync of [false, true]) {
  test(`every file's size and SHA-256, in the order asked, on threads and inline (sync: ${sync})`, async () => {
    const threaded = await hashFiles(root, paths, { sync, folders: ['', 'a', 'a/b'] });
    assert.deepEqual(
      threaded,
      paths.map((p, i) => ({ path: p, size: big[i].length, sha256: sha(big[i]) })),
    );
    assert.deepEqual(await hashFiles(root, paths.slice(2), { sync }), threaded.slice(2));
  });
}

test('a known sum is used when the size matches, and the file is read again when it does not', async () => {
  const known = new Map([
    ['a/big0', { size: big[0].length, sha256: 'f'.repeat(64) }],
    ['a/b/big1', { size: 3, sha256: 'e'.repeat(64) }],
  ]);
  const [first, second] = await hashFiles(root, ['a/big0', 'a/b/big1'], { known });
  assert.equal(first?.sha256, 'f'.repeat(64), 'not read again');
  assert.equal(second?.sha256, sha(big[1]), 'another size: hashed');
  const [synced] = await hashFiles(root, ['a/big0'], { known, sync: true });
  assert.equal(synced?.sha256, 'f'.repeat(64), 'only flushed');
});

test('a missing file fails naming it, or is left out with skipFailed', async () => {
  await assert.rejects(hashFiles(root, ['one', 'gone']), /gone/);
  await assert.rejects(hashFiles(root, ['a/big0', 'gone'], { sync: true }), /gone/);
  const sums = await hashFiles(root, ['a/big0', 'gone', 'one'], { skipFailed: true });
  assert.equal(sums[1], undefined);
  assert.equal(sums[0]?.sha256, sha(big[0]));
  assert.equal(sums[2]?.sha256, sha(big[2]));
});

test('copyFiles writes byte-equal copies and returns their sums, in the order given; it never overwrites', async () => {
  const out = join(root, 'copies');
  mkdirSync(out);
  const jobs = paths.map((p, i) => ({ from: join(root, p), to: join(out, `c${i}`), path: `c/${i}` }));
  const sums = await copyFiles(jobs, { threads: 2 });
  assert.deepEqual(
    sums,
    paths.map((_, i) => ({ path: `c/${i}`, size: big[i].length, sha256: sha(big[i]) })),
  );
  for (const [i, j] of jobs.entries()) assert.ok(readFileSync(j.to).equals(big[i]), `copy ${i} is byte-equal`);
  // Twice in a row: the threads kept from the first call serve the second.
  await assert.rejects(copyFiles([jobs[0]]), /copying .*big0 to .*c0: .*EEXIST/);
  const again = await copyFiles([{ ...jobs[2], to: join(out, 'again') }]);
  assert.equal(again[0].sha256, sha(big[2]));
});

test('a failed copy stops the threads: no file is started after it, the call names it, and the threads serve the next call', async () => {
  const out = join(root, 'stopped');
  mkdirSync(out);
  // The missing file goes first (largest size given), then forty that would copy.
  const jobs = [
    { from: join(root, 'missing'), to: join(out, 'missing'), path: 'missing', size: 1 << 30 },
    ...Array.from({ length: 40 }, (_, i) => ({
      from: join(root, 'one'),
      to: join(out, `c${i}`),
      path: `c${i}`,
      size: 1,
    })),
  ];
  await assert.rejects(copyFiles(jobs, { threads: 1 }), /copying .*missing to .*missing: .*ENOENT/);
  assert.deepEqual(readdirSync(out), [], 'nothing was copied after the failure');
  // With two threads the other one ends the file it is on: the call still rejects, and no more than that is copied.
  await assert.rejects(copyFiles(jobs, { threads: 2 }), /ENOENT/);
  assert.ok(readdirSync(out).length < jobs.length - 1, `the threads stopped early: ${readdirSync(out).length} copies`);
  const [again] = await copyFiles([{ from: join(root, 'one'), to: join(out, 'after'), path: 'after' }], { threads: 2 });
  assert.equal(again.sha256, sha(big[2]));
});

test('with skipFailed, a file the threads cannot read among many leaves only its entry out', async () => {
  // A folder: stat gives it a size, reading it fails (EISDIR) on the thread.
  const many = Array.from({ length: 30 }, (_, i) => (i === 7 ? 'a/b' : i % 2 ? 'a/big0' : 'one'));
  const sums = await hashFiles(root, many, { skipFailed: true, sync: true, threads: 3 });
  for (const [i, p] of many.entries()) {
    if (p === 'a/b') assert.equal(sums[i], undefined);
    else assert.equal(sums[i]?.sha256, sha(p === 'one' ? big[2] : big[0]), `entry ${i}`);
  }
});

test('copies of 1 MiB or more (written past the page cache, by whole blocks) are byte-equal whatever their size', async () => {
  const out = join(root, 'direct');
  mkdirSync(out);
  // A block and one byte past a 4 MiB read, an odd size, exactly 1 MiB, one byte less.
  const sizes = [(4 << 20) + 4097, (1 << 20) + 12_345, 1 << 20, (1 << 20) - 1];
  const data = sizes.map((n) => randomBytes(n));
  const jobs = data.map((d, i) => {
    writeFileSync(join(root, `d${i}`), d);
    return { from: join(root, `d${i}`), to: join(out, `d${i}`), path: `d/${i}`, size: d.length };
  });
  const sums = await copyFiles(jobs, { threads: 2 });
  for (const [i, d] of data.entries()) {
    assert.ok(readFileSync(jobs[i].to).equals(d), `copy ${i} (${d.length} bytes) is byte-equal`);
    assert.deepEqual(sums[i], { path: `d/${i}`, size: d.length, sha256: sha(d) });
  }
});
