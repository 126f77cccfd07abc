/**
 * The engine interface (design.md §6): how the host layer drives a VM without knowing what runs it.
 * The built-in engine (src/vm/worker-engine.ts) runs each VM in its own worker_thread; a later engine may
 * drive qemu-system/KVM behind the same interface.
 */
import type { MessagePort } from 'node:worker_threads';
import type { NicRateLimit, VmConfig } from '../vm/config.js';
import type { RuntimeCounters, StateFileInfo } from '../vm/protocol.js';
import { zeroCounters } from '../vm/runtime.js';
import type { ExecRequest, ExecResult } from '../vm/agent-client.js';
import type { WarmPoolStats } from './worker-pool.js';

/**
 * Live figures of one VM: the worker's raw counters (totals since the VM (re)started) plus the rates the host
 * computes from successive samples.
 */
export interface VmStats extends RuntimeCounters {
  /**
   * Share of one host core the VM's threads really ran over the last sample window (kernel schedstat; 150 = one
   * and a half cores). Engines that cannot see thread times report wall-clock busy time instead.
   */
  cpuPercent: number;
  /** Share of the window the VM's threads waited runnable for a host core (steal, as the guest would see it). */
  stealPercent: number;
  /** CPU time the VM's threads got since the VM started. */
  cpuTimeSeconds: number;
  /** Time they waited runnable since the VM started. */
  stealSeconds: number;
  /** Instructions per second over the last sample window. */
  instructionsPerSecond: number;
  /** Seconds since the VM started. */
  uptimeSeconds: number;
}

export function emptyStats(): VmStats {
  return {
    ...zeroCounters(),
    cpuPercent: 0,
    stealPercent: 0,
    cpuTimeSeconds: 0,
    stealSeconds: 0,
    instructionsPerSecond: 0,
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
  /** The Linux thread ids (of this process) that run the VM's guest code, as soon as they are known. */
  threads?(tids: number[]): void;
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
  /**
   * Current figures. `waitMs` bounds how long to wait for the VM's own counters (a VM thread held back by its
   * cap or a busy core answers late); past it the last counters are used, with CPU figures still fresh.
   */
  stats(waitMs?: number): Promise<VmStats>;
  /** Bytes typed by a console viewer, for the guest's console. */
  consoleInput(bytes: Uint8Array): void;
  setBalloonTarget(bytes: number): Promise<void>;
  /** Thread ids running guest code (empty until known, or where threads are not visible). */
  threadIds(): number[];
  /** A cap the VM's run loop enforces itself (no cgroup available); null removes it. */
  setRunLoopCap(percent: number | null): Promise<void>;
  /** Changes one NIC's limits while the VM runs (null: unlimited in that direction). */
  setNicRate(nic: number, rx: NicRateLimit | null, tx: NicRateLimit | null): Promise<void>;
  /** Harts every later boot of this VM (guest reboots included) brings up; null: all. */
  setVcpusOnline(count: number | null): Promise<void>;
  /**
   * Runs a command in the guest through its agent. Rejects with an AgentError (src/vm/agent-client.ts) whose
   * `failure` says why (no agent channel, timeout, the VM ended, the agent refused).
   */
  exec(req: ExecRequest): Promise<ExecResult>;
  /** Instead of start(): runs the VM from a machine state file (engines with snapshots only). */
  restore?(path: string, opts: { lazyRam: boolean }): Promise<StateFileInfo>;
  /** Writes the paused VM's machine state to `path` atomically, after flushing its disks. */
  saveState?(path: string): Promise<StateFileInfo>;
  /** Paused VMs only: 'detach' closes disk i's image cleanly, 'attach' opens paths[i] for it (null: unchanged). */
  switchDisks?(paths: (string | null)[], phase: 'detach' | 'attach'): Promise<void>;
  /**
   * Stops the guest and lets go of its disks (closing them may finish afterwards: the caller replaces the writable
   * images before restoreInPlace opens the paths again) but keeps the engine's VM (thread) for restoreInPlace.
   */
  releaseGuest?(): Promise<void>;
  /** After releaseGuest: runs the machine state at `path` in the same VM (a warm snapshot revert). */
  restoreInPlace?(path: string, opts: { lazyRam: boolean }): Promise<StateFileInfo>;
  /** Sends one line to the guest agent (e.g. a clone's new identity); rejects when there is no agent channel. */
  sendAgentRequest?(line: string): Promise<void>;
  /**
   * Engines whose VMs outlive the daemon (process mode): lets go of the VM, which keeps running for the next
   * daemon to reattach. Resolves once the host's side of the channel is closed.
   */
  detach?(): Promise<void>;
}

/** Host resources a VM is given at creation, beyond its config. */
export interface EngineResources {
  /** One per NIC in config order: the VM side of its link to the network (see src/host/network-manager.ts). */
  nicPorts?: MessagePort[];
  /** The VM's folder (process mode keeps its socket, runtime file and log there). */
  vmDir?: string;
}

/** What an engine whose VMs outlive the daemon finds of a VM when the daemon starts. */
export type LeftBehind =
  | { kind: 'alive'; pid: number }
  /** The VM ended while no daemon watched: the state it should be recorded in, and why. */
  | { kind: 'gone'; state: 'stopped' | 'crashed'; reason: string };

/** A VM taken over from an earlier daemon, and what it was doing. */
export interface ReattachedVm {
  vm: EngineVm;
  /** False when the earlier daemon died before the guest started (or after it was released for a revert). */
  started: boolean;
  paused: boolean;
  /** A snapshot operation had closed its disks when the earlier daemon died. */
  disksDetached: boolean;
}

export interface Engine {
  readonly name: string;
  create(config: VmConfig, events: EngineEvents, resources?: EngineResources): EngineVm;
  /** Engines whose VMs outlive the daemon: what is left of the VM whose folder is `vmDir` (undefined: nothing). */
  leftBehind?(vmDir: string): LeftBehind | undefined;
  /** Takes over the VM left running in `resources.vmDir` (leftBehind said 'alive'); rejects when it cannot. */
  reattach?(config: VmConfig, events: EngineEvents, resources: EngineResources): Promise<ReattachedVm>;
  /** Releases what the engine holds besides its VMs (warm workers); called once the host has stopped every VM. */
  close?(): Promise<void>;
  /** The engine's warm pool (VM workers or VM processes started ahead of need); undefined when it keeps none. */
  poolStats?(): WarmPoolStats | undefined;
}
