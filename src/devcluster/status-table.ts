/** The text of `vigil dev-cluster status`: kept beside the records it shows, so tests of them can read it. */
import type { MemberStatus } from './index.ts';

/** The status table: one line per member. */
export function formatStatus(members: MemberStatus[]): string {
  const rows = members.map((m) => [
    m.kind,
    m.name,
    m.pid === null ? '-' : String(m.pid),
    m.state,
    Object.entries(m.addresses)
      .map(([k, v]) => `${k}=${v}`)
      .join(' '),
  ]);
  const head = ['KIND', 'NAME', 'PID', 'STATE', 'ADDRESSES'];
  if (members.some((m) => m.site)) {
    head.splice(2, 0, 'SITE');
    members.forEach((m, i) => {
      rows[i].splice(2, 0, m.site ?? '-');
    });
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const failures = members.flatMap((m) =>
    m.balancer_error
      ? [
          `${m.name}: its last update failed (${m.balancer_error.code}, ${m.balancer_error.at}): ${m.balancer_error.message}`,
          m.state === 'running'
            ? `  vigil dev-cluster reload-balancer${m.site ? ` --site ${m.site}` : ''} tries again; its log: ${m.log}`
            : `  it is stopped: vigil dev-cluster restart ${m.name} starts it with its configuration; its log: ${m.log}`,
        ]
      : [],
  );
  return [line(head), ...rows.map(line), ...(failures.length ? ['', ...failures] : [])].join('\n');
}
