// The shell: sign-in, the navigation, the live indicator, and the page for the current route.

import { useCallback, useEffect, useState } from 'preact/hooks';
import type { ApiError } from './api/client';
import { ago } from './lib/format';
import { setUnauthorizedHandler, useLiveState } from './lib/poll';
import { can, type Role } from './lib/roles';
import { href, useRoute, type Section } from './lib/router';
import {
  savedToken,
  saveToken,
  SessionContext,
  signIn,
  useSession,
  type Session,
} from './lib/session';
import { Devices } from './pages/Devices';
import { Models } from './pages/Models';
import { Overview } from './pages/Overview';
import { Placement } from './pages/Placement';
import { Rollouts } from './pages/Rollouts';
import { SignIn } from './pages/SignIn';
import { Loading } from './components/ui';

const NAV: { section: Section; label: string }[] = [
  { section: 'overview', label: 'Overview' },
  { section: 'models', label: 'Models' },
  { section: 'rollouts', label: 'Rollouts' },
  { section: 'devices', label: 'Devices' },
  { section: 'placement', label: 'Inference placement' },
];

export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [restoring, setRestoring] = useState(() => savedToken() !== null);
  const [notice, setNotice] = useState<string | undefined>(undefined);

  const signOut = useCallback((message?: string) => {
    saveToken(null);
    setSession(null);
    setNotice(message);
  }, []);

  const start = useCallback(
    async (token: string) => {
      const { client, who } = await signIn(token);
      saveToken(token);
      setNotice(undefined);
      setSession({ client, who, role: who.role as Role, signOut: () => signOut() });
    },
    [signOut],
  );

  useEffect(() => {
    setUnauthorizedHandler((e: ApiError) =>
      signOut(`You were signed out: ${e.message}. Sign in with a valid token.`),
    );
    const token = savedToken();
    if (!token) return;
    start(token)
      .catch(() => signOut('Your saved token is no longer accepted. Sign in again.'))
      .finally(() => setRestoring(false));
  }, [start, signOut]);

  if (restoring && !session) {
    return (
      <main class="signin">
        <Loading what="your session" />
      </main>
    );
  }
  if (!session) return <SignIn notice={notice} onSignIn={start} />;
  return (
    <SessionContext.Provider value={session}>
      <Shell />
    </SessionContext.Provider>
  );
}

function LiveIndicator() {
  const live = useLiveState();
  const [, setNow] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setNow((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, []);
  if (!live.ok) {
    return (
      <div class="live live-down" role="status" title={live.message}>
        <span class="live-dot" /> Reconnecting…{' '}
        {live.at ? `last update ${ago(new Date(live.at).toISOString())}` : ''}
      </div>
    );
  }
  return (
    <div class="live" role="status" data-testid="live">
      <span class="live-dot" /> Live
      {live.at ? ` · updated ${ago(new Date(live.at).toISOString())}` : ''}
    </div>
  );
}

function Shell() {
  const route = useRoute();
  const session = useSession();
  return (
    <div class="layout">
      <nav class="sidebar" aria-label="Sections">
        <a class="brand" href={href('overview')}>
          <span class="brand-mark" aria-hidden="true" />
          Flotilla
        </a>
        <ul>
          {NAV.map((n) => (
            <li key={n.section}>
              <a
                href={href(n.section)}
                class={route.section === n.section ? 'active' : ''}
                aria-current={route.section === n.section ? 'page' : undefined}
              >
                {n.label}
              </a>
            </li>
          ))}
        </ul>
        <div class="whoami" data-testid="whoami">
          <div class="whoami-name">{session.who.name}</div>
          <div class="whoami-role">
            role <strong>{session.role}</strong>
          </div>
          <button type="button" class="btn btn-small" onClick={session.signOut}>
            Sign out
          </button>
        </div>
      </nav>
      <div class="main">
        <div class="topbar">
          <LiveIndicator />
        </div>
        {!can(session.role, 'read') && route.section !== 'models' ? (
          <div class="content">
            <div class="notice">
              This token has the <strong>{session.role}</strong> role, which may only run inference
              and read models. Open <a href={href('models')}>Models</a>, or sign in with a viewer,
              operator, publisher or admin token to see the fleet.
            </div>
          </div>
        ) : (
          <div class="content">
            <Page section={route.section} item={route.item} params={route.params} />
          </div>
        )}
      </div>
    </div>
  );
}

function Page(props: { section: Section; item?: string; params: URLSearchParams }) {
  switch (props.section) {
    case 'overview':
      return <Overview />;
    case 'models':
      return <Models name={props.item} />;
    case 'rollouts':
      return <Rollouts id={props.item} params={props.params} />;
    case 'devices':
      return <Devices id={props.item} params={props.params} />;
    case 'placement':
      return <Placement params={props.params} />;
  }
}
