/**
 * Charts for table results: `timechart` as bars (one series) or lines (several, with a legend), `stats`
 * as horizontal bars of the first numeric column by the group. Small SVG, no chart library.
 */
import { formatTime, parseEngineTime } from '../lib/time.ts';

const MAX_SERIES = 8;
const MAX_BARS = 20;
const W = 1000;
const H = 100;

export type ChartModel =
  | { kind: 'time'; times: number[]; series: { name: string; values: number[] }[] }
  | { kind: 'bars'; valueName: string; bars: { label: string; value: number }[] }
  | { kind: 'none' };

const isNum = (v: unknown) => typeof v === 'number' && Number.isFinite(v);

/** Decides how to draw a table answer. */
export function chartModel(columns: string[], rows: unknown[][]): ChartModel {
  if (rows.length === 0) return { kind: 'none' };
  const numeric = columns.map(
    (_, c) => rows.every((r) => r[c] === null || isNum(r[c])) && rows.some((r) => isNum(r[c])),
  );
  const ti = columns.indexOf('_time');
  if (ti >= 0) {
    const others = columns.map((_, c) => c).filter((c) => c !== ti);
    const by = others.find((c) => !numeric[c]);
    const aggs = others.filter((c) => numeric[c]);
    if (aggs.length === 0) return { kind: 'none' };
    const times = [...new Set(rows.map((r) => parseEngineTime(r[ti])))].sort((a, b) => a - b);
    const index = new Map(times.map((t, i) => [t, i]));
    let series: { name: string; values: number[] }[];
    if (by !== undefined) {
      const byName = new Map<string, number[]>();
      const totals = new Map<string, number>();
      for (const r of rows) {
        const name = String(r[by]);
        if (!byName.has(name)) byName.set(name, new Array(times.length).fill(0));
        const v = Number(r[aggs[0]] ?? 0);
        byName.get(name)![index.get(parseEngineTime(r[ti]))!] = v;
        totals.set(name, (totals.get(name) ?? 0) + v);
      }
      series = [...byName.entries()]
        .sort((a, b) => (totals.get(b[0]) ?? 0) - (totals.get(a[0]) ?? 0))
        .slice(0, MAX_SERIES)
        .map(([name, values]) => ({ name, values }));
    } else {
      series = aggs.slice(0, MAX_SERIES).map((c) => {
        const values = new Array(times.length).fill(0);
        for (const r of rows) values[index.get(parseEngineTime(r[ti]))!] = Number(r[c] ?? 0);
        return { name: columns[c], values };
      });
    }
    return { kind: 'time', times, series };
  }
  const vi = numeric.indexOf(true);
  if (vi < 0) return { kind: 'none' };
  const labels = columns.map((_, c) => c).filter((c) => !numeric[c]);
  return {
    kind: 'bars',
    valueName: columns[vi],
    bars: rows.slice(0, MAX_BARS).map((r) => ({
      label: labels.length ? labels.map((c) => String(r[c] ?? '')).join(' · ') : String(r[vi]),
      value: Number(r[vi] ?? 0),
    })),
  };
}

export function ResultChart({ columns, rows, utc }: { columns: string[]; rows: unknown[][]; utc: boolean }) {
  const model = chartModel(columns, rows);
  if (model.kind === 'none') return null;
  if (model.kind === 'bars') {
    const max = Math.max(1, ...model.bars.map((b) => b.value));
    return (
      <figure className="result-chart" aria-label={`Bar chart of ${model.valueName}`}>
        <ul className="hbars">
          {model.bars.map((b, i) => (
            <li key={i}>
              <span className="hbar-label" title={b.label}>
                {b.label}
              </span>
              <span className="hbar-track" aria-hidden="true">
                <span className="hbar" style={{ width: `${(b.value / max) * 100}%` }} />
              </span>
              <span className="hbar-value">{b.value.toLocaleString()}</span>
            </li>
          ))}
        </ul>
        {rows.length > MAX_BARS && (
          <figcaption className="muted small">The first {MAX_BARS} rows are drawn.</figcaption>
        )}
      </figure>
    );
  }
  const { times, series } = model;
  const t0 = times[0];
  const t1 = times[times.length - 1];
  const step = times.length > 1 ? (t1 - t0) / (times.length - 1) : 1;
  const span = Math.max(1, t1 - t0 + step);
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const x = (t: number) => ((t - t0) / span) * W;
  const y = (v: number) => H - (v / max) * (H - 2);
  return (
    <figure className="result-chart" aria-label={`Time chart of ${series.map((s) => s.name).join(', ')}`}>
      <div className="histogram-plot">
        <span className="histogram-max" aria-hidden="true">
          {max.toLocaleString()}
        </span>
        <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" aria-hidden="true">
          {series.length === 1
            ? series[0].values.map((v, i) => (
                <rect
                  key={times[i]}
                  className="bar"
                  x={x(times[i]) + 0.5}
                  width={Math.max(0.5, (step / span) * W - 1)}
                  y={y(v)}
                  height={H - y(v)}
                >
                  <title>{`${formatTime(times[i], utc)}: ${v.toLocaleString()}`}</title>
                </rect>
              ))
            : series.map((s, si) => (
                <polyline
                  key={s.name}
                  className={`series series-${si}`}
                  fill="none"
                  vectorEffect="non-scaling-stroke"
                  points={s.values.map((v, i) => `${x(times[i]) + ((step / span) * W) / 2},${y(v)}`).join(' ')}
                />
              ))}
        </svg>
      </div>
      <div className="histogram-axis" aria-hidden="true">
        <span className="first" style={{ left: '0%' }}>
          {formatTime(t0, utc)}
        </span>
        <span className="last" style={{ left: '100%' }}>
          {formatTime(t1 + step, utc)}
        </span>
      </div>
      {series.length > 1 && (
        <ul className="legend">
          {series.map((s, si) => (
            <li key={s.name}>
              <span className={`swatch series-${si}`} aria-hidden="true" />
              {s.name}
            </li>
          ))}
        </ul>
      )}
    </figure>
  );
}
