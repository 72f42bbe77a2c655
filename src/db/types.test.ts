import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openPgliteFromTemplate } from '../../test/harness/postgres.ts';
import { type Db, DbError, wrapDbError } from './types.ts';

// Found by test/integration/api.fuzz.test.ts: `GET /api/v1/incidents/%00` answered 500 database_error with
// `SELECT * FROM incidents...` in the message. A value the database cannot hold is the client's, and no
// answer shows SQL.
describe('database errors', () => {
  let db: Db;
  before(async () => {
    db = await openPgliteFromTemplate();
  });
  after(async () => {
    await db?.close();
  });

  for (const [what, sql, params] of [
    ['a NUL byte in text', 'SELECT $1::text AS v', ['a\u0000b']],
    ['a number out of range', 'SELECT $1::int AS v', ['99999999999']],
    ['a value of the wrong type', 'SELECT $1::uuid AS v', ['not-a-uuid']],
  ] as const) {
    test(`${what} is a client error (400 invalid_value), its message shows no SQL`, async () => {
      const err = await db.query(sql, [...params]).then(
        () => assert.fail('the query should fail'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof DbError, String(err));
      assert.equal(err.status, 400);
      assert.equal(err.code, 'invalid_value');
      assert.equal(err.retryable, false);
      assert.doesNotMatch(err.message, /SELECT|\$1/);
    });
  }

  test('a database failure keeps its statement out of the message, for logs only', () => {
    const err = wrapDbError(
      Object.assign(new Error('relation "nope" does not exist'), { code: '42P01' }),
      'SELECT * FROM nope WHERE id = $1',
    );
    assert.equal(err.status, 500);
    assert.equal(err.code, 'database_error');
    assert.doesNotMatch(err.message, /SELECT|FROM nope/);
    assert.equal(err.statement, 'SELECT * FROM nope');
  });
});
