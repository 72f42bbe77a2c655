/**
 * A planted detection for cluster tests: a Sigma rule on failed logons and an event_count correlation of
 * three of them for one user within 10 minutes, with the events that trigger them.
 */

/** The rule (name `failed_logon`) and the correlation by file name; `tag` is one hex digit of their UUIDs. */
export function plantedRules(tag: string): { correlationId: string; files: Record<string, string> } {
  const correlationId = `0f5e1a40-0000-4000-8000-00000000${tag}002`;
  return {
    correlationId,
    files: {
      'failed-logon.yml': `title: Failed logon
id: 0f5e1a40-0000-4000-8000-00000000${tag}001
name: failed_logon
status: test
level: low
logsource:
  product: windows
  service: security
detection:
  selection:
    EventID: 4625
  condition: selection
`,
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
  /** When the alert was made (epoch ms). */
  created: number;
}
