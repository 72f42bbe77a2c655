import { z } from 'zod';

/** Settings of the store node's stream consumer (`store.materialize` in the config file). */
export const materializeConfigSchema = z
  .object({
    /** Durable consumer of this replica; empty means `store-<node id>`. Each store replica needs its own. */
    consumer: z
      .string()
      .regex(/^[A-Za-z0-9_-]*$/)
      .default(''),
    /** How often the stream's end and the consumer's ack floor are asked for (replica lag when idle). */
    lag_poll_interval_ms: z.number().int().min(100).default(1000),
  })
  .strict();

export type MaterializeConfig = z.infer<typeof materializeConfigSchema>;
