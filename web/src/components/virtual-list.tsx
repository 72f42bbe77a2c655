/**
 * A virtualized grid: only the rows in view (plus a few) are in the DOM, so 100,000 rows scroll as fast
 * as 100. Rows have one height except expanded ones, which are measured; positions come from a prefix
 * sum over the heights. Keyboard: arrows, Page Up/Down, Home/End move the active row; Enter or Space
 * expands it (the grid keeps focus and points at the row with aria-activedescendant).
 */
import {
  type KeyboardEvent,
  type ReactNode,
  useCallback,
  useEffect,
  useId,
  useLayoutEffect,
  useMemo,
  useRef,
  useState,
} from 'react';

/** A column: its header and the class of its cells (widths come from the CSS grid of the rows). */
export interface VirtualColumn {
  id: string;
  header: ReactNode;
  className?: string;
}

export interface VirtualListProps {
  count: number;
  /** Height of a collapsed row, px (the CSS must give rows this height). */
  rowHeight: number;
  columns: VirtualColumn[];
  rowKey(index: number): string;
  isExpanded(index: number): boolean;
  onToggle(index: number): void;
  /** The content of one cell. */
  renderCell(index: number, column: string): ReactNode;
  /** The expanded part of a row, under its cells. */
  renderDetail?(index: number): ReactNode;
  label: string;
  /** Called when the rows near the end come into view (to load the next page). */
  onEndReached?(): void;
  overscan?: number;
  /** Viewport height when it cannot be measured (tests). */
  fallbackHeight?: number;
  className?: string;
}

/** Index of the row at a vertical offset, by binary search over the prefix sums. */
export function rowAt(offsets: ArrayLike<number>, count: number, y: number): number {
  let lo = 0;
  let hi = count - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (offsets[mid] <= y) lo = mid;
    else hi = mid - 1;
  }
  return Math.max(0, lo);
}

