/**
 * Live host and VM state for every page: one source, many subscribers. It polls GET /host and
 * GET /vms?stats=true every second while someone listens and the tab is visible (the charts want a sample a
 * second anyway). Where the daemon has an event stream (GET /events, Server-Sent Events), every state, create,
 * delete or settings event also triggers a poll at once, so a change shows without waiting for the tick; where it
 * has none (the stream answers 404), EventSource gives up for good and polling alone carries on. Pages only see
 * `Snapshot`s, whichever way they came.
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

/** The event types that change what a snapshot shows (src/host/events.ts on daemons that have the stream). */
const STREAM_EVENTS = ['vm-state', 'vm-created', 'vm-deleted', 'settings'];
let stream: EventSource | undefined;
let streamUnavailable = false;

function openStream(): void {
  if (stream || streamUnavailable || typeof EventSource === 'undefined') return;
  const es = new EventSource('/events');
  stream = es;
  for (const type of STREAM_EVENTS) es.addEventListener(type, () => refreshNow());
  es.onerror = () => {
    // CLOSED: the daemon answered something other than an event stream (no such route): do not retry.
    // CONNECTING: the browser reconnects by itself (daemon restart, network).
    if (es.readyState === EventSource.CLOSED) {
      streamUnavailable = true;
      if (stream === es) stream = undefined;
    }
  };
}

function closeStream(): void {
  stream?.close();
  stream = undefined;
}

/** How snapshots arrive now: 'events+poll' with the daemon's event stream, 'poll' without. */
export function liveMode(): 'events+poll' | 'poll' {
  return stream && stream.readyState === EventSource.OPEN ? 'events+poll' : 'poll';
}

/** Listen for snapshots; the latest one (if any) is delivered at once. Returns the unsubscribe function. */
export function subscribe(fn: Listener, onError?: ErrorListener): () => void {
  listeners.add(fn);
  if (onError) errorListeners.add(onError);
  if (latest) fn(latest);
  openStream();
  schedule(0);
  return () => {
    listeners.delete(fn);
    if (onError) errorListeners.delete(onError);
    if (listeners.size === 0) {
      closeStream();
      if (timer !== undefined) clearTimeout(timer);
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
