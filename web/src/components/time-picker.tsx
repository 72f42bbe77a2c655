/** The time picker: relative ranges (15m, 1h, 24h, 7d, 30d) or an absolute from/to. */
import { useEffect, useId, useState } from 'react';
import { useSettings } from '../lib/settings.tsx';
import { fromInputValue, parseTime, RELATIVE_RANGES, type TimeRange, toInputValue } from '../lib/time.ts';

const CUSTOM = 'custom';

export function TimePicker({ range, onChange }: { range: TimeRange; onChange(r: TimeRange): void }) {
  const { utc } = useSettings();
  const id = useId();
  const preset = range.to === 'now' && RELATIVE_RANGES.some((r) => r.from === range.from) ? range.from : CUSTOM;
  const [mode, setMode] = useState(preset);
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    setMode(preset);
    setFrom(toInputValue(parseTime(range.from), utc));
    setTo(toInputValue(parseTime(range.to), utc));
  }, [preset, range.from, range.to, utc]);

  const choose = (value: string) => {
    setMode(value);
    setProblem(null);
    if (value !== CUSTOM) onChange({ from: value, to: 'now' });
  };

  const apply = (e: { preventDefault(): void }) => {
    e.preventDefault();
    const f = fromInputValue(from, utc);
    const t = fromInputValue(to, utc);
    if (Number.isNaN(f) || Number.isNaN(t)) return setProblem('Enter both times.');
    if (f >= t) return setProblem('“From” must be earlier than “to”.');
    setProblem(null);
    onChange({ from: new Date(f).toISOString(), to: new Date(t).toISOString() });
  };

  return (
    <div className="time-picker">
      <label htmlFor={`${id}-range`} className="visually-hidden">
        Time range
      </label>
      <select id={`${id}-range`} value={mode} onChange={(e) => choose(e.target.value)}>
        {RELATIVE_RANGES.map((r) => (
          <option key={r.from} value={r.from}>
            {r.label}
          </option>
        ))}
        <option value={CUSTOM}>Custom range…</option>
      </select>
      {mode === CUSTOM && (
        // A nested form would be invalid HTML inside the query form: a group with its own Apply button.
        <fieldset className="time-custom">
          <legend className="visually-hidden">Custom range{utc ? ' (UTC)' : ' (local time)'}</legend>
          <label>
            From
            <input type="datetime-local" step="1" value={from} onChange={(e) => setFrom(e.target.value)} />
          </label>
          <label>
            To
            <input type="datetime-local" step="1" value={to} onChange={(e) => setTo(e.target.value)} />
          </label>
          <button type="button" onClick={apply}>
            Apply
          </button>
          {problem && (
            <span className="field-problem" role="alert">
              {problem}
            </span>
          )}
        </fieldset>
      )}
    </div>
  );
}
