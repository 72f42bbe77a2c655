import { z } from 'zod';
import { jetStreamBusConfigSchema } from './jetstream/config.ts';

/** Settings of the bus (`bus:` in the config file): in-process (embedded default) or NATS JetStream. */
export const busConfigSchema = z
  .object({
    /** `memory`: the in-process bus; `jetstream`: the replicated log of a cluster. */
    kind: z.enum(['memory', 'jetstream']).default('memory'),
    jetstream: jetStreamBusConfigSchema.prefault({}),
    /** Events accepted but not yet committed, at most; beyond it publishers get 503 / TCP pauses. */
    max_pending_events: z.number().int().min(100).default(200000),
    /** Most events committed to the store in one write (group commit across concurrent publishers). */
    batch_max_events: z.number().int().min(1).default(20000),
    /**
     * In-process bus: detection evaluates a committed batch while the store commits the next one (one batch
     * behind at most), instead of between two commits. Off by default: in the ingest bench (2026-12-07, a
     * shared machine at load 3 to 13) it gave 0.84x to 1.64x the rate in 7 alternated pairs, about 8 CPU-µs
     * an event more (merges) and 90 to 220 MB more peak RSS; see docs/performance.md.
     */
    detection_overlap: z.boolean().default(false),
  })
  .strict();

export type BusConfig = z.infer<typeof busConfigSchema>;
