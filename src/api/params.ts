import { InputError } from '../lib/errors.ts';

/** A decimal integer as a client writes one: digits only, an optional minus, at most 15 digits (exact in a double). */
const DECIMAL = /^-?\d{1,15}$/;

/**
 * Reads an integer query parameter strictly: only decimal digits, within [min, max]. `Number()` alone
 * would take `1e3`, `0x10`, `0b1`, ` 5 ` and `''` (0), so that a client's mistake went unnoticed or meant
 * something else than it wrote. A bad value answers 400 `bad_<name>`, naming the range.
 */
export function parseIntParam(raw: string, name: string, min: number, max: number): number {
  const n = DECIMAL.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const shown = raw.length > 32 ? `${raw.slice(0, 32)}...` : raw;
    throw new InputError(
      `bad_${name}`,
      `${name} must be a decimal integer from ${min} to ${max}, got ${JSON.stringify(shown)}`,
      {
        parameter: name,
      },
    );
  }
  return n;
}
