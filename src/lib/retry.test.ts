import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Backoff, backoffDelay, retry, shouldLog, sleep } from './retry.ts';

const cases: { name: string; backoff: Backoff; attempts: number[]; want: number[]; random?: number }[] = [
  {
    name: 'doubles from initialMs and stops at maxMs',
    backoff: { initialMs: 100, maxMs: 2000 },
    attempts: [0, 1, 2, 3, 4, 5, 6],
    want: [100, 200, 400, 800, 1600, 2000, 2000],
  },
  {
    name: 'a cap that is not a power of the factor is reached exactly',
    backoff: { initialMs: 100, maxMs: 5000 },
    attempts: [5, 6, 7],
    want: [3200, 5000, 5000],
  },
  {
    name: 'another factor',
    backoff: { initialMs: 10, maxMs: 10_000, factor: 3 },
    attempts: [0, 1, 2, 3],
    want: [10, 30, 90, 270],
  },
  {
    name: 'huge attempts neither overflow nor turn NaN',
    backoff: { initialMs: 50, maxMs: 1000 },
    attempts: [1e6, Number.MAX_SAFE_INTEGER],
    want: [1000, 1000],
  },
  {
    name: 'an initial wait of 0 stays 0',
    backoff: { initialMs: 0, maxMs: 1000 },
    attempts: [0, 10, 1e6],
    want: [0, 0, 0],
  },
  {
    name: 'equal jitter with random 0 waits half the schedule',
    backoff: { initialMs: 100, maxMs: 1000, jitter: 'equal' },
    attempts: [0, 1, 10],
    want: [50, 100, 500],
    random: 0,
  },
  {
    name: 'equal jitter with random near 1 waits the whole schedule',
    backoff: { initialMs: 100, maxMs: 1000, jitter: 'equal' },
    attempts: [0, 1, 10],
    want: [100, 200, 1000],
    random: 0.9999999,
  },
];

for (const c of cases) {
  test(`backoffDelay: ${c.name}`, () => {
    const got = c.attempts.map((a) => backoffDelay(a, c.backoff, () => c.random ?? Math.random()));
    assert.deepEqual(got, c.want);
  });
}

test('backoffDelay: jittered waits stay within [half, all] of the schedule', () => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = Math.min(2000, 20 * 2 ** attempt);
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(attempt, { initialMs: 20, maxMs: 2000, jitter: 'equal' });
      assert.ok(d >= ceiling / 2 && d <= ceiling, `attempt ${attempt}: ${d} outside [${ceiling / 2}, ${ceiling}]`);
    }
  }
});

const retryCases: {
  name: string;
  failures: number;
  opts: (signal: AbortSignal) => Parameters<typeof retry>[1];
  abortAfterMs?: number;
  want: { value?: string; error?: string; calls: number; retried: number[] };
}[] = [
  {
    name: 'succeeds after failures, waiting the schedule between them',
    failures: 3,
    opts: () => ({ backoff: { initialMs: 1, maxMs: 4 } }),
    want: { value: 'ok', calls: 4, retried: [1, 2, 4] },
  },
  {
    name: 'a non-retryable error is thrown at once',
    failures: 5,
    opts: () => ({ backoff: { initialMs: 1, maxMs: 4 }, retryable: () => false }),
    want: { error: 'fail 0', calls: 1, retried: [] },
  },
  {
    name: 'the deadline ends the retries with the last error',
    failures: 100,
    opts: () => ({ backoff: { initialMs: 20, maxMs: 20 }, deadline: Date.now() + 50 }),
    want: { error: 'fail 2', calls: 3, retried: [20, 20] },
  },
  {
    name: 'an abort ends the wait at once and throws the last error',
    failures: 100,
    opts: (signal) => ({ backoff: { initialMs: 60_000, maxMs: 60_000 }, signal }),
    abortAfterMs: 20,
    want: { error: 'fail 0', calls: 1, retried: [60_000] },
  },
];

for (const c of retryCases) {
  test(`retry: ${c.name}`, async () => {
    const halt = new AbortController();
    if (c.abortAfterMs !== undefined) setTimeout(() => halt.abort(), c.abortAfterMs);
    let calls = 0;
    const retried: number[] = [];
    const t0 = Date.now();
    const run = retry(
      async (attempt) => {
        calls++;
        assert.equal(attempt, calls - 1, 'attempts are numbered from 0');
        if (attempt < c.failures) throw new Error(`fail ${attempt}`);
        return 'ok';
      },
      { ...c.opts(halt.signal), onRetry: (_err, _attempt, delay) => retried.push(delay) },
    );
    if (c.want.error) await assert.rejects(run, { message: c.want.error });
    else assert.equal(await run, c.want.value);
    assert.equal(calls, c.want.calls);
    assert.deepEqual(retried, c.want.retried);
    assert.ok(Date.now() - t0 < 2000, 'an abort or a deadline does not wait a schedule out');
  });
}

test('sleep: resolves after the time, at once on an aborted signal, and early on abort', async () => {
  const table: { name: string; ms: number; abortAt?: number; preAborted?: boolean; min: number; max: number }[] = [
    { name: 'plain', ms: 30, min: 25, max: 1000 },
    { name: 'zero', ms: 0, min: 0, max: 50 },
    { name: 'already aborted', ms: 60_000, preAborted: true, min: 0, max: 50 },
    { name: 'aborted while sleeping', ms: 60_000, abortAt: 20, min: 15, max: 1000 },
  ];
  for (const row of table) {
    const halt = new AbortController();
    if (row.preAborted) halt.abort();
    if (row.abortAt !== undefined) setTimeout(() => halt.abort(), row.abortAt);
    const t0 = Date.now();
    await sleep(row.ms, halt.signal);
    const took = Date.now() - t0;
    assert.ok(took >= row.min && took <= row.max, `${row.name}: took ${took} ms`);
  }
});

test('shouldLog: the first failure, then one in every N', () => {
  const table: [number, number, boolean][] = [
    [0, 20, true],
    [1, 20, false],
    [19, 20, false],
    [20, 20, true],
    [40, 20, true],
    [25, 25, true],
    [26, 25, false],
  ];
  for (const [attempt, every, want] of table) assert.equal(shouldLog(attempt, every), want, `${attempt}/${every}`);
});
