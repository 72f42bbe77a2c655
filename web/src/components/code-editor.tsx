/**
 * A plain-text editor with line numbers (a textarea and a gutter that scrolls with it). Lines with a
 * problem are marked in the gutter; Tab keeps its usual meaning (moving focus), so the keyboard never
 * gets stuck in the editor.
 */
import { useId, useRef } from 'react';

export interface CodeEditorProps {
  value: string;
  onChange(v: string): void;
  label: string;
  /** 1-based line -> problem, marked in the gutter. */
  problems?: Map<number, string>;
  readOnly?: boolean;
  describedBy?: string;
}

/** Reads "line N: ..." problems (the server's Sigma validation messages) into a line map. */
export function problemLines(problems: string[]): Map<number, string> {
  const out = new Map<number, string>();
  for (const p of problems) {
    const m = /^line (\d+): (.*)$/s.exec(p);
    if (m) out.set(Number(m[1]), out.has(Number(m[1])) ? `${out.get(Number(m[1]))}; ${m[2]}` : m[2]);
  }
  return out;
}

export function CodeEditor({ value, onChange, label, problems, readOnly, describedBy }: CodeEditorProps) {
  const gutterRef = useRef<HTMLDivElement>(null);
  const id = useId();
  const lines = value.split('\n').length;
  const numbers = [];
  for (let i = 1; i <= lines; i++) {
    const p = problems?.get(i);
    numbers.push(
      <div key={i} className={p ? 'gutter-line problem' : 'gutter-line'} title={p}>
        {p ? '!' : ''}
        {i}
      </div>,
    );
  }
  return (
    <div className="code-editor">
      <label htmlFor={id} className="visually-hidden">
        {label}
      </label>
      <div className="gutter" ref={gutterRef} aria-hidden="true">
        {numbers}
      </div>
      <textarea
        id={id}
        value={value}
        readOnly={readOnly}
        spellCheck={false}
        autoCapitalize="off"
        autoComplete="off"
        wrap="off"
        aria-describedby={describedBy}
        aria-invalid={problems && problems.size > 0 ? true : undefined}
        onChange={(e) => onChange(e.target.value)}
        onScroll={(e) => {
          if (gutterRef.current) gutterRef.current.scrollTop = e.currentTarget.scrollTop;
        }}
      />
    </div>
  );
}
