/**
 * The field sidebar: the fields of the loaded events, how many events have each, and their top values.
 * A value can be added to the query as `field:value` or `NOT field:value`.
 */
import { useMemo, useState } from 'react';
import { isQueryableField } from '../lib/query.ts';

type EventRecord = Record<string, unknown>;

export interface FieldSummary {
  name: string;
  /** Events that have the field. */
  present: number;
  distinct: number;
  top: { value: unknown; text: string; count: number }[];
}

/** Fields that say little in a sidebar: ids unique per event, and the raw text. */
const HIDDEN = new Set(['event.original', 'event.id', 'event.ingested']);
const MAX_DISTINCT = 1000;
/** Events summarized at most (about 50 ms). */
const SAMPLE = 10000;

/** Summarizes fields over events: presence, distinct values (capped) and the top `topN` values. */
export function summarizeFields(events: EventRecord[], topN = 5): FieldSummary[] {
  const stats = new Map<string, { present: number; values: Map<string, { value: unknown; count: number }> }>();
  for (const e of events) {
    for (const name in e) {
      if (HIDDEN.has(name)) continue;
      let s = stats.get(name);
      if (!s) {
        s = { present: 0, values: new Map() };
        stats.set(name, s);
      }
      s.present++;
      const raw = e[name];
      for (const v of Array.isArray(raw) ? raw : [raw]) {
        const text = typeof v === 'string' ? v : JSON.stringify(v);
        const cur = s.values.get(text);
        if (cur) cur.count++;
        else if (s.values.size < MAX_DISTINCT) s.values.set(text, { value: v, count: 1 });
      }
    }
  }
  return [...stats.entries()]
    .map(([name, s]) => ({
      name,
      present: s.present,
      distinct: s.values.size,
      top: [...s.values.entries()]
        .sort((a, b) => b[1].count - a[1].count || a[0].localeCompare(b[0]))
        .slice(0, topN)
        .map(([text, v]) => ({ text, value: v.value, count: v.count })),
    }))
    .sort((a, b) => b.present - a.present || a.name.localeCompare(b.name));
}

export interface FieldSidebarProps {
  events: EventRecord[];
  onFilter(field: string, value: unknown, exclude: boolean): void;
  /** Fields whose values are shown. */
  open: Set<string>;
  onOpenChange(open: Set<string>): void;
}

export function FieldSidebar({ events, onFilter, open, onOpenChange }: FieldSidebarProps) {
  // Past this many events the summary would cost more than a frame budget per page loaded: the newest
  // ones are a fair sample (results come newest first), and the sidebar says so.
  const sample = useMemo(() => (events.length > SAMPLE ? events.slice(0, SAMPLE) : events), [events]);
  const fields = useMemo(() => summarizeFields(sample), [sample]);
  const [filter, setFilter] = useState('');
  const shown = fields.filter((f) => f.name.toLowerCase().includes(filter.trim().toLowerCase()));

  const toggle = (name: string) => {
    const n = new Set(open);
    if (n.has(name)) n.delete(name);
    else n.add(name);
    onOpenChange(n);
  };

  return (
    <aside className="field-sidebar" aria-labelledby="fields-heading">
      <h2 id="fields-heading">Fields</h2>
      <p className="muted small">
        {events.length > SAMPLE
          ? `In the newest ${SAMPLE.toLocaleString()} of ${events.length.toLocaleString()} loaded events`
          : `In the ${events.length.toLocaleString()} loaded event${events.length === 1 ? '' : 's'}`}
      </p>
      <label className="visually-hidden" htmlFor="field-filter">
        Filter fields
      </label>
      <input
        id="field-filter"
        type="search"
        placeholder="Filter fields"
        value={filter}
        onChange={(e) => setFilter(e.target.value)}
      />
      <ul className="field-list">
        {shown.map((f) => {
          const isOpen = open.has(f.name);
          const queryable = isQueryableField(f.name);
          return (
            <li key={f.name}>
              <button
                type="button"
                className="field-name"
                aria-expanded={isOpen}
                aria-controls={`field-${f.name}`}
                onClick={() => toggle(f.name)}
              >
                <span className="chevron" aria-hidden="true">
                  {isOpen ? '▾' : '▸'}
                </span>
                <span className="name">{f.name}</span>
                <span className="count" title={`${f.present} events have this field`}>
                  {percent(f.present, sample.length)}
                </span>
              </button>
              {isOpen && (
                <ul className="field-values" id={`field-${f.name}`}>
                  {f.top.map((v) => (
                    <li key={v.text}>
                      <span className="value" title={v.text}>
                        {v.text === '' ? <em>(empty)</em> : v.text}
                      </span>
                      <span className="value-count">{v.count.toLocaleString()}</span>
                      {queryable && (
                        <span className="value-actions">
                          <button
                            type="button"
                            className="icon"
                            aria-label={`Filter for ${f.name}: ${v.text}`}
                            title="Filter for this value"
                            onClick={() => onFilter(f.name, v.value, false)}
                          >
                            +
                          </button>
                          <button
                            type="button"
                            className="icon"
                            aria-label={`Filter out ${f.name}: ${v.text}`}
                            title="Filter out this value"
                            onClick={() => onFilter(f.name, v.value, true)}
                          >
                            −
                          </button>
                        </span>
                      )}
                      <span className="value-bar" aria-hidden="true">
                        <span style={{ width: `${(v.count / Math.max(1, f.present)) * 100}%` }} />
                      </span>
                    </li>
                  ))}
                  {f.distinct > f.top.length && (
                    <li className="muted small">
                      {f.distinct >= MAX_DISTINCT ? `${MAX_DISTINCT}+` : f.distinct} distinct values
                    </li>
                  )}
                </ul>
              )}
            </li>
          );
        })}
        {shown.length === 0 && <li className="muted">No fields{filter ? ' match' : ''}.</li>}
      </ul>
    </aside>
  );
}

/** A share as a whole percent; a small non-zero share is "<1%", not "0%". */
function percent(n: number, of: number): string {
  if (n === 0 || of === 0) return '0%';
  const p = Math.round((n / of) * 100);
  return p === 0 ? '<1%' : `${p}%`;
}
