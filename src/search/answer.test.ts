import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pageAndTotal } from './answer.ts';

/** A stand-in engine: `matches` rows for the page (cut to its limit), their number for the count. */
function engine(matches: number) {
  const ran: string[] = [];
  const query = async <R>(sql: string, params: Record<string, unknown>): Promise<R[]> => {
    ran.push(sql);
    if (sql === 'count') return [{ count: String(matches) }] as R[];
    return Array.from({ length: Math.min(matches, Number(params.limit)) }, (_, i) => ({ i })) as R[];
  };
  return { ran, query };
}

test('a page shorter than its limit is the whole answer: its length is the total, and no count runs', async () => {
  for (const matches of [0, 1, 99]) {
    const e = engine(matches);
    const { rows, total } = await pageAndTotal(e.query, {
      sql: 'page',
      countSql: 'count',
      params: { limit: 100 },
      limit: 100,
    });
    assert.equal(rows.length, matches);
    assert.equal(total, matches);
    assert.deepEqual(e.ran, ['page']);
  }
});

test('a full page is counted after it (the count runs once the page is read)', async () => {
  for (const matches of [100, 101, 250000]) {
    const e = engine(matches);
    const { rows, total } = await pageAndTotal(e.query, {
      sql: 'page',
      countSql: 'count',
      params: { limit: 100 },
      limit: 100,
    });
    assert.equal(rows.length, 100);
    assert.equal(total, matches);
    assert.deepEqual(e.ran, ['page', 'count']);
  }
});
