// Page URLs: /ui/ (host), /ui/vm/NAME, /ui/new. Real paths, so each VM's page can be bookmarked and reloaded;
// the daemon answers every /ui/ path with the same document.
import { useEffect, useState } from 'preact/hooks';

export type Route = { page: 'host' } | { page: 'vm'; name: string } | { page: 'new' } | { page: 'missing'; path: string };

export function parseRoute(path: string): Route {
  if (path === '/' || path === '/ui' || path === '/ui/') return { page: 'host' };
  if (path === '/ui/new') return { page: 'new' };
  const m = /^\/ui\/vm\/([a-z0-9][a-z0-9-]{0,62})$/.exec(path);
  if (m) return { page: 'vm', name: m[1]! };
  return { page: 'missing', path };
}

export const vmPath = (name: string): string => `/ui/vm/${name}`;
export const HOST_PATH = '/ui/';
export const NEW_PATH = '/ui/new';

const changed = new EventTarget();

export function navigate(path: string): void {
  if (path === location.pathname) return;
  history.pushState(null, '', path);
  changed.dispatchEvent(new Event('change'));
}

window.addEventListener('popstate', () => changed.dispatchEvent(new Event('change')));

export function useRoute(): Route {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const on = (): void => setPath(location.pathname);
    changed.addEventListener('change', on);
    return () => changed.removeEventListener('change', on);
  }, []);
  return parseRoute(path);
}

/** Follows same-document links without a reload; modified clicks (new tab...) keep the browser's behaviour. */
export function onLinkClick(e: MouseEvent): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = (e.target as Element | null)?.closest?.('a');
  if (!a || a.target || a.origin !== location.origin || !a.pathname.startsWith('/ui')) return;
  e.preventDefault();
  navigate(a.pathname);
}
