import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { NormalizedEvent } from '../lib/event.ts';
import { createDetectionPosition } from './position.ts';

const event = (ingested: number) => ({ ingested }) as NormalizedEvent;
const onDisk = (dir: string) => JSON.parse(readFileSync(join(dir, 'detect-position.json'), 'utf8')).ingested_ms;

test('the detection position covers every committed event not yet evaluated, on disk, across restarts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-position-'));
  const p = createDetectionPosition(dir);
  const t0 = Date.now();
  p.load();
  assert.ok(onDisk(dir) >= t0, 'a new data folder starts at its first start');
  // A batch received before the position is about to be committed: the position drops before the commit.
  const first = [event(t0 + 50), event(t0 - 2000), event(t0 + 10)];
  p.beforeCommit(first);
  assert.equal(onDisk(dir), t0 - 2000);
  // Newer batches leave it where it is.
  const second = [event(t0 + 100)];
  p.beforeCommit(second);
  assert.equal(onDisk(dir), t0 - 2000);
  // Evaluated: it rises, trailing the clock, at most once a second.
  p.handedOver(first);
  p.handedOver(second);
  p.evaluated(first, t0 + 58_000);
  assert.equal(onDisk(dir), t0 + 100, 'up to the batch committed after it, not evaluated yet');
  p.evaluated(second, t0 + 60_000);
  assert.equal(onDisk(dir), t0 + 55_000);
  const third = [event(t0 + 59_000)];
  p.beforeCommit(third);
  p.handedOver(third);
  p.evaluated(third, t0 + 60_500);
  assert.equal(onDisk(dir), t0 + 55_000);
  p.beforeCommit([event(t0 + 54_000)]);
  assert.equal(onDisk(dir), t0 + 54_000);
  const again = createDetectionPosition(dir);
  again.load();
  assert.equal(again.value(), t0 + 54_000, 'a restart resumes from the committed position');
});

test('the position never rises past a batch committed and not evaluated yet, nor waits for one whose commit failed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-position-'));
  const p = createDetectionPosition(dir);
  const t0 = Date.now();
  p.load();
  const start = onDisk(dir);
  // The bus commits b2 while detection evaluates b1: b1's evaluation must not cover b2's events.
  const b1 = [event(t0 + 1_000)];
  const b2 = [event(t0 + 2_000), event(t0 + 1_500)];
  p.beforeCommit(b1);
  p.handedOver(b1);
  p.beforeCommit(b2);
  p.evaluated(b1, t0 + 60_000);
  assert.equal(onDisk(dir), t0 + 1_500, 'held at the oldest event of the committed, unevaluated batch');
  // b3's commit fails (never handed over); b4 is committed and handed over behind it.
  const b3 = [event(t0 + 3_000)];
  p.handedOver(b2);
  p.beforeCommit(b3);
  const b4 = [event(t0 + 10_000)];
  p.beforeCommit(b4);
  p.handedOver(b4);
  p.evaluated(b2, t0 + 61_500);
  assert.equal(onDisk(dir), t0 + 10_000, "b3's failed commit holds nothing; b4 does until it is evaluated");
  p.evaluated(b4, t0 + 63_000);
  assert.equal(onDisk(dir), t0 + 58_000);
  assert.ok(start <= t0 + 1_500);
});

test('one array committed twice counts as two batches: each evaluation lets go of one, oldest first', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-position-'));
  const p = createDetectionPosition(dir);
  const t0 = Date.now();
  p.load();
  // A publisher that sends the same array again (after a failed commit, or by mistake) while the first is unevaluated.
  const a = [event(t0 - 1_000)];
  p.beforeCommit(a);
  p.handedOver(a);
  p.beforeCommit(a);
  p.handedOver(a);
  p.evaluated(a, t0 + 30_000);
  assert.equal(onDisk(dir) <= t0 - 1_000, true, 'the second copy still holds the position');
  p.evaluated(a, t0 + 31_000);
  const b = [event(t0 + 40_000)];
  p.beforeCommit(b);
  p.handedOver(b);
  p.evaluated(b, t0 + 60_000);
  assert.equal(onDisk(dir), t0 + 55_000, 'nothing left behind: the position rises to now less the margin');
});
