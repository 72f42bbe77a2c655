/**
 * The histogram of matching events over time, in SVG. Dragging across it selects a new range (a click
 * selects one bucket); from the keyboard, arrows move between buckets and Enter zooms to one.
 */
import { type KeyboardEvent, type PointerEvent, useId, useMemo, useRef, useState } from 'react';
import { formatTime } from '../lib/time.ts';

export interface Bucket {
  /** Start of the bucket, epoch ms. */
  t: number;
  count: number;
}

export interface HistogramProps {
  buckets: Bucket[];
  spanMs: number;
  fromMs: number;
  toMs: number;
  onSelect(fromMs: number, toMs: number): void;
  utc?: boolean;
  /** Shown in the accessible name: "events" by default. */
  unit?: string;
}

/** Width of the drawing in SVG units; the SVG stretches to its box horizontally. */
export const VIEW_W = 1000;
const VIEW_H = 100;
/** A drag shorter than this many pixels is a click. */
const DRAG_MIN_PX = 4;

/** Bars of the histogram in SVG units, one per bucket that lies in the range. */
export function layoutBars(buckets: Bucket[], spanMs: number, fromMs: number, toMs: number) {
  const range = Math.max(1, toMs - fromMs);
  const max = Math.max(1, ...buckets.map((b) => b.count));
  return buckets
    .filter((b) => b.t + spanMs > fromMs && b.t < toMs)
    .map((b) => {
      const x0 = Math.max(0, ((b.t - fromMs) / range) * VIEW_W);
      const x1 = Math.min(VIEW_W, ((b.t + spanMs - fromMs) / range) * VIEW_W);
      const w = Math.max(0.5, x1 - x0);
      const gap = w > 4 ? Math.min(1.5, w * 0.15) : 0;
      const h = (b.count / max) * (VIEW_H - 2);
      return { bucket: b, x: x0 + gap / 2, w: Math.max(0.5, w - gap), y: VIEW_H - h, h };
    });
}

/** The time at a horizontal position in the element, clamped to the range. */
export function timeAt(clientX: number, rect: { left: number; width: number }, fromMs: number, toMs: number) {
  const frac = rect.width > 0 ? Math.min(1, Math.max(0, (clientX - rect.left) / rect.width)) : 0;
  return Math.round(fromMs + frac * (toMs - fromMs));
}

