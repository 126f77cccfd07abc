/**
 * Live host and VM state for every page: one source, many subscribers. Today it polls GET /host and
 * GET /vms?stats=true every second while someone listens and the tab is visible. When the daemon grows an event
 * stream (GET /events), only this module changes: pages see the same `Snapshot`s either way.
 */
import { api } from './api.js';
import type { HostInfo, VmView } from './types.js';

export interface Snapshot {
  host: HostInfo;
  vms: VmView[];
  /** Client clock (ms) when it was taken. */
  at: number;
}

export type Listener = (s: Snapshot) => void;
export type ErrorListener = (err: Error) => void;

export const POLL_MS = 1000;
const listeners = new Set<Listener>();
const errorListeners = new Set<ErrorListener>();
let latest: Snapshot | undefined;
let timer: ReturnType<typeof setTimeout> | undefined;
let inFlight = false;
let again = false;

async function poll(): Promise<void> {
  timer = undefined;
  if (inFlight) {
    again = true;
    return;
  }
  inFlight = true;
  try {
    const [host, list] = await Promise.all([api<HostInfo>('GET', '/host'), api<{ vms: VmView[] }>('GET', '/vms?stats=true')]);
    latest = { host, vms: list.vms, at: Date.now() };
    for (const l of listeners) l(latest);
  } catch (err) {
    for (const l of errorListeners) l(err as Error);
  } finally {
    inFlight = false;
    schedule(again ? 0 : POLL_MS);
    again = false;
  }
}

function schedule(ms: number): void {
  if (timer !== undefined || listeners.size === 0 || document.hidden) return;
  timer = setTimeout(() => void poll(), ms);
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden) refreshNow();
});

/** Listen for snapshots; the latest one (if any) is delivered at once. Returns the unsubscribe function. */
export function subscribe(fn: Listener, onError?: ErrorListener): () => void {
  listeners.add(fn);
  if (onError) errorListeners.add(onError);
  if (latest) fn(latest);
  schedule(0);
  return () => {
    listeners.delete(fn);
    if (onError) errorListeners.delete(onError);
    if (listeners.size === 0 && timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
  };
}

/** Poll now (after an action), instead of waiting for the next tick. */
export function refreshNow(): void {
  if (timer !== undefined) clearTimeout(timer);
  timer = undefined;
  schedule(0);
}
