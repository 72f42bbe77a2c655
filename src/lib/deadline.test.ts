import assert from 'node:assert/strict';
import { test } from 'node:test';
import { remainingMs, settleBy, withTimeout } from './deadline.ts';

test('remainingMs: time left, never negative', () => {
  const table: [number, number, number][] = [
    [1000, 400, 600],
    [1000, 1000, 0],
    [1000, 5000, 0],
  ];
  for (const [deadline, now, want] of table) assert.equal(remainingMs(deadline, now), want);
});

const later = <T>(ms: number, value: T) => new Promise<T>((r) => setTimeout(() => r(value), ms));
const failLater = (ms: number) => new Promise<never>((_, j) => setTimeout(() => j(new Error('work failed')), ms));

const settleCases: {
  name: string;
  work: () => Promise<unknown> | undefined;
  deadlineInMs: number;
  want: boolean | 'rejects';
  maxMs: number;
}[] = [
  { name: 'work done in time', work: () => later(10, 'x'), deadlineInMs: 1000, want: true, maxMs: 500 },
  { name: 'deadline first', work: () => later(5000, 'x'), deadlineInMs: 30, want: false, maxMs: 500 },
  { name: 'deadline already passed', work: () => later(5000, 'x'), deadlineInMs: -100, want: false, maxMs: 100 },
  { name: 'no work', work: () => undefined, deadlineInMs: 1000, want: true, maxMs: 50 },
  { name: 'work failing in time rejects', work: () => failLater(10), deadlineInMs: 1000, want: 'rejects', maxMs: 500 },
  {
    name: 'work failing after the deadline',
    work: () => failLater(200).catch(() => {}),
    deadlineInMs: 20,
    want: false,
    maxMs: 150,
  },
];

for (const c of settleCases) {
  test(`settleBy: ${c.name}`, async () => {
    const t0 = Date.now();
    const run = settleBy(c.work(), Date.now() + c.deadlineInMs);
    if (c.want === 'rejects') await assert.rejects(run, { message: 'work failed' });
    else assert.equal(await run, c.want);
    assert.ok(Date.now() - t0 <= c.maxMs, `took ${Date.now() - t0} ms`);
  });
}

test('withTimeout: the work, its failure, or the timeout error', async () => {
  const table: { name: string; work: () => Promise<string>; ms: number; want: string; error?: string }[] = [
    { name: 'in time', work: () => later(5, 'done'), ms: 500, want: 'done' },
    { name: 'too slow', work: () => later(2000, 'done'), ms: 20, want: '', error: 'no answer in 20 ms' },
    { name: 'fails first', work: () => failLater(5), ms: 500, want: '', error: 'work failed' },
  ];
  for (const row of table) {
    const run = withTimeout(row.work(), row.ms, () => new Error(`no answer in ${row.ms} ms`));
    if (row.error) await assert.rejects(run, { message: row.error }, row.name);
    else assert.equal(await run, row.want, row.name);
  }
});
