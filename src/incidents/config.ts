import { z } from 'zod';

/** Alert attributes an incident can be grouped by; `matched.<field>` groups by a field the rule matched. */
export const GROUP_FIELDS = ['rule.id', 'rule.title', 'rule.level', 'host', 'kind', 'partition'] as const;

/** Settings of incidents (`incidents:` in the config file). */
export const incidentsConfigSchema = z
  .object({
    /** Group new alerts into incidents. */
    enabled: z.boolean().default(true),
    /**
     * The grouping key (the tenant is always part of it): alerts with the same values join the same open
     * incident while they fall in its window. Each entry is one of GROUP_FIELDS or `matched.<field>`.
     */
    group_by: z
      .array(
        z
          .string()
          .refine(
            (f) => (GROUP_FIELDS as readonly string[]).includes(f) || /^matched\.\S+$/.test(f),
            `expected one of ${GROUP_FIELDS.join(', ')} or matched.<field>`,
          ),
      )
      .min(1)
      .default(['rule.id', 'host']),
    /** An incident's window starts at its first alert; alerts of its key within this many ms join it. */
    group_window_ms: z.number().int().min(1000).default(3_600_000),
    /** Alerts committed in one transaction; larger batches are split. */
    batch_max_alerts: z.number().int().min(1).max(100000).default(500),
    /** Alerts waiting to be grouped; beyond it new alerts are refused (counted and logged as overloaded). */
    max_pending_alerts: z.number().int().min(1).default(100000),
    /** First wait before retrying a batch after a connection error (doubles, with jitter). */
    retry_initial_ms: z.number().int().min(1).default(100),
    /** Longest wait between two retries. */
    retry_max_ms: z.number().int().min(1).default(5000),
    /**
     * A batch still failing after this long is logged as an error (health says degraded from the first
     * failure). It is never given up: the alert log hands it over until it is committed (ADR 0004).
     */
    retry_max_elapsed_ms: z.number().int().min(0).default(300_000),
  })
  .strict();

export type IncidentsConfig = z.infer<typeof incidentsConfigSchema>;
