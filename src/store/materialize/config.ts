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
    /**
     * How long stream messages may wait to be written together (0: at once), as Elasticsearch's 1 s refresh
     * interval: a search on this replica sees an event up to this much later. Every INSERT is a part that
     * the engine merges later. Measured with `npm run bench -- cluster` at 3,000 events/s: 0 ms, 612 CPU-ms
     * per 1,000 events (merges 0.15 core of a node's 0.5); 500 ms, 504; 1000 ms, 400 (merges 0.04).
     */
    linger_ms: z.number().int().min(0).max(10000).default(1000),
  })
  .strict();

export type MaterializeConfig = z.infer<typeof materializeConfigSchema>;
