/**
 * Keeps events' `fields` objects in V8's fast mode. The normalizer adds an event's fields one key at a time
 * (`fields[key] = value`); V8 keeps such an object fast, its keys described once in a hidden class that
 * every object of the same keys shares, only up to about 16 keys: past them it turns the object into a hash
 * table of its own, unless the hidden class for the next key already exists. Creating the object with a
 * spread (`{ ...fields }`) makes those hidden classes, for up to about 128 keys, and from then on every
 * object built with the same keys in the same order stays fast.
 *
 * Why it matters: a request's normalized events live until the store has committed them, so each V8
 * scavenge during ingest copies, then promotes, every event built since the last one, and those pauses stall
 * the event loop that searches are answered on. A Mordor event's fields (55 keys) took about 3.8 KB as
 * a hash table and 2.0 KB fast (fields and event, its text apart), and were built in 13 to 14 µs instead of
 * 15 to 16 (20,000 events, in-process, best passes).
 *
 * Each shape (key sequence) seen is kept in a trie, and the trie's leaf keeps an object of its shape (its
 * values let go), so that V8 keeps the hidden classes (it drops those no live object uses). What is kept lives
 * as long as the process and is shared by every tenant, so it is bounded by what it costs, not by shapes:
 * a shape is learned only with at most {@link MAX_SHAPE_FIELDS} keys of at most {@link MAX_SHAPE_KEY_CHARS}
 * characters each (V8 keeps larger objects as hash tables anyway), and all shapes together cost at most
 * {@link MAX_SHAPE_KEYS}: a key of the trie counts one, a learned shape one per key (its object and hidden
 * classes; a review measured 47 KB kept per shape of 1,000 keys sharing a prefix, when only the trie's keys
 * were counted). Past the bound, new shapes stay hash tables, as every event's fields were before: slower to
 * build and larger, never different.
 */

/** A key of a shape; its children are the keys seen after it. */
interface ShapeKey {
  /** The first child (most keys have one: the next key of the only shape through here). */
  key?: string;
  child?: ShapeKey;
  /** The other children, by key. */
  more?: Map<string, ShapeKey>;
  /** An object with this shape's keys, set once the shape is made (see above). */
  made?: object;
}

/** The cost of all shapes kept, at most (see the module comment): a few thousand shapes of tens of keys each. */
export const MAX_SHAPE_KEYS = 100_000;
/** Most keys of a shape that is learned; V8 keeps objects of more keys in dictionary mode regardless. */
export const MAX_SHAPE_FIELDS = 128;
/** Longest key of a shape that is learned: keys past it are values in disguise (ids, paths, messages). */
export const MAX_SHAPE_KEY_CHARS = 128;

const root: ShapeKey = {};
let keysHeld = 0;

/**
 * Makes V8's hidden classes for the shape of `fields` the first time that shape is seen, so that the next
 * objects built with the same keys are fast (see the module comment). `fields` itself is left as it is.
 */
export function learnShape(fields: Record<string, unknown>): void {
  // Per event, the common case: a shape learned before, found in one walk of the trie.
  let node: ShapeKey | undefined = root;
  for (const k in fields) {
    node = node.key === k ? node.child : node.more?.get(k);
    if (node === undefined) break;
  }
  if (node?.made === undefined) learnNewShape(fields);
}

/** Adds a shape to the trie and makes its object, if it is within the bounds (see the module comment). */
function learnNewShape(fields: Record<string, unknown>): void {
  let count = 0;
  for (const k in fields) {
    if (++count > MAX_SHAPE_FIELDS || k.length > MAX_SHAPE_KEY_CHARS) return;
  }
  // At most one new trie key per field and one per field for the shape's object: checked before any is added.
  if (keysHeld + 2 * count > MAX_SHAPE_KEYS) return;
  let node = root;
  for (const k in fields) {
    let next: ShapeKey | undefined;
    if (node.key === k) next = node.child;
    else if (node.more !== undefined) next = node.more.get(k);
    if (next === undefined) {
      keysHeld++;
      next = {};
      if (node.key === undefined) {
        node.key = k;
        node.child = next;
      } else {
        node.more ??= new Map();
        node.more.set(k, next);
      }
    }
    node = next;
  }
  if (node.made !== undefined) return;
  keysHeld += count;
  const made: Record<string, unknown> = { ...fields };
  // Only the keys are wanted: the event's values are not kept past the event.
  for (const k in made) made[k] = null;
  node.made = made;
}

/** The cost of the shapes kept, as MAX_SHAPE_KEYS counts it (tests). */
export function shapeKeysHeld(): number {
  return keysHeld;
}
