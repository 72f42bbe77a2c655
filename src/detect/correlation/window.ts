/**
 * Internal: the sliding event-time window of one group of one correlation, with the aggregates each
 * correlation type needs kept up to date as matches enter and leave. Not part of the public API.
 */

/** How a correlation aggregates its window. */
export type Aggregation =
  | 'count' // event_count: matches in the window
  | 'distinct' // value_count: distinct values of `field`
  | 'sum' // value_sum
  | 'avg' // value_avg
  | 'percentile' // value_percentile with `percentile`: that percentile of the numeric field
  | 'share' // value_percentile without `percentile`: share (%) of the arriving value among all values
  | 'rules' // temporal: distinct referenced rules seen
  | 'ordered'; // temporal_ordered: longest prefix of the rules seen in order

/** One retained match. */
export interface Entry {
  /** Event time, epoch ms. */
  t: number;
  /** Arrival sequence, to keep ties in arrival order. */
  seq: number;
  /** Dedupe key: the match id, plus the rule index for temporal types. */
  key: string;
  ruleIdx: number;
  /** Canonical value (distinct, share) or number (sum, avg, percentile). */
  value?: string | number;
  /** The base events behind the match (one for an event; several for a chained correlation alert). */
  eventIds: readonly string[];
}

/** Entries in event-time order with aggregates; `newest` is the newest event time the group has seen. */
export class GroupWindow {
  readonly key: string;
  newest = Number.NEGATIVE_INFINITY;
  /** Whether the condition held at the last evaluation (edge trigger). */
  active = false;
  /** share mode: values whose share held the condition at their last evaluation. */
  readonly activeValues = new Set<string>();
  /** Arrival sequence of the last update, for least-recently-updated eviction. */
  lastSeq = 0;
  /** Links of the GroupIndex recency list. */
  prev: GroupWindow | undefined;
  next: GroupWindow | undefined;

  private entries: Entry[] = [];
  private head = 0;
  private readonly keys = new Set<string>();
  private readonly counts = new Map<string, number>();
  private sum = 0;
  private nonIntegers = 0;
  private readonly sorted: number[] = [];
  /** ordered mode: event times per rule index, ascending. */
  private readonly ruleTimes: number[][] = [];

  constructor(
    key: string,
    private readonly agg: Aggregation,
  ) {
    this.key = key;
  }

  get size(): number {
    return this.entries.length - this.head;
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  /** Drops entries older than `cutoff`; returns how many were dropped. */
  evictBefore(cutoff: number): number {
    let dropped = 0;
    while (this.head < this.entries.length && this.entries[this.head].t < cutoff) {
      this.remove(this.entries[this.head]);
      this.head++;
      dropped++;
    }
    // Compact lazily so eviction stays O(1) amortized.
    if (this.head > 64 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    return dropped;
  }

  /** Inserts in event-time order (ties after existing entries) and updates the aggregates. */
  insert(entry: Entry): void {
    let lo = this.head;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.entries[mid].t <= entry.t) lo = mid + 1;
      else hi = mid;
    }
    this.entries.splice(lo, 0, entry);
    this.keys.add(entry.key);
    if (entry.t > this.newest) this.newest = entry.t;
    switch (this.agg) {
      case 'distinct':
      case 'share':
        bump(this.counts, entry.value as string, 1);
        break;
      case 'rules':
        bump(this.counts, String(entry.ruleIdx), 1);
        break;
      case 'sum':
      case 'avg':
        this.sum += entry.value as number;
        if (!Number.isInteger(entry.value)) this.nonIntegers++;
        break;
      case 'percentile':
        this.sorted.splice(lowerBound(this.sorted, entry.value as number), 0, entry.value as number);
        break;
      case 'ordered': {
        this.ruleTimes[entry.ruleIdx] ??= [];
        const times = this.ruleTimes[entry.ruleIdx];
        times.splice(lowerBound(times, entry.t), 0, entry.t);
        break;
      }
      default:
        break;
    }
  }

