import { useState } from 'preact/hooks';
import { ApiError } from '../api/client';

/** The sign-in form: an API token, checked with the server before anything else shows. */
export function SignIn(props: { notice?: string; onSignIn: (token: string) => Promise<void> }) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);

  const submit = async (e: Event) => {
    e.preventDefault();
    const value = token.trim();
    if (!value) {
      setError('Paste an API token first.');
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      await props.onSignIn(value);
    } catch (err) {
      setBusy(false);
      if (err instanceof ApiError && err.status === 401) {
        setError(
          'The server does not accept this token: it is unknown, revoked or expired. Ask an admin for a new one (flotilla tokens create).',
        );
      } else if (err instanceof ApiError && err.unreachable) {
        setError('The server cannot be reached. Check that flotilla-server is running.');
      } else {
        setError(err instanceof Error ? err.message : String(err));
      }
    }
  };

  return (
    <main class="signin">
      <form class="signin-card" onSubmit={submit}>
        <div class="brand brand-large">
          <span class="brand-mark" aria-hidden="true" />
          Flotilla
        </div>
        <h1>Sign in</h1>
        <p class="muted">
          Use an API token (<code>flt_…</code>). Its role decides what you can do here: viewers
          look, operators also steer rollouts, publishers also yank versions, admins do all of it
          and see the audit log.
        </p>
        {props.notice && (
          <div class="notice" role="status">
            {props.notice}
          </div>
        )}
        <label class="field">
          <span>API token</span>
          <input
            type="password"
            name="token"
            autoComplete="off"
            spellcheck={false}
            placeholder="flt_…"
            value={token}
            onInput={(e) => setToken((e.target as HTMLInputElement).value)}
            autoFocus
          />
        </label>
        {error && (
          <div class="form-error" role="alert">
            {error}
          </div>
        )}
        <button type="submit" class="btn btn-primary btn-block" disabled={busy}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        <p class="hint">
          The server printed an admin token on its first start. Create tokens for others with{' '}
          <code>flotilla tokens create --name NAME --role viewer</code>. The token stays in this
          browser tab only.
        </p>
      </form>
    </main>
  );
}
