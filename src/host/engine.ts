/**
 * The engine interface (design.md §6): how the host layer drives a VM without knowing what runs it.
 * The built-in engine (src/vm/worker-engine.ts) runs each VM in its own worker_thread; a later engine may
 * drive qemu-system/KVM behind the same interface.
 */
import type { VmConfig } from '../vm/config.js';

/** Live figures of one VM. Counters are totals since the VM (re)started; rates are computed by the host. */
export interface VmStats {
  /** Instructions retired by all harts. */
  instret: number;
  /** Share of one host core the VM's thread was busy over the last sample window, 0..100. */
  cpuPercent: number;
  /** Instructions per second over the last sample window. */
  instructionsPerSecond: number;
  /** Host bytes holding guest RAM (allocated chunks). */
  residentBytes: number;
  /** Guest RAM size in bytes. */
  memoryBytes: number;
  /** Bytes currently held by the balloon (given back by the guest). */
  balloonBytes: number;
  diskReadBytes: number;
  diskWriteBytes: number;
  diskReadOps: number;
  diskWriteOps: number;
  netRxBytes: number;
  netTxBytes: number;
  netRxPackets: number;
  netTxPackets: number;
  /** Seconds since the VM started. */
  uptimeSeconds: number;
}

export function emptyStats(): VmStats {
  return {
    instret: 0,
    cpuPercent: 0,
    instructionsPerSecond: 0,
    residentBytes: 0,
    memoryBytes: 0,
    balloonBytes: 0,
    diskReadBytes: 0,
    diskWriteBytes: 0,
    diskReadOps: 0,
    diskWriteOps: 0,
    netRxBytes: 0,
    netTxBytes: 0,
    netRxPackets: 0,
    netTxPackets: 0,
    uptimeSeconds: 0,
  };
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
}

export interface Engine {
  readonly name: string;
  create(config: VmConfig, events: EngineEvents): EngineVm;
}
