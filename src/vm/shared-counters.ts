/**
 * A VM's counters in shared memory: the worker writes them every few milliseconds and the host reads them
 * without a message round trip, so a VM thread starved by its weight or cap (or a loaded host) never makes
 * the API wait. A thread that is not scheduled does not retire instructions either, so the figures are as
 * current as the guest is. Slot 0 counts writes (0 = nothing written yet).
 */
import { MAX_NICS } from './config.js';
import type { NicCounters, RuntimeCounters } from './protocol.js';
import { zeroCounters } from './runtime.js';

const ZERO = zeroCounters();
/** Every field but the per-NIC list; null guest figures are stored as NaN, flags as 1/0. */
const KEYS = (Object.keys(ZERO) as (keyof RuntimeCounters)[]).filter((k) => k !== 'nics');
const NIC_KEYS = ['rxBytes', 'rxPackets', 'rxDropped', 'txBytes', 'txPackets', 'txDropped'] as const;
/** Layout: [writes, ...KEYS, nic count, MAX_NICS × NIC_KEYS]. */
const NIC_BASE = KEYS.length + 2;

export function createCountersBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer((NIC_BASE + MAX_NICS * NIC_KEYS.length) * 8);
}

export function writeCounters(view: Float64Array, c: RuntimeCounters): void {
  // Guest figures not reported yet are null (stored as NaN); flags are stored as 1/0.
  for (let i = 0; i < KEYS.length; i++) {
    const v = c[KEYS[i]!];
    view[i + 1] = v === null ? Number.NaN : typeof v === 'boolean' ? (v ? 1 : 0) : v;
  }
  const nics = c.nics.slice(0, MAX_NICS);
  view[NIC_BASE - 1] = nics.length;
  for (const [n, nic] of nics.entries())
    for (let k = 0; k < NIC_KEYS.length; k++) view[NIC_BASE + n * NIC_KEYS.length + k] = nic[NIC_KEYS[k]!];
  view[0]!++;
}

/** The last counters written, or undefined before the first write; `macs` names the NICs in config order. */
export function readCounters(view: Float64Array, macs: readonly string[] = []): RuntimeCounters | undefined {
  if (view[0] === 0) return undefined;
  const c = zeroCounters() as unknown as Record<string, number | boolean | null>;
  for (let i = 0; i < KEYS.length; i++) {
    const key = KEYS[i]!;
    const x = view[i + 1]!;
    const zero = ZERO[key];
    c[key] = zero === null ? (Number.isNaN(x) ? null : x) : typeof zero === 'boolean' ? x !== 0 : x;
  }
  const count = Math.min(view[NIC_BASE - 1]!, MAX_NICS);
  for (let n = 0; n < count; n++) {
    const nic = { mac: macs[n] ?? '' } as NicCounters;
    for (let k = 0; k < NIC_KEYS.length; k++) nic[NIC_KEYS[k]!] = view[NIC_BASE + n * NIC_KEYS.length + k]!;
    (c.nics as unknown as NicCounters[]).push(nic);
  }
  return c as unknown as RuntimeCounters;
}

/** How often the worker publishes its counters. */
export const PUBLISH_INTERVAL_MS = 20;
