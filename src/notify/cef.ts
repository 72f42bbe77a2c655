import { hostname } from 'node:os';
import type { Alert } from '../detect/alerts/index.ts';
import { severityRank } from '../detect/alerts/severity.ts';

/** CEF severity (0-10) of each level, informational to critical. */
const CEF_SEVERITY = [1, 3, 5, 8, 10];
/** Syslog severity of each level: info, notice, warning, error, critical. */
const SYSLOG_SEVERITY = [6, 5, 4, 3, 2];

/** Escapes a CEF header field: backslash and pipe; a header has no line breaks, so they become spaces. */
export function cefHeader(value: string): string {
  return value
    .replace(/\\/g, '\\\\')
    .replace(/\|/g, '\\|')
    .replace(/[\r\n]+/g, ' ');
}

/** Escapes a CEF extension value: backslash, equals sign, and line breaks as \n and \r. */
export function cefValue(value: string): string {
  return value
    .replace(/\\/g, '\\\\')
    .replace(/=/g, '\\=')
    .replace(/\r\n|\n/g, '\\n')
    .replace(/\r/g, '\\r');
}

/** The CEF severity (0-10) of a rule level. */
export function cefSeverity(level: string): number {
  return CEF_SEVERITY[severityRank(level)];
}

/** `CEF:0|Vigil|Vigil|0.1|<rule id>|<title>|<severity>|<extension>` for one alert. */
export function formatCef(alert: Alert, deliveryId: string): string {
  const ext: [string, string][] = [
    ['rt', String(alert.timestamp)],
    ['dvchost', alert.host],
    ['externalId', alert.id],
    ['cat', alert.kind],
    ['cnt', String(alert.eventIds.length)],
    ['cs1Label', 'tenant'],
    ['cs1', alert.tenant],
    ['cs2Label', 'tags'],
    ['cs2', alert.rule.tags.join(',')],
    ['cs3Label', 'deliveryId'],
    ['cs3', deliveryId],
    ['cs4Label', 'level'],
    ['cs4', alert.rule.level],
    ['msg', alert.rule.title],
  ];
  const extension = ext
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}=${cefValue(v)}`)
    .join(' ');
  const header = [
    'CEF:0',
    'Vigil',
    'Vigil',
    '0.1',
    alert.rule.id,
    alert.rule.title,
    String(cefSeverity(alert.rule.level)),
  ];
  return `${header.map((h, i) => (i === 0 ? h : cefHeader(h))).join('|')}|${extension}`;
}

const LOCAL_HOST =
  hostname()
    .replace(/[^\x21-\x7e]/g, '')
    .slice(0, 255) || '-';

/**
 * An RFC 5424 message carrying `msg`: `<PRI>1 TIMESTAMP HOSTNAME vigil PROCID alert - MSG`, its priority
 * from the facility and the rule level.
 */
export function formatSyslog5424(msg: string, opts: { facility: number; level: string; time: number }): string {
  const pri = opts.facility * 8 + SYSLOG_SEVERITY[severityRank(opts.level)];
  return `<${pri}>1 ${new Date(opts.time).toISOString()} ${LOCAL_HOST} vigil ${process.pid} alert - ${msg}`;
}
