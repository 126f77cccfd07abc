/**
 * A VM's counters in shared memory: the worker writes them every few milliseconds and the host reads them
 * without a message round trip, so a VM thread starved by its weight or cap (or a loaded host) never makes
 * the API wait. A thread that is not scheduled does not retire instructions either, so the figures are as
 * current as the guest is. Slot 0 counts writes (0 = nothing written yet).
 */
import type { RuntimeCounters } from './protocol.js';
import { zeroCounters } from './runtime.js';

const ZERO = zeroCounters();
const KEYS = Object.keys(ZERO) as (keyof RuntimeCounters)[];

export function createCountersBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer((KEYS.length + 1) * 8);
}

export function writeCounters(view: Float64Array, c: RuntimeCounters): void {
  // Guest figures not reported yet are null (stored as NaN); flags are stored as 1/0.
  for (let i = 0; i < KEYS.length; i++) {
    const v = c[KEYS[i]!];
    view[i + 1] = v === null ? Number.NaN : typeof v === 'boolean' ? (v ? 1 : 0) : v;
  }
  view[0]!++;
}

/** The last counters written, or undefined before the first write. */
export function readCounters(view: Float64Array): RuntimeCounters | undefined {
  if (view[0] === 0) return undefined;
  const c = zeroCounters() as unknown as Record<string, number | boolean | null>;
  for (let i = 0; i < KEYS.length; i++) {
    const key = KEYS[i]!;
    const x = view[i + 1]!;
    const zero = ZERO[key];
    c[key] = zero === null ? (Number.isNaN(x) ? null : x) : typeof zero === 'boolean' ? x !== 0 : x;
  }
  return c as unknown as RuntimeCounters;
}

/** How often the worker publishes its counters. */
export const PUBLISH_INTERVAL_MS = 20;
