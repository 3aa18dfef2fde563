// The dashboard's building blocks: cards, badges, tables, meters and the loading, empty and
// error states every page uses.

import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ApiError } from '../api/client';

export function PageHeader(props: {
  title: string;
  subtitle?: ComponentChildren;
  actions?: ComponentChildren;
  back?: { href: string; label: string };
}) {
  return (
    <header class="page-header">
      <div>
        {props.back && (
          <a class="back" href={props.back.href}>
            ← {props.back.label}
          </a>
        )}
        <h1>{props.title}</h1>
        {props.subtitle && <p class="subtitle">{props.subtitle}</p>}
      </div>
      {props.actions && <div class="header-actions">{props.actions}</div>}
    </header>
  );
}

export function Card(props: {
  title?: ComponentChildren;
  aside?: ComponentChildren;
  children: ComponentChildren;
  class?: string;
  testid?: string;
}) {
  return (
    <section class={`card ${props.class ?? ''}`} data-testid={props.testid}>
      {(props.title || props.aside) && (
        <div class="card-head">
          {props.title && <h2>{props.title}</h2>}
          {props.aside && <div class="card-aside">{props.aside}</div>}
        </div>
      )}
      {props.children}
    </section>
  );
}

export type Tone = 'neutral' | 'good' | 'warn' | 'bad' | 'info' | 'muted';

export function Badge(props: { tone?: Tone; children: ComponentChildren; title?: string }) {
  return (
    <span class={`badge badge-${props.tone ?? 'neutral'}`} title={props.title}>
      {props.children}
    </span>
  );
}

const STATE_TONES: Record<string, Tone> = {
  active: 'good',
  running: 'info',
  completed: 'good',
  pass: 'good',
  success: 'good',
  waiting_approval: 'warn',
  paused: 'warn',
  pending: 'warn',
  downloading: 'info',
  verifying: 'info',
  failed: 'bad',
  fail: 'bad',
  denied: 'bad',
  rolled_back: 'bad',
  aborted: 'muted',
  revoked: 'muted',
  yanked: 'muted',
};

/** A state name (`waiting_approval`) as a coloured badge ("waiting approval"). */
export function StateBadge(props: { state: string }) {
  return (
    <Badge tone={STATE_TONES[props.state] ?? 'neutral'}>{props.state.replace(/_/g, ' ')}</Badge>
  );
}

export function Stat(props: { label: string; value: ComponentChildren; hint?: ComponentChildren }) {
  return (
    <div class="stat">
      <div class="stat-label">{props.label}</div>
      <div class="stat-value">{props.value}</div>
      {props.hint && <div class="stat-hint">{props.hint}</div>}
    </div>
  );
}

export function Loading(props: { what: string }) {
  return (
    <div class="state state-loading" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" />
      Loading {props.what}…
    </div>
  );
}

/** Nothing to show yet, and what to do about it. */
export function Empty(props: { title: string; children?: ComponentChildren }) {
  return (
    <div class="state state-empty" data-testid="empty">
      <strong>{props.title}</strong>
      {props.children && <div class="state-detail">{props.children}</div>}
    </div>
  );
}

function advice(error: ApiError): string {
  if (error.unreachable) {
    return 'The server does not answer. Check that flotilla-server is running and reachable; the dashboard keeps retrying.';
  }
  if (error.status === 403) {
    return 'Your token’s role does not allow this. Sign in with a token whose role does (see docs/api.md).';
  }
  if (error.status === 404) return 'It may have been deleted, or the address is mistyped.';
  if (error.status >= 500) {
    return 'The server failed; its log has the details. The dashboard keeps retrying.';
  }
  return 'Check the values you entered and try again.';
}

/** A failed load or action: what the server said, and what to do. */
export function ErrorNotice(props: { error: ApiError; what?: string }) {
  const { error } = props;
  return (
    <div class="state state-error" role="alert">
      <strong>
        {props.what ? `Could not load ${props.what}` : 'Request failed'}: {error.message}
      </strong>
      <div class="state-detail">
        {advice(error)} <code>{error.code}</code>
      </div>
    </div>
  );
}

/** A polled value's loading, error and empty states, or its content. */
export function Loaded<T>(props: {
  data: T | undefined;
  error: ApiError | undefined;
  what: string;
  children: (data: T) => ComponentChildren;
}) {
  if (props.data !== undefined) {
    return (
      <>
        {props.error && <StaleNotice error={props.error} />}
        {props.children(props.data)}
      </>
    );
  }
  if (props.error) return <ErrorNotice error={props.error} what={props.what} />;
  return <Loading what={props.what} />;
}

