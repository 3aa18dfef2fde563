// Live data: each page polls what it shows. Answers are revalidated with ETags (see
// api/client.ts), so an unchanged answer costs a bodiless 304 and no re-render.

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api/client';

/** Milliseconds between polls; `localStorage['flotilla.pollMs']` overrides it. */
export function pollInterval(): number {
  const configured = Number(globalThis.localStorage?.getItem('flotilla.pollMs'));
  return Number.isFinite(configured) && configured >= 250 ? configured : 3000;
}

type Listener = (state: LiveState) => void;

/** Whether the last poll anywhere reached the server, for the header's indicator. */
export interface LiveState {
  ok: boolean;
  at: number | undefined;
  message?: string;
}

let live: LiveState = { ok: true, at: undefined };
const listeners = new Set<Listener>();

function report(state: LiveState) {
  live = state;
  for (const l of listeners) l(state);
}

export function useLiveState(): LiveState {
  const [state, setState] = useState(live);
  useEffect(() => {
    listeners.add(setState);
    return () => void listeners.delete(setState);
  }, []);
  return state;
}

let onUnauthorized: (e: ApiError) => void = () => {};

/** Called when the server refuses the token (revoked or expired): the app signs out. */
export function setUnauthorizedHandler(handler: (e: ApiError) => void) {
  onUnauthorized = handler;
}

export interface Polled<T> {
  /** The last answer (kept while a later poll fails). */
  data: T | undefined;
  /** The last poll's failure, cleared by the next success. */
  error: ApiError | undefined;
  /** No answer yet and no failure yet. */
  loading: boolean;
  /** Polls again at once (after an action). */
  refresh: () => void;
}

function asApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  return new ApiError(0, 'client_error', e instanceof Error ? e.message : String(e));
}

/**
 * Calls `load` now and every poll interval while the page is visible; `null` loads nothing.
 * `key` identifies what is loaded: a new key starts afresh.
 */
export function usePoll<T>(
  key: string | null,
  load: (signal: AbortSignal) => Promise<T>,
): Polled<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const refresh = useCallback(() => setTick((t) => t + 1), []);

  useEffect(() => {
    setData(undefined);
    setError(undefined);
  }, [key]);

  useEffect(() => {
    if (key === null) return;
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    const run = async () => {
      if (document.hidden) {
        timer = setTimeout(run, pollInterval());
        return;
      }
      try {
        const value = await loadRef.current(controller.signal);
        if (stopped) return;
        setData((prev) => (Object.is(prev, value) ? prev : value));
        setError(undefined);
        report({ ok: true, at: Date.now() });
      } catch (e) {
        if (stopped || controller.signal.aborted) return;
        const err = asApiError(e);
        setError(err);
        if (err.status === 401) {
          onUnauthorized(err);
          return;
        }
        if (err.unreachable || err.status >= 500) {
          report({ ok: false, at: live.at, message: err.message });
        }
      }
      if (!stopped) timer = setTimeout(run, pollInterval());
    };
    void run();
    const wake = () => {
      if (!document.hidden && timer !== undefined) {
        clearTimeout(timer);
        void run();
      }
    };
    document.addEventListener('visibilitychange', wake);
    return () => {
      stopped = true;
      controller.abort();
      if (timer !== undefined) clearTimeout(timer);
      document.removeEventListener('visibilitychange', wake);
    };
  }, [key, tick]);

  return { data, error, loading: data === undefined && error === undefined, refresh };
}
