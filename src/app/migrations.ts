import { POSITION_MIGRATIONS } from '../db/index.ts';
import { INCIDENT_MIGRATIONS } from '../incidents/index.ts';
import { NOTIFY_MIGRATIONS } from '../notify/index.ts';
import { USER_MIGRATIONS } from '../users/index.ts';

/**
 * Every migration of Vigil's SQL state, in apply order: what the postgres module applies at start, and what
 * `vigil backup restore` replays (as far as the backup's database had come) before loading its rows.
 */
export const SQL_MIGRATIONS = [
  ...INCIDENT_MIGRATIONS,
  ...USER_MIGRATIONS,
  ...NOTIFY_MIGRATIONS,
  ...POSITION_MIGRATIONS,
];
