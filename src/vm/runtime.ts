/**
 * What a VM worker runs: a guest runtime. The default runtime (machine-runtime.ts) adapts the machine in
 * src/machine; the indirection keeps the worker independent of the board and lets the worker be exercised with
 * any module that exports `createRuntime`.
 */
import type { VmConfig } from './config.js';
import type { RuntimeCounters } from './protocol.js';
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
}

export type CreateRuntime = (config: VmConfig, hooks: RuntimeHooks) => Promise<GuestRuntime>;

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
  };
}
