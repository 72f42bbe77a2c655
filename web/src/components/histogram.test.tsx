import { cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { Histogram, layoutBars, timeAt, VIEW_W } from './histogram.tsx';

afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
});

const FROM = Date.UTC(2026, 0, 1, 0, 0);
const MIN = 60e3;
const TO = FROM + 10 * MIN;
const buckets = [
  { t: FROM, count: 5 },
  { t: FROM + MIN, count: 10 },
  { t: FROM + 2 * MIN, count: 0 },
  { t: FROM + 9 * MIN, count: 2 },
];

/** happy-dom does no layout: give the chart a 1000 px wide box at x=100. */
function layout(svg: Element) {
  vi.spyOn(svg, 'getBoundingClientRect').mockReturnValue({
    left: 100,
    top: 0,
    width: 1000,
    height: 110,
    right: 1100,
    bottom: 110,
    x: 100,
    y: 0,
    toJSON: () => ({}),
  });
}

describe('Histogram', () => {
  test('one bar per bucket, placed by time and as tall as its count', () => {
    render(<Histogram buckets={buckets} spanMs={MIN} fromMs={FROM} toMs={TO} onSelect={() => {}} />);
    const bars = [...screen.getByTestId('histogram').querySelectorAll('rect.bar')];
    expect(bars.map((b) => Number(b.getAttribute('data-count')))).toEqual([5, 10, 0, 2]);
    const heights = bars.map((b) => Number(b.getAttribute('height')));
    expect(heights[1]).toBeGreaterThan(heights[0]);
    expect(heights[0] / heights[1]).toBeCloseTo(0.5, 5);
    expect(heights[2]).toBe(0);
    const xs = bars.map((b) => Number(b.getAttribute('x')));
    expect(xs[0]).toBeLessThan(xs[1]);
    expect(xs[3]).toBeGreaterThan(VIEW_W * 0.89);
    expect(screen.getByTestId('histogram').getAttribute('aria-label')).toContain('17 events');
  });

  test('bars outside the range are left out and edges are clipped', () => {
    const bars = layoutBars([{ t: FROM - 2 * MIN, count: 3 }, ...buckets], MIN, FROM, TO);
    expect(bars).toHaveLength(4);
    for (const b of bars) expect(b.x + b.w).toBeLessThanOrEqual(VIEW_W + 0.001);
  });

  test('dragging across the chart selects the range under the drag', () => {
    const onSelect = vi.fn();
    render(<Histogram buckets={buckets} spanMs={MIN} fromMs={FROM} toMs={TO} onSelect={onSelect} />);
    const svg = screen.getByTestId('histogram');
    layout(svg);
    fireEvent.pointerDown(svg, { clientX: 300, button: 0, pointerId: 1 });
    fireEvent.pointerMove(svg, { clientX: 500, pointerId: 1 });
    expect(svg.querySelector('.histogram-selection')).not.toBeNull();
    fireEvent.pointerUp(svg, { clientX: 500, pointerId: 1 });
    expect(onSelect).toHaveBeenCalledTimes(1);
    const [a, b] = onSelect.mock.calls[0];
    expect(a).toBe(FROM + 2 * MIN); // (300 - 100) / 1000 of 10 minutes
    expect(b).toBe(FROM + 4 * MIN);
  });

  test('a drag from right to left selects the same range', () => {
    const onSelect = vi.fn();
    render(<Histogram buckets={buckets} spanMs={MIN} fromMs={FROM} toMs={TO} onSelect={onSelect} />);
    const svg = screen.getByTestId('histogram');
    layout(svg);
    fireEvent.pointerDown(svg, { clientX: 500, button: 0, pointerId: 1 });
    fireEvent.pointerMove(svg, { clientX: 300, pointerId: 1 });
    fireEvent.pointerUp(svg, { clientX: 300, pointerId: 1 });
    expect(onSelect).toHaveBeenCalledWith(FROM + 2 * MIN, FROM + 4 * MIN);
  });

  test('a click (no drag) zooms to the bucket under the pointer', () => {
    const onSelect = vi.fn();
    render(<Histogram buckets={buckets} spanMs={MIN} fromMs={FROM} toMs={TO} onSelect={onSelect} />);
    const svg = screen.getByTestId('histogram');
    layout(svg);
    fireEvent.pointerDown(svg, { clientX: 250, button: 0, pointerId: 1 });
    fireEvent.pointerUp(svg, { clientX: 251, pointerId: 1 });
    expect(onSelect).toHaveBeenCalledWith(FROM + MIN, FROM + 2 * MIN);
  });

  test('from the keyboard: arrows pick a bucket, Enter zooms to it', () => {
    const onSelect = vi.fn();
    render(<Histogram buckets={buckets} spanMs={MIN} fromMs={FROM} toMs={TO} onSelect={onSelect} />);
    const svg = screen.getByTestId('histogram');
    fireEvent.keyDown(svg, { key: 'ArrowRight' });
    fireEvent.keyDown(svg, { key: 'ArrowRight' });
    expect(svg.querySelector('.bar-focus')?.getAttribute('data-count')).toBe('10');
    fireEvent.keyDown(svg, { key: 'Enter' });
    expect(onSelect).toHaveBeenCalledWith(FROM + MIN, FROM + 2 * MIN);
  });

  test('timeAt clamps to the range', () => {
    const rect = { left: 0, width: 100 };
    expect(timeAt(-50, rect, 0, 1000)).toBe(0);
    expect(timeAt(50, rect, 0, 1000)).toBe(500);
    expect(timeAt(500, rect, 0, 1000)).toBe(1000);
  });
});
