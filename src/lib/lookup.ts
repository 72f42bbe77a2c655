/**
 * A frozen lookup table without a prototype, for tables indexed by names users write (query fields,
 * aggregate functions, event field names): `constructor`, `toString` or `__proto__` find nothing in it,
 * where a plain object literal would answer with Object.prototype's members.
 */
export function lookup<T>(entries: Record<string, T>): Readonly<Record<string, T>> {
  return Object.freeze(Object.assign(Object.create(null) as Record<string, T>, entries));
}
