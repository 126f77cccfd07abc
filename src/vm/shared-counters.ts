/**
 * A VM's counters in shared memory: the worker writes them every few milliseconds and the host reads them
 * without a message round trip, so a VM thread starved by its weight or cap (or a loaded host) never makes
 * the API wait. A thread that is not scheduled does not retire instructions either, so the figures are as
 * current as the guest is. Slot 0 counts writes (0 = nothing written yet).
 */
import { MAX_NICS } from './config.js';
import type { NicCounters, RuntimeCounters } from './protocol.js';
import { zeroCounters } from './runtime.js';

type NumericKey = { [K in keyof RuntimeCounters]: RuntimeCounters[K] extends number ? K : never }[keyof RuntimeCounters];
const KEYS = (Object.keys(zeroCounters()) as (keyof RuntimeCounters)[]).filter(
  (k): k is NumericKey => typeof zeroCounters()[k] === 'number',
);
const NIC_KEYS = ['rxBytes', 'rxPackets', 'rxDropped', 'txBytes', 'txPackets', 'txDropped'] as const;
/** Layout: [writes, ...KEYS, nic count, MAX_NICS × NIC_KEYS]. */
const NIC_BASE = KEYS.length + 2;

export function createCountersBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer((NIC_BASE + MAX_NICS * NIC_KEYS.length) * 8);
}

export function writeCounters(view: Float64Array, c: RuntimeCounters): void {
  for (let i = 0; i < KEYS.length; i++) view[i + 1] = c[KEYS[i]!];
  const nics = c.nics.slice(0, MAX_NICS);
  view[NIC_BASE - 1] = nics.length;
  for (const [n, nic] of nics.entries())
    for (let k = 0; k < NIC_KEYS.length; k++) view[NIC_BASE + n * NIC_KEYS.length + k] = nic[NIC_KEYS[k]!];
  view[0]!++;
}

/** The last counters written, or undefined before the first write; `macs` names the NICs in config order. */
export function readCounters(view: Float64Array, macs: readonly string[] = []): RuntimeCounters | undefined {
  if (view[0] === 0) return undefined;
  const c = zeroCounters();
  for (let i = 0; i < KEYS.length; i++) c[KEYS[i]!] = view[i + 1]!;
  const count = Math.min(view[NIC_BASE - 1]!, MAX_NICS);
  for (let n = 0; n < count; n++) {
    const nic = { mac: macs[n] ?? '' } as NicCounters;
    for (let k = 0; k < NIC_KEYS.length; k++) nic[NIC_KEYS[k]!] = view[NIC_BASE + n * NIC_KEYS.length + k]!;
    c.nics.push(nic);
  }
  return c;
}

/** How often the worker publishes its counters. */
export const PUBLISH_INTERVAL_MS = 20;
