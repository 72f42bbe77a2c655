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
    /**
     * Login attempts (failed, or still being checked) allowed per username and client address within
     * `login_window_ms`; the next is refused (429) without its password being checked, and the key locks.
     */
    login_max_failures: z.number().int().min(1).default(5),
    /** The same per username from any address (guessing spread over many addresses). */
    login_account_max_failures: z.number().int().min(1).default(10),
    /** The same per client address (an IPv6 /64) for any username (one password tried on many accounts). */
    login_address_max_failures: z.number().int().min(1).default(20),
    /** The window of the three limits above. */
    login_window_ms: z.number().int().min(1000).default(60_000),
    /** The first lockout of a key that reached its limit; each further one doubles it. */
    login_lockout_ms: z.number().int().min(1000).default(60_000),
    /** The longest lockout; a key quiet this long after a lockout starts again from `login_lockout_ms`. */
    login_lockout_max_ms: z.number().int().min(1000).default(900_000),
    /** Usernames and addresses the login limiter tracks at most (memory bound); least recent go first. */
    login_tracked_keys_max: z.number().int().min(1000).default(100_000),
    /** scrypt cost as a power of two (15: N = 32768, 32 MiB per hash with r = 8). */
    scrypt_log_n: z.number().int().min(10).max(20).default(15),
    /**
     * Shortest password accepted when a user is created or changes it. Also refused: the commonest
     * passwords and their decorations, repeated characters, keyboard runs, and the username.
     */
    min_password_length: z.number().int().min(8).default(12),
    /** Lifetime of an API key created without `expires_in_days`. */
    api_key_default_ttl_days: z.number().int().min(1).default(90),
    /** Longest lifetime an API key may be given. */
    api_key_max_ttl_days: z.number().int().min(1).default(365),
  })
  .strict();

export type UsersConfig = z.infer<typeof usersConfigSchema>;
