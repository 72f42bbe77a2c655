/**
 * The one error base class of Vigil. Every failure has a stable `code`, an HTTP status for the API,
 * whether retrying can help, and the original `cause`. See docs/errors.md for the list of codes.
 */
export class VigilError extends Error {
  readonly code: string;
  readonly status: number;
  readonly retryable: boolean;
  /** Structured details that are safe to show to a client (never secrets). */
  readonly details?: Record<string, unknown>;

  constructor(
    code: string,
    message: string,
    opts: { status?: number; retryable?: boolean; cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'VigilError';
    this.code = code;
    this.status = opts.status ?? 500;
    this.retryable = opts.retryable ?? false;
    this.details = opts.details;
  }
}

/** Bad input from a client: what was wrong, where, and why. */
export class InputError extends VigilError {
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(code, message, { status: 400, details });
    this.name = 'InputError';
  }
}

/**
 * No such object, or one the caller may not see: both answer the same 404 (`no <what> <id>`), so that an id
 * of another tenant tells nothing about what exists there.
 */
export class NotFoundError extends VigilError {
  constructor(what: string, id: string) {
    super('not_found', `no ${what} ${id}`, { status: 404 });
    this.name = 'NotFoundError';
  }
}

/** A bounded queue or limit is full; the client should retry after `retryAfterSeconds`. */
export class OverloadError extends VigilError {
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds = 1, status = 503, code = 'overloaded') {
    super(code, message, { status, retryable: true });
    this.name = 'OverloadError';
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Describes any thrown value as a message, for logs and wrapped errors. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
