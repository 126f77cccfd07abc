/** What the host layer keeps about each VM it knows, live or not (shared by hypervisor.ts and its helpers). */
import type { ConsoleViewer } from './actions.js';
import type { ConsoleLog } from './console-log.js';
import type { EngineVm, VmStats } from './engine.js';
import type { VmNetworkLink } from './network-manager.js';
import type { VmRecord } from './registry.js';

export interface LiveVm {
  rec: VmRecord;
  vm: EngineVm | undefined;
  log: ConsoleLog;
  viewers: Set<ConsoleViewer>;
  /** Serialises user actions on this VM. */
  lock: Promise<unknown>;
  /** Woken on every state change (graceful shutdown waits on it). */
  stateWaiters: Set<() => void>;
  /** Resets the guest itself asked for since the VM was known (a graceful reboot waits for the next one). */
  guestReboots: number;
  lastStats: VmStats | null;
  /** The VM's NICs and published ports while it runs. */
  net: VmNetworkLink | undefined;
}
