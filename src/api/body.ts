import { InputError } from '../lib/errors.ts';

/**
 * Parses a JSON route body into an object, with a clear error: bodies arrive as text (see server.ts).
 * An empty body is refused with `empty_body`, or read as `{}` when `emptyIsObject` (a body of defaults).
 */
export function parseJsonBody(body: unknown, opts: { emptyIsObject?: boolean } = {}): Record<string, unknown> {
  if (typeof body !== 'string' || body.trim() === '') {
    if (opts.emptyIsObject) return {};
    throw new InputError('empty_body', 'expected a JSON object body');
  }
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    throw new InputError('malformed_json', `the body is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InputError('malformed_json', 'expected a JSON object body');
  }
  return value as Record<string, unknown>;
}

/** Refuses keys a body may not have, naming them (a typo should not be silently ignored). */
export function onlyKeys(body: Record<string, unknown>, allowed: readonly string[]): void {
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw new InputError('unknown_field', `unknown field ${unknown.join(', ')}; expected ${allowed.join(', ')}`, {
      fields: unknown,
    });
  }
}
