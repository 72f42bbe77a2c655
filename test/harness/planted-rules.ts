import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Alert, AlertStore } from '../../src/detect/index.ts';

/**
 * A planted detection for cluster tests: a Sigma rule on failed logons and an event_count correlation of
 * three of them for one user within 10 minutes, with the events that trigger them.
 */

/** A Sigma rule matching failed Windows logons (EventID 4625), with a `name:` line when `name` is given. */
export function failedLogonRule(id: string, title: string, name?: string): string {
  return `title: ${title}
id: ${id}
${name === undefined ? '' : `name: ${name}\n`}status: test
level: low
logsource:
  product: windows
  service: security
detection:
  selection:
    EventID: 4625
  condition: selection
`;
}

/** An alert store kept in memory: every saved alert is pushed to `saved` (for tests not about the store). */
export function memoryAlertStore(saved: Alert[]): AlertStore {
  return {
    start: async () => {},
    save: async (list: Alert[]) => {
      saved.push(...list);
      return list;
    },
  } as unknown as AlertStore;
}

/** Writes rule `files` (name to text) to a new folder `dir`, for `detect.rules_dirs`; returns `dir`. */
export function writeRulesDir(dir: string, files: Record<string, string>): string {
  mkdirSync(dir);
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  return dir;
}

/** The rule (name `failed_logon`) and the correlation by file name; `tag` is one hex digit of their UUIDs. */
export function plantedRules(tag: string): { correlationId: string; files: Record<string, string> } {
  const correlationId = `0f5e1a40-0000-4000-8000-00000000${tag}002`;
  return {
    correlationId,
    files: {
      'failed-logon.yml': failedLogonRule(`0f5e1a40-0000-4000-8000-00000000${tag}001`, 'Failed logon', 'failed_logon'),
      'brute-force.yml': `title: Three failed logons for one user
id: ${correlationId}
status: test
level: high
correlation:
  type: event_count
  rules: [failed_logon]
  group-by: [TargetUserName]
  timespan: 10m
  condition:
    gte: 3
  generate: true
`,
    },
  };
}

let record = 0;

/** `n` failed logons of `user` (flat Windows layout), `ageMs` old. */
export function failedLogons(user: string, n: number, ageMs = 0): Record<string, unknown>[] {
  return Array.from({ length: n }, () => ({
    '@timestamp': new Date(Date.now() - ageMs).toISOString(),
    EventID: 4625,
    Channel: 'Security',
    Hostname: 'dc-1',
    RecordNumber: ++record,
    TargetUserName: user,
  }));
}

/** An alert as GET /api/v1/alerts answers it (the fields these tests read). */
export interface AlertJson {
  id: string;
  kind: string;
  matched: Record<string, unknown>;
  partition: string;
  fencingToken: number;
  /** The epoch of the site that raised it (two sites). */
  epoch?: number;
  /** When the alert was made (epoch ms). */
  created: number;
}
