import { z } from 'zod';

/**
 * Where incidents, users, the audit log and notifications live (`postgres:` in the config file). Without
 * `url`, PGlite embedded in the process, with its data in `<data_dir>/pg`; with it, a PostgreSQL server.
 */
export const postgresConfigSchema = z
  .object({
    /** postgres://user:password@host:port/db (VIGIL_POSTGRES_URL). Unset: embedded PGlite. */
    url: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// or postgresql:// URL')
      .optional(),
    /** Connections in the pool (PostgreSQL only). */
    pool_max: z.number().int().min(1).max(1000).default(10),
    /** Longest wait for a new connection. */
    connect_timeout_ms: z.number().int().min(100).default(5000),
    /** Longest a statement may run before the server cancels it. */
    statement_timeout_ms: z.number().int().min(100).default(30000),
  })
  .strict();

export type PostgresConfig = z.infer<typeof postgresConfigSchema>;
