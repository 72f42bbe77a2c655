/**
 * Incidents: alerts grouped into incidents that a team triages, stored in PostgreSQL (PGlite embedded by
 * default) through the shared database layer of `src/db/`.
 */
export { GROUP_FIELDS, type IncidentsConfig, incidentsConfigSchema } from './config.ts';
export {
  type BulkOutcome,
  INCIDENT_SORTS,
  INCIDENT_STATUSES,
  type Incident,
  type IncidentComment,
  type IncidentDetail,
  type IncidentFilter,
  type IncidentPage,
  type IncidentPatch,
  type IncidentSort,
  type IncidentStatus,
  type IngestResult,
  type NewIncident,
  OPEN_STATUSES,
  type RejectedAlert,
  type TimelineEntry,
} from './model.ts';
export { INCIDENT_MIGRATIONS } from './schema.ts';
export { createIncidentService, type IncidentComponent, type IncidentService } from './service.ts';
export { InvalidTransitionError, TRANSITIONS } from './transitions.ts';