  /**
   * The aggregate value of the window. `arriving` is the value of the match being evaluated (share mode);
   * `ruleCount` the number of referenced rules (ordered mode); `percentile` the rank (percentile mode).
   */
  value(arriving: string | undefined, ruleCount: number, percentile: number): number | undefined {
    switch (this.agg) {
      case 'count':
        return this.size;
      case 'distinct':
        return this.counts.size;
      case 'rules':
        return this.counts.size;
      case 'sum':
        return this.total();
      case 'avg':
        return this.size === 0 ? undefined : this.total() / this.size;
      case 'percentile':
        return percentileOf(this.sorted, percentile);
      case 'share':
        return this.size === 0 || arriving === undefined
          ? undefined
          : (100 * (this.counts.get(arriving) ?? 0)) / this.size;
      case 'ordered':
        return this.orderedPrefix(ruleCount);
    }
  }

  /** Entries in event-time order. */
  view(): readonly Entry[] {
    return this.entries.slice(this.head);
  }

  first(): Entry | undefined {
    return this.entries[this.head];
  }

  last(): Entry | undefined {
    return this.size === 0 ? undefined : this.entries[this.entries.length - 1];
  }

  private remove(entry: Entry): void {
    this.keys.delete(entry.key);
    switch (this.agg) {
      case 'distinct':
      case 'share':
        if (bump(this.counts, entry.value as string, -1) === 0) this.activeValues.delete(entry.value as string);
        break;
      case 'rules':
        bump(this.counts, String(entry.ruleIdx), -1);
        break;
      case 'sum':
      case 'avg':
        this.sum -= entry.value as number;
        if (!Number.isInteger(entry.value)) this.nonIntegers--;
        break;
      case 'percentile':
        this.sorted.splice(lowerBound(this.sorted, entry.value as number), 1);
        break;
      case 'ordered': {
        const times = this.ruleTimes[entry.ruleIdx];
        times.splice(lowerBound(times, entry.t), 1);
        break;
      }
      default:
        break;
    }
  }

  /**
   * The running sum is exact for integers (below 2^53). With fractions in the window it is recomputed in
   * window order, so the result depends only on the window's contents, not on what entered and left before:
   * a replay that starts later computes the same bits.
   */
  private total(): number {
    if (this.nonIntegers === 0) return this.sum;
    let s = 0;
    for (let i = this.head; i < this.entries.length; i++) s += this.entries[i].value as number;
    return s;
  }

  /** The longest prefix of rules 0..n-1 with hits at non-decreasing event times (ties count as in order). */
  private orderedPrefix(ruleCount: number): number {
    let prev = Number.NEGATIVE_INFINITY;
    for (let k = 0; k < ruleCount; k++) {
      const times = this.ruleTimes[k];
      const i = times ? lowerBound(times, prev) : 0;
      if (!times || i >= times.length) return k;
      prev = times[i];
    }
    return ruleCount;
  }
}

/**
 * Groups by key in least-recently-updated order. The order is an intrusive list rather than a Map's insertion
 * order: deleting from the front of a Map leaves tombstones that every later iteration from the front skips,
 * which made expiry O(groups) per match.
 */
export class GroupIndex {
  private readonly byKey = new Map<string, GroupWindow>();
  private head: GroupWindow | undefined;
  private tail: GroupWindow | undefined;

  get(key: string): GroupWindow | undefined {
    return this.byKey.get(key);
  }

  /** Adds the group, or moves it to the most recently updated end. */
  touch(g: GroupWindow): void {
    if (this.byKey.get(g.key) === g) {
      if (this.tail === g) return;
      this.unlink(g);
    } else {
      this.byKey.set(g.key, g);
    }
    g.prev = this.tail;
    g.next = undefined;
    if (this.tail) this.tail.next = g;
    else this.head = g;
    this.tail = g;
  }

  delete(g: GroupWindow): void {
    if (this.byKey.get(g.key) !== g) return;
    this.byKey.delete(g.key);
    this.unlink(g);
  }

  /** The least recently updated group. */
  oldest(): GroupWindow | undefined {
    return this.head;
  }

  private unlink(g: GroupWindow): void {
    if (g.prev) g.prev.next = g.next;
    else this.head = g.next;
    if (g.next) g.next.prev = g.prev;
    else this.tail = g.prev;
    g.prev = undefined;
    g.next = undefined;
  }
}

function bump(map: Map<string, number>, key: string, by: number): number {
  const n = (map.get(key) ?? 0) + by;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
  return n;
}

function lowerBound(sorted: number[], v: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Linear interpolation between closest ranks (numpy's default), `p` in 0..100. */
export function percentileOf(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}
