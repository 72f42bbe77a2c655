import { cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { TimePicker } from './time-picker.tsx';

afterEach(cleanup);

describe('TimePicker', () => {
  test('a relative range is chosen from the list', () => {
    const onChange = vi.fn();
    render(<TimePicker range={{ from: 'now-24h', to: 'now' }} onChange={onChange} />);
    fireEvent.change(screen.getByLabelText('Time range'), { target: { value: 'now-15m' } });
    expect(onChange).toHaveBeenCalledWith({ from: 'now-15m', to: 'now' });
  });

  test('an absolute range is applied as ISO times, and a reversed one is refused', () => {
    const onChange = vi.fn();
    render(<TimePicker range={{ from: 'now-24h', to: 'now' }} onChange={onChange} />);
    fireEvent.change(screen.getByLabelText('Time range'), { target: { value: 'custom' } });
    const from = screen.getByLabelText('From');
    const to = screen.getByLabelText('To');
    fireEvent.change(from, { target: { value: '2026-01-02T10:00:00' } });
    fireEvent.change(to, { target: { value: '2026-01-01T10:00:00' } });
    fireEvent.click(screen.getByRole('button', { name: 'Apply' }));
    expect(screen.getByRole('alert').textContent).toContain('earlier');
    expect(onChange).not.toHaveBeenCalled();
    fireEvent.change(to, { target: { value: '2026-01-02T11:30:00' } });
    fireEvent.click(screen.getByRole('button', { name: 'Apply' }));
    const { from: f, to: t } = onChange.mock.calls[0][0];
    expect(Date.parse(t) - Date.parse(f)).toBe(90 * 60e3);
    expect(f).toBe(new Date('2026-01-02T10:00:00').toISOString());
  });

  test('an absolute range from the URL shows as a custom range', () => {
    render(
      <TimePicker range={{ from: '2026-01-01T00:00:00.000Z', to: '2026-01-01T06:00:00.000Z' }} onChange={() => {}} />,
    );
    expect((screen.getByLabelText('Time range') as HTMLSelectElement).value).toBe('custom');
    expect(screen.getByLabelText('From')).toBeTruthy();
  });
});
