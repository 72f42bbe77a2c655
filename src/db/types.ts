import { VigilError } from '../lib/errors.ts';
import { retry } from '../lib/retry.ts';

/** What runs SQL: the database itself, or a transaction of it. Parameters are `$1, $2...`, never spliced. */
export interface Queryable {
  /** Runs one statement and returns its rows (use RETURNING to learn what an INSERT/UPDATE touched). */
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<R[]>;
}

/**
 * The one SQL interface of Vigil's state (incidents, users, audit, notifications): PGlite or PostgreSQL
 * behind it, one dialect and one code path. `bigint` columns come back as JS numbers on both.
 */
export interface Db extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /**
   * Runs `fn` in a transaction: committed when it resolves, rolled back when it throws. Inside `fn`, use
   * only `tx` (on PGlite, a query on the Db itself would wait for the transaction forever).
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
  /** Why this Db can answer no more (PGlite's thread died), when it is so: it must be opened again. */
  lost?(): string | undefined;
}

/**
 * A database failure, with the SQLSTATE when the server sent one; `retryable` when a retry can help. A value
 * the database cannot hold (SQLSTATE class 22, data exception: a NUL byte in text, a number out of range,
 * text that is not a uuid) came from a client: `invalid_value`, 400. The message never holds SQL, since
 * API answers show it; `statement` (the statement's first words) is for logs.
 */
export class DbError extends VigilError {
  readonly sqlState?: string;
  readonly statement?: string;
  constructor(message: string, opts: { cause?: unknown; sqlState?: string; retryable?: boolean; statement?: string }) {
    const invalid = !opts.retryable && opts.sqlState?.startsWith('22') === true;
    super(invalid ? 'invalid_value' : 'database_error', message, {
      status: invalid ? 400 : opts.retryable ? 503 : 500,
      retryable: opts.retryable,
      cause: opts.cause,
    });
    this.name = 'DbError';
    this.sqlState = opts.sqlState;
    this.statement = opts.statement;
  }
}

/** SQLSTATE classes and codes a retry can cure: lost connections, failover, serialization, deadlock. */
const RETRYABLE_STATES = new Set(['40001', '40P01', '25006', '57P01', '57P02', '57P03', '53300', '55P03']);
const RETRYABLE_NET = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH']);

/** Whether an error from a driver is worth retrying (a connection failed, or the server asked for it). */
export function isRetryableDbError(err: unknown): boolean {
  if (err instanceof DbError) return err.retryable;
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (code.startsWith('08') || RETRYABLE_STATES.has(code) || RETRYABLE_NET.has(code)) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  // node-postgres reports a socket closed under it with these messages and no code.
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(message);
}

/** Wraps a driver error with the statement's first words (never its parameters, never in the message) and whether to retry. */
export function wrapDbError(err: unknown, sql: string): DbError {
  if (err instanceof DbError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const sqlState = typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  const what = sql.trim().split(/\s+/).slice(0, 4).join(' ');
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const retryable = isRetryableDbError(err);
  const text = sqlState?.startsWith('22') && !retryable ? `a value is not valid: ${message}` : message;
  return new DbError(text, { cause: err, sqlState, retryable, statement: what });
}

/** Runs `fn`, retrying retryable database errors with exponential backoff and full jitter until `deadline`. */
export async function withDbRetry<T>(
  fn: () => Promise<T>,
  opts: {
    initialMs: number;
    maxMs: number;
    /** Epoch ms after which the last error is thrown. */
    deadline: () => number;
    onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  },
): Promise<T> {
  return retry(fn, {
    backoff: { initialMs: opts.initialMs, maxMs: opts.maxMs, jitter: 'equal' },
    deadline: opts.deadline,
    retryable: isRetryableDbError,
    onRetry: (err, attempt, delayMs) => opts.onRetry?.(err, attempt + 1, delayMs),
  });
}
