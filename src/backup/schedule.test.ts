import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backupConfigSchema } from './config.ts';
import { parseSchedule } from './schedule.ts';

const AT = Date.parse('2026-12-06T03:20:00Z');

test('backup.schedule: intervals and cron expressions (UTC) give the next run and the period', () => {
  const cases: [string, string, number][] = [
    ['6h', '2026-12-06T09:20:00.000Z', 6 * 3_600_000],
    ['30m', '2026-12-06T03:50:00.000Z', 1_800_000],
    ['1d', '2026-12-07T03:20:00.000Z', 86_400_000],
    ['0 */6 * * *', '2026-12-06T06:00:00.000Z', 6 * 3_600_000],
    ['15 3 * * *', '2026-12-07T03:15:00.000Z', 86_400_000],
  ];
  for (const [text, next, period] of cases) {
    const s = parseSchedule(text);
    assert.equal(new Date(s.next(AT)).toISOString(), next, text);
    assert.equal(s.periodMs(AT), period, text);
  }
});

test('backup.schedule: a bad schedule is a config error naming the key and the reason', () => {
  const cases: [string, RegExp][] = [
    ['10s', /shorter than one minute/],
    ['every hour', /neither an interval .* nor a five-field cron expression/],
    ['61 * * * *', /61/],
    ['6 hours', /neither an interval/],
  ];
  for (const [text, message] of cases) {
    const r = backupConfigSchema.safeParse({ schedule: text });
    assert.equal(r.success, false, text);
    assert.deepEqual(r.error?.issues[0].path, ['schedule']);
    assert.match(r.error?.issues[0].message ?? '', message, text);
  }
  assert.equal(backupConfigSchema.parse({}).schedule, '');
});
