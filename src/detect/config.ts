import { z } from 'zod';

/** Settings of detection (`detect:` in the config file). */
export const detectConfigSchema = z
  .object({
    /** Run Sigma rules on the live stream. */
    enabled: z.boolean().default(true),
    /** Folders (or files) of Sigma rules loaded at start, read-only; rules added by the API live in <data_dir>/rules. */
    rules_dirs: z.array(z.string().min(1)).default([]),
    /** Load the team's starter rules (src/detect/starter/) before rules_dirs. */
    starter_rules: z.boolean().default(true),
    /** Values of %placeholders% for the `expand` modifier: name -> list of values. */
    placeholders: z.record(z.string(), z.array(z.string())).default({}),
    /** Correlation matches kept in memory across all windows, per tenant, before the oldest groups are evicted. */
    max_correlation_state: z.number().int().min(100).default(100000),
    /**
     * Cluster: how long Sigma matches routed to correlation partitions stay in their stream. It bounds how
     * far back a new partition owner can replay, so keep it above the longest correlation timespan x 2.
     */
    match_retention_hours: z.number().int().min(1).default(24),
    /**
     * Rule and filter documents one tenant may store through the rules API; one more is refused with 409
     * too_many_rules (counted in vigil_detect_rules_refused_total{limit="max_rules_per_tenant"}).
     */
    max_rules_per_tenant: z.number().int().min(1).default(1000),
    /** Most stored events one retro-hunt reads. */
    hunt_max_events: z.number().int().min(1).default(1000000),
  })
  .strict();

export type DetectConfig = z.infer<typeof detectConfigSchema>;
