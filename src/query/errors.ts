import { InputError } from '../lib/errors.ts';

/**
 * A query that cannot be parsed or compiled: `details.position` is the 1-based column where the problem
 * is, `details.hint` says what was expected. Always a client error (HTTP 400), never retryable.
 */
export class QuerySyntaxError extends InputError {
  readonly position: number;
  readonly hint: string;

  constructor(hint: string, position: number) {
    super('query_syntax', `Query syntax error at column ${position}: ${hint}`, { position, hint });
    this.name = 'QuerySyntaxError';
    this.position = position;
    this.hint = hint;
  }
}
