import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InputError, OverloadError, VigilError } from './errors.ts';

test('errors carry a stable code, an HTTP status and whether a retry helps', () => {
  const input = new InputError('bad_query', 'unexpected token', { position: 3 });
  assert.equal(input.status, 400);
  assert.equal(input.code, 'bad_query');
  assert.ok(input instanceof VigilError);
  const overload = new OverloadError('queue full', 2);
  assert.equal(overload.retryable, true);
  assert.equal(overload.retryAfterSeconds, 2);
});
