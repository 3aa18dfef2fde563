// The signed-in operator: their API token (kept for this browser tab only) and what
// GET /api/v1/whoami said about it.

import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import { Client, type Schemas } from '../api/client';
import type { Role } from './roles';

const STORAGE_KEY = 'flotilla.token';

export interface Session {
  client: Client;
  who: Schemas['WhoAmI'];
  role: Role;
  signOut: () => void;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error('useSession outside a signed-in page');
  return session;
}

/** The token saved in this tab, if any. Session storage: closing the tab signs out. */
export function savedToken(): string | null {
  return sessionStorage.getItem(STORAGE_KEY);
}

export function saveToken(token: string | null) {
  if (token) sessionStorage.setItem(STORAGE_KEY, token);
  else sessionStorage.removeItem(STORAGE_KEY);
}

/** Checks a token with the server; throws ApiError when it is refused. */
export async function signIn(token: string): Promise<{ client: Client; who: Schemas['WhoAmI'] }> {
  const client = new Client(token);
  const who = await client.get('/api/v1/whoami');
  return { client, who };
}
