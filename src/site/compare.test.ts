import assert from 'node:assert/strict';
import { test } from 'node:test';
import { differingHours, hourRange, MAX_SUMMARY_HOURS, type SiteSummary } from './compare.ts';

test('a compare range is whole hours, after its start, at most a month; anything else is a 400', () => {
  assert.deepEqual(hourRange('2026-12-06T08:20:00Z', '2026-12-06T09:05:00Z'), {
    from: Date.parse('2026-12-06T08:00:00Z'),
    to: Date.parse('2026-12-06T10:00:00Z'),
  });
  assert.deepEqual(
    hourRange(String(Date.parse('2026-12-06T08:00:00Z')), '2026-12-06T09:00:00Z').to,
    Date.parse('2026-12-06T09:00:00Z'),
  );
  for (const [from, to, re] of [
    [undefined, '2026-12-06T09:00:00Z', /from is required/],
    ['yesterday', '2026-12-06T09:00:00Z', /from is not a time/],
    ['2026-12-06T09:00:00Z', '2026-12-06T09:00:00Z', /to must be after from/],
    ['2026-01-01T00:00:00Z', '2026-12-06T09:00:00Z', new RegExp(`more than ${MAX_SUMMARY_HOURS} hours`)],
  ] as const) {
    assert.throws(
      () => hourRange(from, to),
      (err: Error & { code?: string; status?: number }) =>
        err.code === 'bad_range' && err.status === 400 && re.test(err.message),
    );
  }
});

test('hours differ when a count or a hash differs, or when one site has nothing in that hour', () => {
  const h1 = '2026-12-06T08:00:00.000Z';
  const h2 = '2026-12-06T09:00:00.000Z';
  const a: SiteSummary = {
    site: 'a',
    from: h1,
    to: h2,
    hours: {
      [h1]: { events: { count: 3, hash: 'ab' }, alerts: { count: 1, hash: '12' } },
      [h2]: { events: { count: 1, hash: 'ff' }, alerts: { count: 0, hash: '0' } },
    },
  };
  const b: SiteSummary = {
    site: 'b',
    from: h1,
    to: h2,
    hours: { [h1]: { events: { count: 3, hash: 'ac' }, alerts: { count: 1, hash: '12' } } },
  };
  const d = differingHours(a, b);
  assert.deepEqual(
    d.map((x) => [x.hour, x.kind, x.equal, x.counts]),
    [
      [h1, 'events', false, { a: 3, b: 3 }],
      [h1, 'alerts', true, { a: 1, b: 1 }],
      [h2, 'events', false, { a: 1, b: 0 }],
      [h2, 'alerts', true, { a: 0, b: 0 }],
    ],
  );
  assert.ok(differingHours(a, a).every((x) => x.equal));
});
