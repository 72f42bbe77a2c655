import { CronExpressionParser } from 'cron-parser';
import { InputError } from '../lib/errors.ts';

/** When backups run: every `ms`, or at the times of a cron expression (UTC). */
export interface Schedule {
  /** The text it was parsed from. */
  readonly text: string;
  /** The first run strictly after `after` (epoch ms). */
  next(after: number): number;
  /** The usual gap between two runs, in ms (for a cron expression: between its next two runs after `at`). */
  periodMs(at: number): number;
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Shortest interval accepted: a backup every few seconds would only fill the disk. */
const MIN_INTERVAL_MS = 60_000;

/**
 * Parses `backup.schedule`: an interval (`90s`, `30m`, `6h`, `1d`) or a five-field cron expression read in
 * UTC (cron-parser, the maintained parser of node-cron and BullMQ: ranges, steps, lists and names).
 */
export function parseSchedule(text: string): Schedule {
  const interval = /^(\d+)(s|m|h|d)$/.exec(text.trim());
  if (interval) {
    const ms = Number(interval[1]) * UNIT_MS[interval[2]];
    if (ms < MIN_INTERVAL_MS) {
      throw new InputError('backup_schedule', `backup.schedule '${text}' is shorter than one minute`);
    }
    return { text, next: (after) => after + ms, periodMs: () => ms };
  }
  const fields = text.trim().split(/\s+/);
  if (fields.length !== 5) {
    throw new InputError(
      'backup_schedule',
      `backup.schedule '${text}' is neither an interval (30m, 6h, 1d) nor a five-field cron expression (0 3 * * *)`,
    );
  }
  const at = (from: number) => CronExpressionParser.parse(text, { currentDate: new Date(from), tz: 'UTC' });
  try {
    at(Date.now()).next();
  } catch (err) {
    throw new InputError('backup_schedule', `backup.schedule '${text}': ${(err as Error).message}`);
  }
  return {
    text,
    next: (after) => at(after).next().getTime(),
    periodMs(from) {
      const it = at(from);
      const a = it.next().getTime();
      return it.next().getTime() - a;
    },
  };
}
