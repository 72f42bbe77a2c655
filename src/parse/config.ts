import { z } from 'zod';

/** Defaults of the normalizer's limits, as a frozen object (the same values the schema fills in). */
export const NORMALIZER_DEFAULTS = Object.freeze({ max_depth: 16, max_fields: 1000 });

/** Settings of the normalizer (`parse:` in the config file); unknown keys are rejected. */
export const parseConfigSchema = z
  .object({
    /** Deepest nesting of a JSON event that is flattened; deeper objects are kept as their JSON text. */
    max_depth: z.number().int().min(1).max(256).default(NORMALIZER_DEFAULTS.max_depth),
    /** Most original fields kept from one JSON event; the rest stay only in `event.original`. */
    max_fields: z.number().int().min(1).max(100000).default(NORMALIZER_DEFAULTS.max_fields),
  })
  .strict();

/** The validated normalizer settings, defaults applied. */
export type ParseConfig = z.infer<typeof parseConfigSchema>;

/** Normalizer settings as written: every key optional. */
export type ParseConfigInput = z.input<typeof parseConfigSchema>;
