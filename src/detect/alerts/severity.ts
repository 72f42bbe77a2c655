/**
 * The levels of the alert model, lowest first: a rule's `level` (Sigma's informational .. critical) ranks
 * its alerts, and whatever is built on alerts (an incident's severity, a destination's `min_level`, CEF and
 * syslog severities) ranks them the same way.
 */
export const SEVERITIES = ['informational', 'low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** The rank of a severity (informational 0 .. critical 4); an unknown level counts as medium. */
export function severityRank(level: string): number {
  const i = (SEVERITIES as readonly string[]).indexOf(level.toLowerCase());
  return i < 0 ? 2 : i;
}
