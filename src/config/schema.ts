import { z } from 'zod';
import { httpConfigSchema } from '../api/config.ts';
import { backupConfigSchema } from '../backup/config.ts';
import { busConfigSchema } from '../bus/config.ts';
import { clusterConfigSchema } from '../cluster/config.ts';
import { detectConfigSchema } from '../detect/config.ts';
import { httpIntakeConfigSchema } from '../intake/http/config.ts';
import { syslogConfigSchema } from '../intake/syslog/config.ts';
import { parseConfigSchema } from '../parse/index.ts';
import { incidentsConfigSchema } from '../incidents/config.ts';
import { postgresConfigSchema } from '../db/config.ts';
import { notifyConfigSchema } from '../notify/config.ts';
import { selfmonConfigSchema } from '../selfmon/config.ts';
import { storeConfigSchema } from '../store/config.ts';
import { usersConfigSchema } from '../users/config.ts';

/** The root configuration: one section per component, each validated by the component's own schema. */
export const configSchema = z
  .object({
    /** Where events, incidents and the admin token live (VIGIL_DATA_DIR). */
    data_dir: z.string().min(1).default('./data'),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .prefault({}),
    auth: z
      .object({
        /** Bearer token with every right (VIGIL_ADMIN_TOKEN); generated on first start when unset. */
        admin_token: z.string().min(16, 'must be at least 16 characters').optional(),
      })
      .strict()
      .prefault({}),
    roles: z
      .array(z.enum(['all', 'ingest', 'store', 'detect', 'api']))
      .min(1)
      .default(['all']),
    http: httpConfigSchema.prefault({}),
    ingest: httpIntakeConfigSchema.prefault({}),
    syslog: syslogConfigSchema.prefault({}),
    parse: parseConfigSchema.prefault({}),
    bus: busConfigSchema.prefault({}),
    store: storeConfigSchema.prefault({}),
    detect: detectConfigSchema.prefault({}),
    cluster: clusterConfigSchema.prefault({}),
    postgres: postgresConfigSchema.prefault({}),
    incidents: incidentsConfigSchema.prefault({}),
    users: usersConfigSchema.prefault({}),
    notify: notifyConfigSchema.prefault({}),
    backup: backupConfigSchema.prefault({}),
    selfmon: selfmonConfigSchema.prefault({}),
  })
  .strict();

export type VigilConfig = z.infer<typeof configSchema>;
