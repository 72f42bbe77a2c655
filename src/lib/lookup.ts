/**
 * A frozen lookup table without a prototype, for tables indexed by names users write (query fields,
 * aggregate functions, event field names): `constructor`, `toString` or `__proto__` find nothing in it,
 * where a plain object literal would answer with Object.prototype's members.
 */
export function lookup<T>(entries: Record<string, T>): Readonly<Record<string, T>> {
  return Object.freeze(Object.assign(Object.create(null) as Record<string, T>, entries));
}

/**
 * `target[key] = value` for a key users wrote: a key `__proto__` becomes an own entry like any other, where
 * the assignment would replace the object's prototype (and hide the value from `Object.keys` and JSON).
 */
export function setOwn<T>(target: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__')
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}
