/**
 * Incidents: alerts grouped into incidents that a team triages, stored in PostgreSQL (PGlite embedded by
 * default). Also home of the database layer shared by users, the audit log and notifications.
 */
export { GROUP_FIELDS, type IncidentsConfig, incidentsConfigSchema } from './config.ts';
export {
  createDatabase,
  type Database,
  type Db,
  DbError,
  isRetryableDbError,
  type Migration,
  migrate,
  openPglite,
  wrapPglite,
  openPostgres,
  type PostgresConfig,
  postgresConfigSchema,
  type Queryable,
  withDbRetry,
} from './db/index.ts';
export {
  INCIDENT_STATUSES,
  type Incident,
  type IncidentComment,
  type IncidentDetail,
  type IncidentStatus,
  type IngestResult,
  OPEN_STATUSES,
  type RejectedAlert,
  SEVERITIES,
  type Severity,
  severityRank,
  TRANSITIONS,
  type TimelineEntry,
  toSeverity,
  transitionRefusal,
} from './model.ts';
export { INCIDENT_MIGRATIONS } from './schema.ts';
export {
  type BulkOutcome,
  createIncidentService,
  groupKeyOf,
  INCIDENT_SORTS,
  type IncidentComponent,
  type IncidentFilter,
  type IncidentPage,
  type IncidentPatch,
  type IncidentService,
  type IncidentSort,
  InvalidTransitionError,
  type NewIncident,
} from './service.ts';
