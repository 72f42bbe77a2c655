/**
 * The query bar: one line of the Vigil query language. A syntax error from the server (400 with
 * `details.position`, 1-based, and `details.hint`) is marked at its column, both in the field and in the
 * message under it, and the caret is moved there.
 */
import { type FormEvent, type ReactNode, useEffect, useId, useLayoutEffect, useRef, useState } from 'react';

/** A syntax error about a given query text. */
export interface QueryError {
  query: string;
  /** 1-based column, as the server reports it. */
  position: number;
  hint: string;
  message: string;
}

export interface QueryBarProps {
  value: string;
  onSubmit(query: string): void;
  error?: QueryError | null;
  busy?: boolean;
  /** Extra controls at the end of the bar (the time picker). */
  children?: ReactNode;
}

/** Splits a text around a 1-based column; past the end, the marked part is a single space. */
export function splitAt(text: string, position: number): [string, string, string] {
  const i = Math.max(0, Math.min(position - 1, text.length));
  return [text.slice(0, i), text.slice(i, i + 1) || ' ', text.slice(i + 1)];
}

export function QueryBar({ value, onSubmit, error, busy, children }: QueryBarProps) {
  const [text, setText] = useState(value);
  const inputRef = useRef<HTMLInputElement>(null);
  const mirrorRef = useRef<HTMLDivElement>(null);
  const errorId = useId();
  const helpId = useId();

  useEffect(() => setText(value), [value]);

  // The error is about the text as submitted; once edited, its column no longer points at anything.
  const shown = error && error.query === text ? error : null;

  useLayoutEffect(() => {
    if (!error || !inputRef.current) return;
    const i = Math.max(0, Math.min(error.position - 1, error.query.length));
    inputRef.current.focus();
    inputRef.current.setSelectionRange(i, i);
    syncScroll();
  }, [error]);

  // The mirror sits under the transparent field and scrolls with it, so the mark stays under its column.
  const syncScroll = () => {
    if (mirrorRef.current && inputRef.current) mirrorRef.current.scrollLeft = inputRef.current.scrollLeft;
  };

  const submit = (e: FormEvent) => {
    e.preventDefault();
    onSubmit(text.trim() === '' ? '*' : text.trim());
  };

  const [before, at, after] = shown ? splitAt(shown.query, shown.position) : [text, '', ''];

  return (
    <search>
      <form className="query-bar" onSubmit={submit} aria-busy={busy || undefined}>
        <label htmlFor="query-input" className="visually-hidden">
          Query
        </label>
        <div className={`query-field${shown ? ' has-error' : ''}`}>
          <div className="query-mirror" ref={mirrorRef} aria-hidden="true" data-testid="query-mirror">
            {before}
            {shown && <mark className="query-error-mark">{at}</mark>}
            {after}
          </div>
          <input
            id="query-input"
            ref={inputRef}
            className="query-input"
            type="text"
            spellCheck={false}
            autoComplete="off"
            autoCapitalize="off"
            value={text}
            placeholder="user.name:bob AND event.outcome:failure | stats count() by host.name"
            aria-invalid={shown ? true : undefined}
            aria-describedby={shown ? `${errorId} ${helpId}` : helpId}
            onChange={(e) => setText(e.target.value)}
            onScroll={syncScroll}
            onKeyUp={syncScroll}
            onSelect={syncScroll}
          />
        </div>
        {children}
        {/* Never disabled: a disabled default button blocks Enter, and a new search replaces a running one. */}
        <button type="submit" className="primary">
          {busy ? 'Searching…' : 'Search'}
        </button>
        {shown && (
          <div className="query-error" id={errorId} role="alert">
            <p>
              <strong>Syntax error at column {shown.position}:</strong> {shown.hint}
            </p>
            <pre className="query-error-context" aria-hidden="true">
              {splitAt(shown.query, shown.position)[0]}
              <mark>{splitAt(shown.query, shown.position)[1]}</mark>
              {splitAt(shown.query, shown.position)[2]}
              {'\n'}
              {' '.repeat(Math.max(0, Math.min(shown.position - 1, shown.query.length)))}^
            </pre>
          </div>
        )}
        <details className="query-help" id={helpId}>
          <summary>Query syntax</summary>
          <ul>
            <li>
              <code>field:value</code>, <code>field:"a phrase"</code>, <code>field:adm*</code>, <code>word</code> (full
              text)
            </li>
            <li>
              <code>AND</code>, <code>OR</code>, <code>NOT</code>, <code>( )</code>; <code>source.ip:10.0.0.0/8</code>;{' '}
              <code>field:[1 TO 5]</code>, <code>field&gt;=3</code>, <code>field:*</code>
            </li>
            <li>
              <code>| stats count() by host.name</code>, <code>| timechart span=5m count()</code>,{' '}
              <code>| sort -count</code>, <code>| head 20</code>, <code>| fields a, b</code>
            </li>
            <li>
              Press <kbd>/</kbd> anywhere on this page to jump to the query.
            </li>
          </ul>
        </details>
      </form>
    </search>
  );
}
