/**
 * The engine interface (design.md §6): how the host layer drives a VM without knowing what runs it.
 * The built-in engine (src/vm/worker-engine.ts) runs each VM in its own worker_thread; a later engine may
 * drive qemu-system/KVM behind the same interface.
 */
import type { VmConfig } from '../vm/config.js';
import type { RuntimeCounters, StateFileInfo } from '../vm/protocol.js';
import { zeroCounters } from '../vm/runtime.js';

/**
 * Live figures of one VM: the worker's raw counters (totals since the VM (re)started) plus the rates the host
 * computes from successive samples.
 */
export interface VmStats extends RuntimeCounters {
  /** Share of one host core the VM's thread was busy over the last sample window, 0..100. */
  cpuPercent: number;
  /** Instructions per second over the last sample window. */
  instructionsPerSecond: number;
  /** Seconds since the VM started. */
  uptimeSeconds: number;
}

export function emptyStats(): VmStats {
  return { ...zeroCounters(), cpuPercent: 0, instructionsPerSecond: 0, uptimeSeconds: 0 };
}

/** Why an engine VM ended on its own (not because the host stopped it). */
export type VmExit =
  | { kind: 'poweroff' } // the guest powered off (sifive,test, SBI SRST shutdown)
  | { kind: 'crash'; message: string }; // machine fault or worker death

/** What an engine reports back to the host. */
export interface EngineEvents {
  /** Bytes the guest wrote to its console (UART). */
  console(bytes: Uint8Array): void;
  /** The guest asked for a reset; the engine has already restarted it in place. */
  guestReboot(): void;
  exit(exit: VmExit): void;
}

export interface EngineVm {
  /** Boots the VM. Resolves when the guest is executing. */
  start(): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Forced stop: ends execution at once and releases every host resource. Idempotent. */
  stop(): Promise<void>;
  /** Asks the guest to power off (through the guest agent); resolves once asked, not once off. */
  requestShutdown(): Promise<void>;
  /** Resets the machine and boots again. */
  reboot(): Promise<void>;
  stats(): Promise<VmStats>;
  /** Bytes typed by a console viewer, for the guest's console. */
  consoleInput(bytes: Uint8Array): void;
  setBalloonTarget(bytes: number): Promise<void>;
  /** Instead of start(): runs the VM from a machine state file (engines with snapshots only). */
  restore?(path: string, opts: { lazyRam: boolean }): Promise<StateFileInfo>;
  /** Writes the paused VM's machine state to `path` atomically, after flushing its disks. */
  saveState?(path: string): Promise<StateFileInfo>;
  /** Paused VMs only: 'detach' closes disk i's image cleanly, 'attach' opens paths[i] for it (null: unchanged). */
  switchDisks?(paths: (string | null)[], phase: 'detach' | 'attach'): Promise<void>;
  /** Stops the guest and closes its disks but keeps the engine's VM (thread) for restoreInPlace. */
  releaseGuest?(): Promise<void>;
  /** After releaseGuest: runs the machine state at `path` in the same VM (a warm snapshot revert). */
  restoreInPlace?(path: string, opts: { lazyRam: boolean }): Promise<StateFileInfo>;
  /** Sends one line to the guest agent (e.g. a clone's new identity); rejects when there is no agent channel. */
  sendAgentRequest?(line: string): Promise<void>;
}

export interface Engine {
  readonly name: string;
  create(config: VmConfig, events: EngineEvents): EngineVm;
}
