/** An event opened in the results: its normalized fields (with filter actions) and the raw event. */
import { isQueryableField } from '../lib/query.ts';

type EventRecord = Record<string, unknown>;

const FIRST = ['@timestamp', 'event.id', 'host.name', 'message'];

export function fieldText(v: unknown): string {
  if (v === null || v === undefined) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

export function EventDetail({
  event,
  onFilter,
}: {
  event: EventRecord;
  onFilter?(field: string, value: unknown, exclude: boolean): void;
}) {
  const names = Object.keys(event).filter((k) => k !== 'event.original');
  names.sort((a, b) => {
    const ia = FIRST.indexOf(a);
    const ib = FIRST.indexOf(b);
    if (ia >= 0 || ib >= 0) return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    return a.localeCompare(b);
  });
  const raw = event['event.original'];
  return (
    <div className="detail-grid">
      <section aria-label="Normalized fields">
        <h3>Fields</h3>
        <table className="kv">
          <tbody>
            {names.map((k) => (
              <tr key={k}>
                <th scope="row" className="kv-key">
                  {k}
                </th>
                <td>
                  <div className="kv-cell">
                    <span className="kv-value">{fieldText(event[k])}</span>
                    {onFilter && isQueryableField(k) && !Array.isArray(event[k]) && (
                      <span className="value-actions">
                        <button
                          type="button"
                          className="icon"
                          aria-label={`Filter for ${k}`}
                          title="Filter for this value"
                          onClick={() => onFilter(k, event[k], false)}
                        >
                          +
                        </button>
                        <button
                          type="button"
                          className="icon"
                          aria-label={`Filter out ${k}`}
                          title="Filter out this value"
                          onClick={() => onFilter(k, event[k], true)}
                        >
                          −
                        </button>
                      </span>
                    )}
                  </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      {raw !== undefined && (
        <section aria-label="Raw event">
          <h3>Raw event</h3>
          <pre className="raw">{prettyRaw(fieldText(raw))}</pre>
        </section>
      )}
    </div>
  );
}

/** JSON raw events are shown indented; anything else as received. */
function prettyRaw(raw: string): string {
  const t = raw.trim();
  if (t.startsWith('{') && t.endsWith('}')) {
    try {
      return JSON.stringify(JSON.parse(t), null, 2);
    } catch {
      return raw;
    }
  }
  return raw;
}
