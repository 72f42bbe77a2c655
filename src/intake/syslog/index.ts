/**
 * The syslog intake: receives syslog over UDP, TCP (RFC 6587 framing) and TCP+TLS (RFC 5425), parses each
 * line with the injected parser and publishes the events in batches, pausing TCP readers rather than
 * dropping when the pipeline is full.
 */
export { type SyslogConfig, type SyslogConfigInput, syslogConfigSchema } from './config.ts';
export {
  createSyslogIntake,
  type SyslogAddresses,
  type SyslogIntake,
  type SyslogIntakeDeps,
  type SyslogParseContext,
  type SyslogSource,
} from './intake.ts';
export { type IntakeMetrics, intakeMetrics, type RejectReason } from '../metrics.ts';
