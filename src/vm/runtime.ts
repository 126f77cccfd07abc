/**
 * What a VM worker runs: a guest runtime. The default runtime (machine-runtime.ts) adapts the machine in
 * src/machine; the indirection keeps the worker independent of the board and lets the worker be exercised with
 * any module that exports `createRuntime`.
 */
import type { PreopenedFiles } from './preopened-files.js';
import type { NicRateLimit, VmConfig } from './config.js';
import type { RuntimeCounters, StateFileInfo } from './protocol.js';
import type { NicLink } from './nic-link.js';
import type { ExecRequest, ExecResult } from './agent-client.js';

export interface RuntimeHooks {
  /** Guest console output (UART). */
  console(bytes: Uint8Array): void;
  /** The guest powered off. */
  poweroff(): void;
  /** The guest reset itself and the runtime has already booted it again (same disks). */
  rebooted(): void;
  /** The machine cannot continue. */
  fault(message: string): void;
  /** A vCPU thread of this VM started (harts on threads of their own), with its Linux thread id. */
  vcpuThread?(hartId: number, tid: number): void;
}

export interface GuestRuntime {
  /** Starts executing; returns once the guest runs (execution continues in the background of this thread). */
  start(): Promise<void> | void;
  pause(): Promise<void> | void;
  resume(): Promise<void> | void;
  /** Stops executing and releases resources (open disks are flushed and closed). */
  stop(): Promise<void> | void;
  consoleInput(bytes: Uint8Array): void;
  /** Sends one line to the guest agent on virtio-console; false when this VM has no agent channel. */
  agentSend(line: string): boolean;
  /**
   * Runs a command in the guest through its agent. Rejects with an AgentError (agent-client.ts) whose `failure`
   * says why; a runtime without an agent channel rejects with failure 'no-agent'.
   */
  agentExec?(req: ExecRequest): Promise<ExecResult>;
  counters(): RuntimeCounters;
  setBalloonTarget?(bytes: number): void;
  /** Installs a run-loop pacer (a CPU cap enforced from inside); runtimes without one cannot be capped that way. */
  setPacer?(pacer: (() => number) | null): void;
  setNicRate?(nic: number, rx: NicRateLimit | null, tx: NicRateLimit | null): void;
  /** Harts the next boot (a guest reboot) brings up; undefined = all. */
  setVcpusOnline?(count: number | undefined): void;
  /** Starts from a machine state file (src/machine/snapshot) instead of booting. */
  /**
   * `held`: load the state but do not run the guest until launchHeld() (a VM process prepares a restore while its
   * daemon connects, and the guest starts when the daemon asks).
   */
  restore?(path: string, opts: { lazyRam: boolean; held?: boolean }): Promise<StateFileInfo>;
  /** Runs the guest a held restore loaded. */
  launchHeld?(): void;
  /** Writes the machine state to `path` (atomically); the guest must be paused. Disks are flushed first. */
  saveState?(path: string): Promise<StateFileInfo>;
  /** Stops the guest and closes its disks, keeping the runtime for a following restore() (snapshot revert). */
  releaseGuest?(): Promise<void>;
  /** Paused guests only: 'detach' closes disk i's image, 'attach' opens paths[i] for it (null: unchanged). */
  switchDisks?(paths: (string | null)[], phase: 'detach' | 'attach'): Promise<void>;
}

/** Host resources handed to a runtime beyond its config; they outlive a runtime rebuilt by a guest reboot. */
export interface RuntimeResources {
  /** One per config NIC, in order. */
  nicLinks: NicLink[];
  /** Files opened before a VM process dropped its privileges (process mode as root); the machine runtime uses them. */
  preopened?: PreopenedFiles;
}

export type CreateRuntime = (config: VmConfig, hooks: RuntimeHooks, resources?: RuntimeResources) => Promise<GuestRuntime>;

export function zeroCounters(): RuntimeCounters {
  return {
    instret: 0,
    vcpusOnline: 0,
    residentBytes: 0,
    guestRamBytes: 0,
    decodeCacheBytes: 0,
    workerHeapBytes: 0,
    memoryBytes: 0,
    balloonBytes: 0,
    guestStatsUpdates: 0,
    guestTotalBytes: null,
    guestFreeBytes: null,
    guestAvailableBytes: null,
    guestCachesBytes: null,
    guestMajorFaults: null,
    guestMinorFaults: null,
    guestSwapInBytes: null,
    guestSwapOutBytes: null,
    guestOomKills: null,
    balloonTargetBytes: 0,
    balloonDeflateOnOom: false,
    diskReadBytes: 0,
    diskWriteBytes: 0,
    diskReadOps: 0,
    diskWriteOps: 0,
    netRxBytes: 0,
    netTxBytes: 0,
    netRxPackets: 0,
    netTxPackets: 0,
    nics: [],
  };
}
