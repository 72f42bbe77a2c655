/**
 * The two sites of a two-site deployment (cluster.site), from /admin/dr/status: this site and its peer,
 * their roles and epochs, whether the peer answers, and the replication lag each way. Shown only where the
 * site API exists (a cluster without cluster.site has no /admin/dr routes: nothing is drawn).
 */
import { ErrorBox, Badge } from '../components/feedback.tsx';
import { ApiError } from '../lib/api.ts';
import { useApi } from '../lib/use-api.ts';

interface DrStatus {
  site: string;
  role: 'active' | 'standby';
  epoch: number;
  peer: {
    site: string;
    reachable: boolean;
    role?: string;
    epoch?: number;
    lag_events: number | null;
    lag_seconds: number | null;
    lag_to_peer_events?: number | null;
    error?: string;
  };
}

const num = (v: number | null | undefined, unit = '') => (v === null || v === undefined ? 'unknown' : `${v}${unit}`);

export function SitesCard({ pollMs }: { pollMs: number }) {
  const dr = useApi<DrStatus>('/admin/dr/status', { pollMs });
  if (dr.error instanceof ApiError && dr.error.missingRoute) return null;
  const s = dr.data;
  return (
    <div className="card">
      <h2>Sites</h2>
      {dr.error !== null && <ErrorBox error={dr.error} onRetry={dr.reload} />}
      {s && (
        <table className="data-table" aria-label="Sites">
          <thead>
            <tr>
              <th scope="col">Site</th>
              <th scope="col">Role</th>
              <th scope="col">Epoch</th>
              <th scope="col">Reachable</th>
              <th scope="col">Events not yet received from it</th>
            </tr>
          </thead>
          <tbody>
            <tr>
              <td>{s.site} (this site)</td>
              <td>
                <Badge kind={s.role === 'active' ? 'ok' : 'info'}>{s.role}</Badge>
              </td>
              <td>{s.epoch}</td>
              <td>yes</td>
              <td>{num(s.peer.lag_to_peer_events)}</td>
            </tr>
            <tr>
              <td>{s.peer.site}</td>
              <td>
                {s.peer.role ? <Badge kind={s.peer.role === 'active' ? 'ok' : 'info'}>{s.peer.role}</Badge> : 'unknown'}
              </td>
              <td>{num(s.peer.epoch)}</td>
              <td>
                <Badge kind={s.peer.reachable ? 'ok' : 'bad'}>{s.peer.reachable ? 'yes' : 'no'}</Badge>
              </td>
              <td>
                {num(s.peer.lag_events)} ({num(s.peer.lag_seconds, ' s')})
              </td>
            </tr>
          </tbody>
        </table>
      )}
      {s?.peer.error && <p className="muted">{s.peer.error}</p>}
      {s && s.role === 'active' && s.peer.role === 'active' && (
        <p role="alert">
          Both sites say they are active: the one with the lower epoch turns standby once it hears the other.
        </p>
      )}
    </div>
  );
}
