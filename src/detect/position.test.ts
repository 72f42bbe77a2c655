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
  p.beforeCommit([event(t0 + 50), event(t0 - 2000), event(t0 + 10)]);
  assert.equal(onDisk(dir), t0 - 2000);
  // Newer batches leave it where it is.
  p.beforeCommit([event(t0 + 100)]);
  assert.equal(onDisk(dir), t0 - 2000);
  // Evaluated: it rises, trailing the clock, at most once a second.
  p.evaluated(t0 + 60_000);
  assert.equal(onDisk(dir), t0 + 55_000);
  p.evaluated(t0 + 60_500);
  assert.equal(onDisk(dir), t0 + 55_000);
  p.beforeCommit([event(t0 + 54_000)]);
  assert.equal(onDisk(dir), t0 + 54_000);
  const again = createDetectionPosition(dir);
  again.load();
  assert.equal(again.value(), t0 + 54_000, 'a restart resumes from the committed position');
});
