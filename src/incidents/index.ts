/**
 * Incidents: alerts grouped into incidents that a team triages, stored in PostgreSQL (PGlite embedded by
 * default) through the shared database layer of `src/db/`.
 */
export { GROUP_FIELDS, type IncidentsConfig, incidentsConfigSchema } from './config.ts';
export {
  INCIDENT_STATUSES,
  type Incident,
  type IncidentComment,
  type IncidentDetail,
  type IncidentStatus,
  type IngestResult,
  OPEN_STATUSES,
  type RejectedAlert,
  TRANSITIONS,
  type TimelineEntry,
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
