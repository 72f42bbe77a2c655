import { z } from 'zod';
import { parseSchedule } from './schedule.ts';

/** Settings of backups (`backup:` in the config file; `VIGIL_BACKUP__DIR` and so on). */
export const backupConfigSchema = z
  .object({
    /**
     * Where backups live, one folder per backup named by its id. Keep it off the data directory's disk:
     * a backup beside the data dies with it. The engine may write backups only here (backups.allowed_path).
     */
    dir: z.string().min(1).default('./backups'),
    /**
     * When the node takes a backup by itself: an interval (`30m`, `6h`, `1d`) or a five-field cron
     * expression in UTC (`0 3 * * *`). Empty: only on request (`vigil backup create`).
     */
    schedule: z
      .string()
      .default('')
      .superRefine((value, ctx) => {
        if (value === '') return;
        try {
          parseSchedule(value);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message });
        }
      }),
    /** Backups kept by count: the newest this many (and every backup they are incremental on). */
    keep_last: z.number().int().min(1).max(10000).default(7),
    /** Backups kept by age as well: every one cut within this many days (0: by count only). */
    keep_days: z.number().int().min(0).max(36500).default(0),
    /** Longest chain of incrementals on one full backup; the next backup after it is a full one. */
    max_chain: z.number().int().min(0).max(1000).default(6),
    /** Keep secrets (admin token, passwords, URL credentials) in the backup's copy of the configuration. */
    include_secrets: z.boolean().default(false),
  })
  .strict();

export type BackupConfig = z.infer<typeof backupConfigSchema>;
