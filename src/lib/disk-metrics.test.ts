import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { registerDiskMetrics } from './disk-metrics.ts';

test('the data folder disk metrics agree with df', async () => {
  const registry = new Registry();
  registerDiskMetrics(registry, tmpdir());
  const text = await registry.metrics();
  const ratio = Number(/^vigil_data_disk_used_ratio (\S+)$/m.exec(text)?.[1]);
  const free = Number(/^vigil_data_disk_free_bytes (\S+)$/m.exec(text)?.[1]);
  // df -P: 1024-byte blocks; Use% is used / (used + available), rounded up.
  const [, , used, avail, pct] = execFileSync('df', ['-P', tmpdir()], { encoding: 'utf8' })
    .trim()
    .split('\n')[1]
    .split(/\s+/);
  assert.ok(Math.abs(ratio - Number(used) / (Number(used) + Number(avail))) < 0.01, `${ratio} vs df ${pct}`);
  assert.ok(Math.abs(free - Number(avail) * 1024) < 64 * 1024 * 1024, `${free} vs df ${avail} KiB`);
});
