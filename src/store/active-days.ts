import { MAX_EVENT_TIME_MS, type NormalizedEvent, storedTime } from '../lib/event.ts';

const DAY_MS = 86_400_000;

/** Most distinct days a chunk may span and still leave work to merges (a live stream spans one or two). */
const MAX_CHUNK_DAYS = 4;

/** Most days remembered; past it the oldest are forgotten (their next INSERT does all its work itself). */
const MAX_DAYS = 256;

/**
 * The days (partitions of the events table, `toDate(ts)` in UTC) this store committed an INSERT to, and when.
 * A chunk whose every day got an INSERT within `windowMs` goes into a partition that already has a part, so
 * its own part will be merged with it: by the engine's merges, or at the latest by the force merge once the
 * partition has had no write for FORCE_MERGE_AGE_S (schema.ts). Such an INSERT may leave work to the merge
 * (insertFromFileSql's `deferToMerges`). The first INSERT into a day (a restart, an import, a late event) does
 * all its work itself: a partition that only ever gets one INSERT never merges. The earlier part can still
 * leave without a merge (rows deleted, a shard dropped, every row expired by TTL): the store then forgets
 * its days (`forget`), and its sweep merges any part left alone unmerged (lone-parts.ts).
 */
export class ActiveDays {
  private readonly lastWrite = new Map<number, number>();

  constructor(private readonly windowMs: number) {}

  /**
   * The distinct days the rows of `events[start, end)` are stored in (at their `storedTime`, as the row writer
   * writes `ts`), or undefined past MAX_CHUNK_DAYS, or for a time outside 1970 to MAX_EVENT_TIME_MS (whose
   * partition this code does not compute).
   */
  daysOf(events: readonly NormalizedEvent[], start: number, end: number): number[] | undefined {
    const days: number[] = [];
    for (let i = start; i < end; i++) {
      const ts = storedTime(events[i]);
      if (!(ts >= 0 && ts <= MAX_EVENT_TIME_MS)) return undefined;
      const day = Math.floor(ts / DAY_MS);
      if (days.includes(day)) continue;
      if (days.length === MAX_CHUNK_DAYS) return undefined;
      days.push(day);
    }
    return days;
  }

  /** Forgets every day: after rows were deleted, a day's earlier part may be gone. */
  forget(): void {
    this.lastWrite.clear();
  }

  /** Whether every one of `days` got an INSERT committed within the window before `now`. */
  allActive(days: readonly number[] | undefined, now: number): boolean {
    if (days === undefined || days.length === 0) return false;
    for (const day of days) {
      const at = this.lastWrite.get(day);
      if (at === undefined || now - at > this.windowMs) return false;
    }
    return true;
  }

  /** Records an INSERT committed into `days` at `now`. */
  written(days: readonly number[] | undefined, now: number): void {
    if (days === undefined) return;
    for (const day of days) {
      this.lastWrite.delete(day);
      this.lastWrite.set(day, now);
    }
    // Insertion order is the order of the last writes: the first entries are the oldest.
    for (const day of this.lastWrite.keys()) {
      if (this.lastWrite.size <= MAX_DAYS) break;
      this.lastWrite.delete(day);
    }
  }
}
