import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import { OverloadError } from '../../lib/errors.ts';
import { silentLogger } from '../../lib/logger.ts';
import { type SpoolConfig, spoolConfigSchema } from './config.ts';
import { createSpool, type Spool, type SpoolEntry } from './index.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vigil-spool-'));
  dirs.push(d);
  return d;
}

function entry(i: number, size = 100): SpoolEntry {
  return {
    id: `b${i}`,
    subject: `vigil.events.t${i % 3}`,
    encoding: 'json',
    events: 2,
    body: Buffer.alloc(size, i % 251),
  };
}

async function openSpool(dir: string, cfg: Partial<SpoolConfig> = {}, metrics = new Registry()): Promise<Spool> {
  const spool = createSpool(spoolConfigSchema.parse(cfg), { dir, metrics, logger: silentLogger });
  await spool.open();
  return spool;
}

async function drain(spool: Spool): Promise<string[]> {
  const ids: string[] = [];
  for (let e = await spool.peek(); e; e = await spool.peek()) {
    ids.push(e.id);
    await spool.commit();
  }
  return ids;
}

function segments(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.log'));
}

test('entries come back in append order across segments and a reopen, bodies intact', async () => {
  const dir = tempDir();
  let spool = await openSpool(dir, { segment_bytes: 64 * 1024 });
  const appends: Promise<void>[] = [];
  for (let i = 0; i < 300; i++) appends.push(spool.append([entry(i, 1000)]));
  await Promise.all(appends);
  assert.ok(segments(dir).length > 3, 'several segments were written');
  assert.deepEqual(spool.stats().batches, 300);
  assert.equal(spool.stats().events, 600);
  for (let i = 0; i < 100; i++) {
    const e = await spool.peek();
    assert.equal(e?.id, `b${i}`);
    assert.equal(e?.subject, `vigil.events.t${i % 3}`);
    assert.deepEqual(Buffer.from(e!.body), Buffer.alloc(1000, i % 251));
    await spool.commit();
  }
  await spool.close();

  spool = await openSpool(dir, { segment_bytes: 64 * 1024 });
  assert.equal(spool.stats().batches, 200);
  await spool.append([entry(300, 1000), entry(301, 1000)]);
  const ids = await drain(spool);
  assert.deepEqual(
    ids,
    Array.from({ length: 202 }, (_, k) => `b${k + 100}`),
  );
  assert.ok(spool.isEmpty());
  assert.deepEqual(segments(dir), [], 'forwarded segments are deleted');
  await spool.close();
});

test('a torn tail (partial header, partial payload, zeros, bad checksum) is cut; acknowledged records stay', async () => {
  const tails: [string, (file: string) => void][] = [
    ['partial header', (f) => appendFileSync(f, Buffer.from([0x10, 0x00, 0x00]))],
    [
      'partial payload',
      (f) => {
        const h = Buffer.alloc(8);
        h.writeUInt32LE(5000, 0);
        appendFileSync(f, Buffer.concat([h, Buffer.alloc(100, 7)]));
      },
    ],
    ['zero-filled block', (f) => appendFileSync(f, Buffer.alloc(4096))],
    [
      'checksum mismatch',
      (f) => {
        const h = Buffer.alloc(8);
        h.writeUInt32LE(20, 0);
        h.writeUInt32LE(12345, 4);
        appendFileSync(f, Buffer.concat([h, Buffer.alloc(20, 1)]));
      },
    ],
  ];
  for (const [name, tear] of tails) {
    const dir = tempDir();
    const metrics = new Registry();
    let spool = await openSpool(dir, {}, metrics);
    await spool.append([entry(0), entry(1)]);
    await spool.append([entry(2)]);
    await spool.close();
    const [seg] = segments(dir);
    const goodSize = statSync(join(dir, seg)).size;
    tear(join(dir, seg));

    spool = await openSpool(dir, {}, metrics);
    assert.equal(statSync(join(dir, seg)).size, goodSize, `${name}: the file is cut back to its last whole record`);
    await spool.append([entry(3)]);
    assert.deepEqual(await drain(spool), ['b0', 'b1', 'b2', 'b3'], name);
    const torn = (await metrics.getSingleMetric('vigil_spool_torn_records_total')?.get())?.values[0]?.value;
    assert.equal(torn, 1, `${name}: counted`);
    await spool.close();
  }
});

