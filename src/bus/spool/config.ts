import { z } from 'zod';

/** Settings of the local disk spool that absorbs publishes while JetStream cannot take them (`bus.jetstream.spool`). */
export const spoolConfigSchema = z
  .object({
    /** Folder of the segment files; empty means `<data_dir>/spool`. */
    dir: z.string().default(''),
    /** Unforwarded bytes at most; beyond it publishes are refused with 503 (TCP reads pause) rather than dropped. */
    max_bytes: z
      .number()
      .int()
      .min(1024 * 1024)
      .default(1024 * 1024 * 1024),
    /** Once the oldest unforwarded batch is this old, new publishes are refused: the spool is for outages, not storage. */
    max_age_seconds: z.number().int().min(1).default(86400),
    /** A segment file is closed and a new one started past this size; forwarded segments are deleted whole. */
    segment_bytes: z
      .number()
      .int()
      .min(64 * 1024)
      .default(64 * 1024 * 1024),
    /** fdatasync each append before acknowledging it (survives power loss, not only kill -9). */
    fsync: z.boolean().default(true),
  })
  .strict();

export type SpoolConfig = z.infer<typeof spoolConfigSchema>;
