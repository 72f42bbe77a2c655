import { z } from 'zod';

/** Settings of users, sessions and API keys (`users:` in the config file). */
export const usersConfigSchema = z
  .object({
    /** Lifetime of a console session token from POST /api/v1/auth/login. */
    session_ttl_ms: z
      .number()
      .int()
      .min(60_000)
      .default(8 * 3_600_000),
    /** Failed logins allowed per username and client address within `login_window_ms`; then 429. */
    login_max_failures: z.number().int().min(1).default(5),
    /** The window of `login_max_failures`. */
    login_window_ms: z.number().int().min(1000).default(60_000),
    /** scrypt cost as a power of two (15: N = 32768, 32 MiB per hash with r = 8). */
    scrypt_log_n: z.number().int().min(10).max(20).default(15),
    /** Shortest password accepted when a user is created or changes it. */
    min_password_length: z.number().int().min(8).default(12),
    /** Lifetime of an API key created without `expires_in_days`. */
    api_key_default_ttl_days: z.number().int().min(1).default(90),
    /** Longest lifetime an API key may be given. */
    api_key_max_ttl_days: z.number().int().min(1).default(365),
  })
  .strict();

export type UsersConfig = z.infer<typeof usersConfigSchema>;
