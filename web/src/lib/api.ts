/**
 * The console's HTTP client for the Vigil API: bearer token from the session, error answers
 * (`{"error": {"code", "message", "details"}}`) turned into ApiError, and a way to tell an endpoint this
 * server does not have (a 404 "no route") from a resource that does not exist.
 */

/** A failed API call: the HTTP status (0 when the server could not be reached) and the server's error. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details?: Record<string, unknown>;
  /** Seconds the server asked to wait (429/503 with Retry-After). */
  readonly retryAfter?: number;

  constructor(
    status: number,
    code: string,
    message: string,
    opts: { details?: Record<string, unknown>; retryAfter?: number; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = opts.details;
    this.retryAfter = opts.retryAfter;
  }

  /** The server has no such endpoint (another role, or a feature this version lacks). */
  get missingRoute(): boolean {
    return this.status === 404 && this.message.startsWith('no route ');
  }
}

/** Describes an error for a person: what went wrong and, where it is known, what to do. */
export function describeError(err: unknown): { title: string; detail: string; action?: string } {
  if (!(err instanceof ApiError)) {
    return { title: 'Something went wrong in the console', detail: String((err as Error)?.message ?? err) };
  }
  if (err.status === 0) {
    return {
      title: 'Cannot reach the Vigil server',
      detail: err.message,
      action: 'Check that Vigil is running and that this machine can reach it, then try again.',
    };
  }
  if (err.status === 401) {
    return { title: 'Not signed in', detail: err.message, action: 'Sign in again with a valid token.' };
  }
  if (err.status === 403) {
    return { title: 'Not allowed', detail: err.message, action: 'Ask an administrator for a role that may do this.' };
  }
  if (err.missingRoute) {
    return {
      title: 'Not available on this server',
      detail: err.message,
      action: 'This Vigil node does not offer this feature (another role or an older version).',
    };
  }
  if (err.status === 429 || err.status === 503) {
    return {
      title: 'The server is busy',
      detail: err.message,
      action: `Try again${err.retryAfter ? ` in ${err.retryAfter} s` : ' shortly'}.`,
    };
  }
  if (err.status >= 500) {
    return {
      title: 'The server failed',
      detail: `${err.message} (HTTP ${err.status}, ${err.code})`,
      action: 'Try again; if it persists, the server log has the cause.',
    };
  }
  return { title: 'The request was refused', detail: err.message };
}

/** Where the client gets its token and whom it tells when the server refuses it. */
export interface ApiSession {
  token(): string | null;
  onUnauthorized(): void;
}

let session: ApiSession = { token: () => null, onUnauthorized: () => {} };

/** Sets the session the client uses (the app does this once at start; tests may replace it). */
export function setApiSession(s: ApiSession): void {
  session = s;
}

export interface RequestOptions {
  method?: string;
  /** A string is sent as is (with `contentType`); anything else as JSON. */
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
  /** Use this token instead of the session's (the login form checks a token before keeping it). */
  token?: string;
  /** Do not end the session on a 401 (the login form's own check). */
  keepSessionOn401?: boolean;
}

/** Calls the API; answers the parsed JSON (or the text, for non-JSON answers) or throws ApiError. */
export async function api<T = unknown>(path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = {};
  const token = opts.token ?? session.token();
  if (token) headers.authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    headers['content-type'] = opts.contentType ?? 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(path, { method: opts.method ?? 'GET', headers, body, signal: opts.signal });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(0, 'network', `the request to ${path.split('?')[0]} failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const text = await res.text();
  const isJson = (res.headers.get('content-type') ?? '').includes('json');
  let parsed: unknown = text;
  if (isJson && text !== '') {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (res.ok) return parsed as T;
  const e = (parsed as { error?: { code?: string; message?: string; details?: Record<string, unknown> } })?.error;
  const retry = Number(res.headers.get('retry-after'));
  const err = new ApiError(res.status, e?.code ?? `http_${res.status}`, e?.message ?? (res.statusText || 'error'), {
    details: e?.details,
    retryAfter: Number.isFinite(retry) && retry > 0 ? retry : undefined,
  });
  if (res.status === 401 && !opts.keepSessionOn401) session.onUnauthorized();
  throw err;
}

/** Builds a query string from the defined values. */
export function qs(params: Record<string, string | number | undefined | null>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}