export function Histogram({ buckets, spanMs, fromMs, toMs, onSelect, utc = false, unit = 'events' }: HistogramProps) {
  const svgRef = useRef<SVGSVGElement>(null);
  const [drag, setDrag] = useState<{ x0: number; x1: number; t0: number; t1: number } | null>(null);
  const [focus, setFocus] = useState<number | null>(null);
  const descId = useId();
  const bars = useMemo(() => layoutBars(buckets, spanMs, fromMs, toMs), [buckets, spanMs, fromMs, toMs]);
  const total = buckets.reduce((n, b) => n + b.count, 0);
  const max = Math.max(0, ...buckets.map((b) => b.count));
  const range = Math.max(1, toMs - fromMs);

  const rect = () => svgRef.current?.getBoundingClientRect() ?? { left: 0, width: 0 };

  const down = (e: PointerEvent<SVGSVGElement>) => {
    if (e.button !== 0) return;
    const r = rect();
    (e.currentTarget as Element).setPointerCapture?.(e.pointerId);
    const t = timeAt(e.clientX, r, fromMs, toMs);
    setDrag({ x0: e.clientX, x1: e.clientX, t0: t, t1: t });
  };
  const move = (e: PointerEvent<SVGSVGElement>) => {
    if (!drag) return;
    setDrag({ ...drag, x1: e.clientX, t1: timeAt(e.clientX, rect(), fromMs, toMs) });
  };
  const up = (e: PointerEvent<SVGSVGElement>) => {
    if (!drag) return;
    const t1 = timeAt(e.clientX, rect(), fromMs, toMs);
    setDrag(null);
    if (Math.abs(e.clientX - drag.x0) >= DRAG_MIN_PX) {
      const [a, b] = drag.t0 < t1 ? [drag.t0, t1] : [t1, drag.t0];
      if (b > a) onSelect(a, b);
      return;
    }
    // A click zooms to the bucket under the pointer.
    const hit = bars.find((bar) => drag.t0 >= bar.bucket.t && drag.t0 < bar.bucket.t + spanMs);
    if (hit) onSelect(Math.max(fromMs, hit.bucket.t), Math.min(toMs, hit.bucket.t + spanMs));
  };

  const key = (e: KeyboardEvent<SVGSVGElement>) => {
    if (bars.length === 0) return;
    const last = bars.length - 1;
    let next = focus;
    if (e.key === 'ArrowRight') next = focus === null ? 0 : Math.min(last, focus + 1);
    else if (e.key === 'ArrowLeft') next = focus === null ? last : Math.max(0, focus - 1);
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = last;
    else if ((e.key === 'Enter' || e.key === ' ') && focus !== null) {
      e.preventDefault();
      const b = bars[focus].bucket;
      onSelect(Math.max(fromMs, b.t), Math.min(toMs, b.t + spanMs));
      return;
    } else return;
    e.preventDefault();
    setFocus(next);
  };

  const sel = drag && Math.abs(drag.x1 - drag.x0) >= DRAG_MIN_PX ? drag : null;
  const selX0 = sel ? ((Math.min(sel.t0, sel.t1) - fromMs) / range) * VIEW_W : 0;
  const selX1 = sel ? ((Math.max(sel.t0, sel.t1) - fromMs) / range) * VIEW_W : 0;
  const focused = focus !== null ? bars[focus] : undefined;
  const ticks = [0, 0.25, 0.5, 0.75, 1];

  return (
    <figure className="histogram">
      <div className="histogram-plot">
        <span className="histogram-max" aria-hidden="true">
          {max.toLocaleString()}
        </span>
        <svg
          ref={svgRef}
          viewBox={`0 0 ${VIEW_W} ${VIEW_H}`}
          preserveAspectRatio="none"
          role="img"
          // biome-ignore lint/a11y/noNoninteractiveTabindex: focusable so the keyboard can pick a bucket (arrows, Enter), as its label says.
          tabIndex={0}
          aria-label={`Histogram: ${total.toLocaleString()} ${unit} in ${buckets.length} buckets. Drag to zoom, or use the arrow keys and Enter.`}
          aria-describedby={descId}
          data-testid="histogram"
          onPointerDown={down}
          onPointerMove={move}
          onPointerUp={up}
          onPointerCancel={() => setDrag(null)}
          onKeyDown={key}
          onBlur={() => setFocus(null)}
        >
          {bars.map((b, i) => (
            <rect
              key={b.bucket.t}
              className={`bar${i === focus ? ' bar-focus' : ''}`}
              x={b.x}
              y={b.y}
              width={b.w}
              height={b.h}
              data-count={b.bucket.count}
              data-t={b.bucket.t}
            >
              <title>{`${formatTime(b.bucket.t, utc)}: ${b.bucket.count.toLocaleString()} ${unit}`}</title>
            </rect>
          ))}
          {sel && (
            <rect className="histogram-selection" x={selX0} y={0} width={Math.max(0, selX1 - selX0)} height={VIEW_H} />
          )}
        </svg>
      </div>
      <div className="histogram-axis" aria-hidden="true">
        {ticks.map((f) => (
          <span key={f} style={{ left: `${f * 100}%` }} className={f === 1 ? 'last' : f === 0 ? 'first' : ''}>
            {formatTime(fromMs + f * range, utc)}
          </span>
        ))}
      </div>
      <figcaption id={descId} className="histogram-caption" aria-live="polite">
        {focused
          ? `${formatTime(focused.bucket.t, utc)}: ${focused.bucket.count.toLocaleString()} ${unit}. Enter zooms to this bucket.`
          : `${total.toLocaleString()} ${unit}, ${spanLabel(spanMs)} per bar. Drag across the chart to zoom in.`}
      </figcaption>
    </figure>
  );
}

function spanLabel(ms: number): string {
  if (ms % 86400e3 === 0) return `${ms / 86400e3} d`;
  if (ms % 3600e3 === 0) return `${ms / 3600e3} h`;
  if (ms % 60e3 === 0) return `${ms / 60e3} min`;
  return `${ms / 1000} s`;
}
