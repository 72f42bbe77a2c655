import { cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { rowAt, VirtualList } from './virtual-list.tsx';

afterEach(cleanup);

function List({
  count,
  expanded = new Set<number>(),
  onToggle = () => {},
  onEndReached,
}: {
  count: number;
  expanded?: Set<number>;
  onToggle?(i: number): void;
  onEndReached?(): void;
}) {
  return (
    <VirtualList
      count={count}
      rowHeight={32}
      fallbackHeight={320}
      label="Events"
      rowKey={(i) => `r${i}`}
      isExpanded={(i) => expanded.has(i)}
      onToggle={onToggle}
      onEndReached={onEndReached}
      columns={[{ id: 'event', header: 'Event' }]}
      renderCell={(i) => `row ${i}`}
    />
  );
}

describe('VirtualList', () => {
  test('renders only the rows in view out of 100,000', () => {
    const started = performance.now();
    render(<List count={100000} />);
    const rows = screen.getAllByRole('row').filter((r) => r.getAttribute('aria-rowindex') !== '1');
    expect(rows.length).toBeLessThan(40);
    expect(rows[0].textContent).toBe('row 0');
    expect(screen.getByRole('grid').getAttribute('aria-rowcount')).toBe('100001');
    expect(performance.now() - started).toBeLessThan(2000);
  });

  test('scrolling far renders the rows there, positioned by height', () => {
    render(<List count={100000} />);
    const grid = screen.getByRole('grid');
    grid.scrollTop = 32 * 50000;
    fireEvent.scroll(grid);
    const texts = screen.getAllByRole('gridcell').map((c) => c.textContent);
    expect(texts).toContain('row 50000');
    expect(texts).not.toContain('row 0');
  });

  test('the keyboard moves the active row and Enter toggles it', () => {
    const onToggle = vi.fn();
    render(<List count={10} onToggle={onToggle} />);
    const grid = screen.getByRole('grid');
    fireEvent.keyDown(grid, { key: 'ArrowDown' });
    fireEvent.keyDown(grid, { key: 'ArrowDown' });
    const active = document.getElementById(grid.getAttribute('aria-activedescendant')!);
    expect(active?.textContent).toBe('row 1');
    fireEvent.keyDown(grid, { key: 'Enter' });
    expect(onToggle).toHaveBeenCalledWith(1);
  });

  test('asks for more rows when the end comes into view', () => {
    const onEndReached = vi.fn();
    render(<List count={5} onEndReached={onEndReached} />);
    expect(onEndReached).toHaveBeenCalled();
  });

  test('rowAt finds the row at an offset by binary search', () => {
    const offsets = [0, 32, 64, 200, 232];
    expect(rowAt(offsets, 4, 0)).toBe(0);
    expect(rowAt(offsets, 4, 63)).toBe(1);
    expect(rowAt(offsets, 4, 150)).toBe(2);
    expect(rowAt(offsets, 4, 210)).toBe(3);
  });
});
