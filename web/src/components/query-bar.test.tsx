import { cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { QueryBar, splitAt } from './query-bar.tsx';

afterEach(cleanup);

describe('QueryBar', () => {
  test('submits the typed query on Enter (the form submit)', () => {
    const onSubmit = vi.fn();
    render(<QueryBar value="*" onSubmit={onSubmit} />);
    const input = screen.getByRole('textbox', { name: 'Query' });
    fireEvent.change(input, { target: { value: 'user.name:bob | stats count() by host.name' } });
    fireEvent.submit(input.closest('form')!);
    expect(onSubmit).toHaveBeenCalledWith('user.name:bob | stats count() by host.name');
  });

  test('an empty query is submitted as * (every event)', () => {
    const onSubmit = vi.fn();
    render(<QueryBar value="" onSubmit={onSubmit} />);
    fireEvent.click(screen.getByRole('button', { name: 'Search' }));
    expect(onSubmit).toHaveBeenCalledWith('*');
  });

  test('a syntax error marks the character at its 1-based column and explains it', () => {
    const query = 'user.name: AND x';
    render(
      <QueryBar
        value={query}
        onSubmit={() => {}}
        error={{ query, position: 12, hint: 'expected a value after ":"', message: 'Query syntax error at column 12' }}
      />,
    );
    const input = screen.getByRole('textbox', { name: 'Query' }) as HTMLInputElement;
    expect(input.getAttribute('aria-invalid')).toBe('true');
    const mark = screen.getByTestId('query-mirror').querySelector('mark');
    expect(mark?.textContent).toBe('A');
    expect(screen.getByTestId('query-mirror').textContent).toBe(query);
    const alert = screen.getByRole('alert');
    expect(alert.textContent).toContain('column 12');
    expect(alert.textContent).toContain('expected a value after ":"');
    // The caret is put where the problem is, so the user can fix it at once.
    expect(document.activeElement).toBe(input);
    expect(input.selectionStart).toBe(11);
  });

  test('an error past the end marks a space at the end', () => {
    expect(splitAt('a:(b', 5)).toEqual(['a:(b', ' ', '']);
    expect(splitAt('abc', 1)).toEqual(['', 'a', 'bc']);
  });

  test('editing the query clears the stale error mark', () => {
    const query = 'a:(b';
    render(
      <QueryBar value={query} onSubmit={() => {}} error={{ query, position: 5, hint: 'expected )', message: 'x' }} />,
    );
    const input = screen.getByRole('textbox', { name: 'Query' });
    expect(screen.queryByRole('alert')).not.toBeNull();
    fireEvent.change(input, { target: { value: 'a:(b)' } });
    expect(screen.queryByRole('alert')).toBeNull();
    expect(input.getAttribute('aria-invalid')).toBeNull();
    expect(screen.getByTestId('query-mirror').querySelector('mark')).toBeNull();
  });

  test('a new value from the URL replaces the text', () => {
    const { rerender } = render(<QueryBar value="a" onSubmit={() => {}} />);
    rerender(<QueryBar value="b" onSubmit={() => {}} />);
    expect((screen.getByRole('textbox', { name: 'Query' }) as HTMLInputElement).value).toBe('b');
  });
});
