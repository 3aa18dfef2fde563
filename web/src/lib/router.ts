// Hash routes (`#/devices/3f2a...`): the server serves one page at `/`, so every dashboard
// address is a fragment and reloads land on the same view.

import { useEffect, useState } from 'preact/hooks';

export type Section = 'overview' | 'models' | 'rollouts' | 'devices' | 'placement';
export const SECTIONS: Section[] = ['overview', 'models', 'rollouts', 'devices', 'placement'];

export interface Route {
  section: Section;
  /** The item addressed within the section (a model name, a rollout or device id). */
  item?: string;
  /** Query parameters after `?` in the fragment (filters). */
  params: URLSearchParams;
}

export function parseHash(hash: string): Route {
  const [path = '', query = ''] = hash.replace(/^#\/?/, '').split('?', 2);
  const [first, ...rest] = path.split('/').filter(Boolean);
  const section = SECTIONS.includes(first as Section) ? (first as Section) : 'overview';
  const item = rest.length ? decodeURIComponent(rest.join('/')) : undefined;
  return { section, item, params: new URLSearchParams(query) };
}

export function href(section: Section, item?: string, params?: Record<string, string>): string {
  let h = `#/${section}`;
  if (item) h += `/${encodeURIComponent(item)}`;
  const qs = new URLSearchParams(
    Object.entries(params ?? {}).filter(([, v]) => v !== ''),
  ).toString();
  return qs ? `${h}?${qs}` : h;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseHash(location.hash));
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

/** Changes the fragment without adding a history entry (filters as you type). */
export function replaceRoute(h: string) {
  history.replaceState(null, '', h);
  dispatchEvent(new HashChangeEvent('hashchange'));
}
