import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pageAndTotal } from './answer.ts';

/**
 * A search of `matches` events with pages of 100, against a stand-in engine (the page's rows cut to its
 * limit, their number for the count): what it answered and which statements ran.
 */
async function search(matches: number) {
  const ran: string[] = [];
  const query = async <R>(sql: string, params: Record<string, unknown>): Promise<R[]> => {
    ran.push(sql);
    if (sql === 'count') return [{ count: String(matches) }] as R[];
    return Array.from({ length: Math.min(matches, Number(params.limit)) }, (_, i) => ({ i })) as R[];
  };
  const { rows, total } = await pageAndTotal(query, {
    sql: 'page',
    countSql: 'count',
    params: { limit: 100 },
    limit: 100,
  });
  return { rows: rows.length, total, ran };
}

test('a page shorter than its limit is the whole answer: its length is the total, and no count runs', async () => {
  for (const matches of [0, 1, 99])
    assert.deepEqual(await search(matches), { rows: matches, total: matches, ran: ['page'] });
});

test('a full page is counted after it (the count runs once the page is read)', async () => {
  for (const matches of [100, 101, 250000]) {
    assert.deepEqual(await search(matches), { rows: 100, total: matches, ran: ['page', 'count'] });
  }
});