test('a full spool refuses with OverloadError and drops nothing; room comes back as batches are forwarded', async () => {
  const dir = tempDir();
  const spool = await openSpool(dir, { max_bytes: 1024 * 1024 });
  let accepted = 0;
  let refused: unknown;
  for (let i = 0; i < 200; i++) {
    try {
      await spool.append([entry(i, 10000)]);
      accepted++;
    } catch (err) {
      refused = err;
      break;
    }
  }
  assert.ok(refused instanceof OverloadError, 'refused with OverloadError');
  assert.equal((refused as OverloadError).status, 503);
  assert.ok(accepted > 90 && accepted < 105, `about 1 MiB of 10 kB batches was accepted (${accepted})`);
  assert.ok(spool.stats().bytes <= 1024 * 1024);
  await assert.rejects(spool.append([entry(999, 10000)]), OverloadError);
  await spool.peek();
  await spool.commit();
  await spool.append([entry(accepted, 10000)]);
  const ids = await drain(spool);
  assert.equal(ids.length, accepted);
  assert.deepEqual(
    ids,
    Array.from({ length: accepted }, (_, k) => `b${k + 1}`),
  );
  await spool.close();
});

test('once the oldest batch is older than max_age_seconds, new batches are refused until it is forwarded', async () => {
  const dir = tempDir();
  const spool = await openSpool(dir, { max_age_seconds: 1 });
  await spool.append([entry(0)]);
  await new Promise((r) => setTimeout(r, 1100));
  await assert.rejects(spool.append([entry(1)]), OverloadError);
  assert.ok(spool.stats().oldestAt! <= Date.now() - 1000);
  await drain(spool);
  await spool.append([entry(2)]);
  assert.deepEqual(await drain(spool), ['b2']);
  await spool.close();
});

test('kill -9 while appending: every acknowledged batch is replayed, in order, after a restart', async () => {
  const dir = tempDir();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', resolve(import.meta.dirname, 'fixtures/crash-writer.ts'), dir],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  const deadline = Date.now() + 30000;
  while ((out.match(/acked/g)?.length ?? 0) < 400 && Date.now() < deadline && child.exitCode === null) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  const acked = [...out.matchAll(/acked (\d+)/g)].map((m) => Number(m[1]));
  assert.ok(acked.length >= 400, `the writer acknowledged batches before the kill (${acked.length}): ${err}`);

  const spool = await openSpool(dir);
  const ids = (await drain(spool)).map((id) => Number(id.slice(1)));
  await spool.close();
  assert.deepEqual(
    ids,
    ids.map((_, k) => k),
    'the replay is the append order with no gap',
  );
  const present = new Set(ids);
  const lost = acked.filter((i) => !present.has(i));
  assert.deepEqual(lost, [], 'no acknowledged batch is lost');
  console.log(
    `spool kill -9: ${acked.length} acknowledged, ${ids.length} replayed (${ids.length - acked.length} written but unacknowledged)`,
  );
});

test('a corrupted cursor file only replays batches again; it loses none', async () => {
  const dir = tempDir();
  let spool = await openSpool(dir);
  await spool.append([entry(0), entry(1), entry(2)]);
  await spool.peek();
  await spool.commit();
  await spool.close();
  writeFileSync(join(dir, 'cursor.json'), '{"segm');
  spool = await openSpool(dir);
  assert.deepEqual(await drain(spool), ['b0', 'b1', 'b2']);
  await spool.close();
});
