/** Error, empty and loading states, and a confirmation dialog: each says what happened and what to do. */
import { type ReactNode, useEffect, useRef } from 'react';
import { describeError } from '../lib/api.ts';

/** An error answer, described for a person, with an optional retry. */
export function ErrorBox({ error, onRetry, title }: { error: unknown; onRetry?: () => void; title?: string }) {
  const d = describeError(error);
  return (
    <div className="notice notice-error" role="alert">
      <p className="notice-title">{title ?? d.title}</p>
      <p>{d.detail}</p>
      {d.action && <p>{d.action}</p>}
      {onRetry && (
        <button type="button" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

/** A feature this server does not offer (its endpoint answered 404 "no route"). */
export function NotAvailable({ feature, children }: { feature: string; children?: ReactNode }) {
  return (
    <div className="notice notice-info" role="status">
      <p className="notice-title">{feature} is not available on this server</p>
      <p>The Vigil node behind this console does not offer it yet (its API answered “no route”).</p>
      {children}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <p className="loading" role="status">
      <span className="spinner" aria-hidden="true" />
      {label}
    </p>
  );
}

/**
 * A modal confirmation on the native <dialog>: focus moves into it and Escape cancels. The confirm
 * button is not focused first, so Enter alone does not confirm a dangerous action.
 */
export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  children: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  onConfirm(): void;
  onCancel(): void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const cancelRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) {
      if (typeof d.showModal === 'function') d.showModal();
      else d.setAttribute('open', '');
      cancelRef.current?.focus();
    } else if (!props.open && d.open) {
      if (typeof d.close === 'function') d.close();
      else d.removeAttribute('open');
    }
  }, [props.open]);
  return (
    <dialog
      ref={ref}
      className="dialog"
      aria-labelledby="confirm-title"
      onCancel={(e) => {
        e.preventDefault();
        props.onCancel();
      }}
    >
      <h2 id="confirm-title">{props.title}</h2>
      <div>{props.children}</div>
      <div className="dialog-actions">
        <button type="button" ref={cancelRef} onClick={props.onCancel}>
          Cancel
        </button>
        <button type="button" className={props.danger ? 'danger' : 'primary'} onClick={props.onConfirm}>
          {props.confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

/** A level or status shown as a word with a colour, never colour alone. */
export function Badge({ kind, children }: { kind: string; children: ReactNode }) {
  return <span className={`badge badge-${kind.replace(/[^a-z_-]/gi, '')}`}>{children}</span>;
}