/** Data is shown but the last refresh failed. */
export function StaleNotice(props: { error: ApiError }) {
  return (
    <div class="stale" role="status">
      Showing the last data received; refreshing failed: {props.error.message}
    </div>
  );
}

export function Labels(props: { labels: Record<string, string> | null | undefined }) {
  const entries = Object.entries(props.labels ?? {});
  if (!entries.length) return <span class="muted">no labels</span>;
  return (
    <span class="labels">
      {entries.map(([k, v]) => (
        <span class="label" key={k}>
          {k}={v}
        </span>
      ))}
    </span>
  );
}

/** Parts of a whole as one bar with a legend. */
export function StackedBar(props: {
  parts: { label: string; value: number; tone: Tone }[];
  total?: number;
  testid?: string;
}) {
  const total = props.total ?? props.parts.reduce((s, p) => s + p.value, 0);
  return (
    <div class="stacked" data-testid={props.testid}>
      <div
        class="stacked-bar"
        role="img"
        aria-label={props.parts.map((p) => `${p.label} ${p.value}`).join(', ')}
      >
        {total > 0 &&
          props.parts
            .filter((p) => p.value > 0)
            .map((p) => (
              <span
                key={p.label}
                class={`seg seg-${p.tone}`}
                style={{ width: `${(100 * p.value) / total}%` }}
                title={`${p.label}: ${p.value}`}
              />
            ))}
      </div>
      <ul class="legend">
        {props.parts.map((p) => (
          <li key={p.label}>
            <span class={`dot seg-${p.tone}`} />
            {p.label} <strong>{p.value}</strong>
          </li>
        ))}
      </ul>
    </div>
  );
}

/** One value against a maximum, as a thin bar. */
export function Meter(props: { value: number; max: number; tone?: Tone }) {
  const pct = props.max > 0 ? Math.min(100, (100 * props.value) / props.max) : 0;
  return (
    <span class="meter">
      <span class={`meter-fill seg-${props.tone ?? 'info'}`} style={{ width: `${pct}%` }} />
    </span>
  );
}

/** A digest shown short, copied whole on click. */
export function Digest(props: { hex: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <button
      type="button"
      class="digest"
      title={`sha256:${props.hex} (click to copy)`}
      onClick={() => {
        void navigator.clipboard?.writeText(props.hex).then(() => {
          setCopied(true);
          setTimeout(() => setCopied(false), 1200);
        });
      }}
    >
      <code>{props.hex.slice(0, 12)}</code>
      {copied && <span class="copied">copied</span>}
    </button>
  );
}

/**
 * A confirmation dialog with an optional reason, for actions that change the fleet. Resolves
 * the promise from `onConfirm` before closing; shows its error otherwise.
 */
export function ConfirmDialog(props: {
  title: string;
  body: ComponentChildren;
  confirmLabel: string;
  danger?: boolean;
  reasonLabel?: string;
  reasonRequired?: boolean;
  onConfirm: (reason: string) => Promise<void>;
  onClose: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await props.onConfirm(reason.trim());
      props.onClose();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      setBusy(false);
    }
  };
  return (
    <dialog ref={ref} class="dialog" onClose={props.onClose} aria-labelledby="dialog-title">
      <form method="dialog" onSubmit={submit}>
        <h2 id="dialog-title">{props.title}</h2>
        <div class="dialog-body">{props.body}</div>
        {props.reasonLabel && (
          <label class="field">
            <span>{props.reasonLabel}</span>
            <input
              type="text"
              name="reason"
              value={reason}
              required={props.reasonRequired}
              onInput={(e) => setReason((e.target as HTMLInputElement).value)}
              autoFocus
            />
          </label>
        )}
        {error && (
          <div class="form-error" role="alert">
            {error}
          </div>
        )}
        <div class="dialog-actions">
          <button type="button" class="btn" onClick={props.onClose} disabled={busy}>
            Cancel
          </button>
          <button
            type="submit"
            class={`btn ${props.danger ? 'btn-danger' : 'btn-primary'}`}
            disabled={busy}
          >
            {busy ? 'Working…' : props.confirmLabel}
          </button>
        </div>
      </form>
    </dialog>
  );
}
