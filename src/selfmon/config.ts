import { z } from 'zod';

/** A tenant name as users are granted them (src/users/service.ts). */
const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Settings of Vigil's own health events (`selfmon:` in the config file). */
export const selfmonConfigSchema = z
  .object({
    /** Emit health events (`product: vigil, service: health`) into the node's own pipeline. */
    enabled: z.boolean().default(true),
    /**
     * The tenant that receives them; unset: `ingest.tenant`, the tenant of the bootstrap admin token. It is
     * always one of the admin token's tenants; tenants' users see it only when an admin grants it to them.
     */
    tenant: z.string().regex(TENANT, 'letters, digits, dot, dash, underscore; at most 64').optional(),
    /** How often the signals are read; a change (a new lease loss, refused events, a lag ten times larger) is sent then. */
    check_interval_ms: z.number().int().min(1000).max(3_600_000).default(15_000),
    /** Every signal is sent at least this often, changed or not (a heartbeat the rules read thresholds from). */
    interval_ms: z.number().int().min(1000).max(86_400_000).default(300_000),
  })
  .strict();

export type SelfmonConfig = z.infer<typeof selfmonConfigSchema>;
