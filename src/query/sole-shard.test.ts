import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileStore } from '../../test/harness/event-store.ts';
import { eventsOf } from '../store/materialize/shard-fixtures.ts';
import { compileQuery, planDistributed } from './index.ts';
import { parseQuery } from './parser.ts';

// A store whose rows are all of shard 1 of S: what a node that holds that shard only has.
const S = 4;
const store = fileStore('vigil-sole-shard-');

test('a shard part compiled as the sole shard of its store has no shard filter, and counts the same there', async () => {
  await store().write(eventsOf('t1', 1, 10, S, 'sole'));
  const opts = { from: 0, to: 2e12, limit: 100, tenants: ['t1'], now: Date.now() };
  for (const q of ['* | stats count()', 'event']) {
    const plan = planDistributed(parseQuery(q), opts);
    assert.match(plan.shard(1, S).sql, /murmurHash3_32\(id\)/, q);
    assert.doesNotMatch(plan.shard(1, S, true).sql, /murmurHash3_32/, q);
  }
  // Every row of this store is of shard 1: the part without the filter counts what a single node does.
  const single = compileQuery('* | stats count()', opts);
  const [whole] = await store().query<{ count: string }>(single.sql, single.params);
  const part = planDistributed(parseQuery('* | stats count()'), opts).shard(1, S, true);
  const filtered = planDistributed(parseQuery('* | stats count()'), opts).shard(1, S);
  const states = await store().query<Record<string, string>>(
    `SELECT countMerge(CAST(base64Decode(\`$a0\`), 'AggregateFunction(count)')) AS n FROM (${part.sql.replace(/\nSETTINGS[^\n]*$/, '')})`,
    part.params,
  );
  const statesFiltered = await store().query<Record<string, string>>(
    `SELECT countMerge(CAST(base64Decode(\`$a0\`), 'AggregateFunction(count)')) AS n FROM (${filtered.sql.replace(/\nSETTINGS[^\n]*$/, '')})`,
    filtered.params,
  );
  assert.equal(Number(states[0].n), Number(whole.count));
  assert.equal(Number(statesFiltered[0].n), Number(whole.count));
  assert.equal(Number(whole.count), 10);
});