export function VirtualList(props: VirtualListProps) {
  const { count, rowHeight, overscan = 8 } = props;
  const id = useId();
  const scrollRef = useRef<HTMLDivElement>(null);
  const headerRef = useRef<HTMLDivElement>(null);
  const rowEls = useRef(new Map<number, HTMLDivElement>());
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(props.fallbackHeight ?? 600);
  const [heights, setHeights] = useState<Map<string, number>>(() => new Map());
  const [active, setActive] = useState<number | null>(null);
  const [headerH, setHeaderH] = useState(0);

  useLayoutEffect(() => {
    const el = scrollRef.current;
    if (!el) return;
    const measure = () => {
      if (el.clientHeight > 0) setViewport(el.clientHeight);
      if (headerRef.current) setHeaderH(headerRef.current.offsetHeight);
    };
    measure();
    if (typeof ResizeObserver === 'undefined') return;
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  // Prefix sums: offsets[i] is the top of row i; offsets[count] is the total height.
  const offsets = useMemo(() => {
    const o = new Float64Array(count + 1);
    for (let i = 0; i < count; i++) {
      const h = heights.size > 0 && props.isExpanded(i) ? (heights.get(props.rowKey(i)) ?? rowHeight) : rowHeight;
      o[i + 1] = o[i] + h;
    }
    return o;
    // isExpanded and rowKey change with the rows; `heights` changes when an expanded row is measured.
  }, [count, rowHeight, heights, props.isExpanded, props.rowKey]);

  const bodyTop = Math.max(0, scrollTop - headerH);
  const first = count === 0 ? 0 : Math.max(0, rowAt(offsets, count, bodyTop) - overscan);
  const lastVisible = count === 0 ? -1 : rowAt(offsets, count, bodyTop + viewport);
  const last = Math.min(count - 1, lastVisible + overscan);

  const endReached = props.onEndReached;
  useEffect(() => {
    if (endReached && count > 0 && last >= count - 1 - overscan) endReached();
  }, [last, count, overscan, endReached]);

  // Measures expanded rows after they render; a changed height moves the rows below.
  useLayoutEffect(() => {
    let changed: Map<string, number> | null = null;
    for (const [i, el] of rowEls.current) {
      if (i >= count || !props.isExpanded(i)) continue;
      const key = props.rowKey(i);
      const h = el.offsetHeight;
      if (h > 0 && heights.get(key) !== h) {
        changed ??= new Map(heights);
        changed.set(key, h);
      }
    }
    if (changed) setHeights(changed);
  });

  const scrollIntoView = useCallback(
    (i: number) => {
      const el = scrollRef.current;
      if (!el) return;
      const top = offsets[i] + headerH;
      const bottom = offsets[i + 1] + headerH;
      if (offsets[i] < bodyTop) el.scrollTop = top - headerH;
      else if (bottom > el.scrollTop + viewport) el.scrollTop = bottom - viewport;
      setScrollTop(el.scrollTop);
    },
    [offsets, headerH, bodyTop, viewport],
  );

  const key = (e: KeyboardEvent<HTMLDivElement>) => {
    if (count === 0 || e.target !== e.currentTarget) return;
    const page = Math.max(1, Math.floor(viewport / rowHeight) - 1);
    const cur = active ?? -1;
    let next: number;
    switch (e.key) {
      case 'ArrowDown':
        next = Math.min(count - 1, cur + 1);
        break;
      case 'ArrowUp':
        next = Math.max(0, cur - 1);
        break;
      case 'PageDown':
        next = Math.min(count - 1, cur + page);
        break;
      case 'PageUp':
        next = Math.max(0, cur - page);
        break;
      case 'Home':
        next = 0;
        break;
      case 'End':
        next = count - 1;
        break;
      case 'Enter':
      case ' ':
        if (active !== null) {
          e.preventDefault();
          props.onToggle(active);
        }
        return;
      default:
        return;
    }
    e.preventDefault();
    setActive(next);
    scrollIntoView(next);
  };

  // An ARIA grid over divs: rows are absolutely positioned for virtualization, which table layout does
  // not allow. The grid keeps focus (aria-activedescendant), so rows and cells are not tab stops.
  const rows: ReactNode[] = [];
  for (let i = first; i <= last; i++) {
    const expanded = props.isExpanded(i);
    rows.push(
      // biome-ignore lint/a11y/useSemanticElements: a virtualized ARIA grid row (see above).
      // biome-ignore lint/a11y/useFocusableInteractive: the grid holds focus and points at the active row.
      // biome-ignore lint/a11y/useKeyWithClickEvents: the grid handles the keyboard for all its rows.
      <div
        key={props.rowKey(i)}
        id={`${id}-row-${i}`}
        ref={(el) => {
          if (el) rowEls.current.set(i, el);
          else rowEls.current.delete(i);
        }}
        role="row"
        aria-rowindex={i + 2}
        aria-expanded={expanded}
        aria-selected={active === i}
        className={`vrow${expanded ? ' expanded' : ''}${active === i ? ' active' : ''}${i % 2 ? ' odd' : ''}`}
        style={{ transform: `translateY(${offsets[i]}px)`, minHeight: rowHeight }}
        onClick={(e) => {
          // Selecting text or using a control in the expanded part is not a click on the row.
          if ((e.target as HTMLElement).closest('.row-detail')) return;
          setActive(i);
          props.onToggle(i);
        }}
      >
        {props.columns.map((c) => (
          // biome-ignore lint/a11y/useSemanticElements: a cell of the virtualized ARIA grid (see above).
          // biome-ignore lint/a11y/useFocusableInteractive: the grid holds focus, not its cells.
          <div key={c.id} role="gridcell" className={c.className}>
            {props.renderCell(i, c.id)}
          </div>
        ))}
        {expanded && props.renderDetail && (
          // biome-ignore lint/a11y/useSemanticElements: a cell of the virtualized ARIA grid (see above).
          // biome-ignore lint/a11y/useFocusableInteractive: the grid holds focus, not its cells.
          <div role="gridcell" className="row-detail" aria-colspan={props.columns.length}>
            {props.renderDetail(i)}
          </div>
        )}
      </div>,
    );
  }

  return (
    // biome-ignore lint/a11y/useSemanticElements: a virtualized ARIA grid (see above).
    <div
      ref={scrollRef}
      className={`vlist ${props.className ?? ''}`}
      role="grid"
      aria-label={props.label}
      aria-rowcount={count + 1}
      aria-colcount={props.columns.length}
      aria-activedescendant={active !== null && active >= first && active <= last ? `${id}-row-${active}` : undefined}
      tabIndex={0}
      onKeyDown={key}
      onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
      data-testid="vlist"
    >
      {/* biome-ignore lint/a11y/useSemanticElements: the header row of the ARIA grid. */}
      {/* biome-ignore lint/a11y/useFocusableInteractive: the grid holds focus. */}
      <div ref={headerRef} className="vrow vheader" role="row" aria-rowindex={1}>
        {props.columns.map((c) => (
          // biome-ignore lint/a11y/useSemanticElements: a header cell of the ARIA grid.
          // biome-ignore lint/a11y/useFocusableInteractive: the grid holds focus.
          <div key={c.id} role="columnheader" className={c.className}>
            {c.header}
          </div>
        ))}
      </div>
      {/* biome-ignore lint/a11y/useSemanticElements: the body of the ARIA grid. */}
      <div className="vbody" role="rowgroup" style={{ height: offsets[count] }}>
        {rows}
      </div>
    </div>
  );
}
