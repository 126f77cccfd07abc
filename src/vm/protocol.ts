/**
 * The typed messages between the host and a VM's worker (design.md §5). Control travels on the worker's own
 * channel as requests with ids and replies; console bytes travel on a dedicated MessagePort so a chatty guest
 * never delays control messages behind its output.
 */
import type { MessagePort } from 'node:worker_threads';
import type { NicRateLimit, VmConfig } from './config.js';
import type { AgentFailure, ExecRequest, ExecResult } from './agent-client.js';

/** Host → worker requests. Every one gets exactly one `reply` with the same id. */
export type ControlRequest =
  | { id: number; type: 'start'; restore?: { path: string; lazyRam: boolean } }
  /** Writes the machine state to a file; the VM must be paused. */
  | { id: number; type: 'save-state'; path: string }
  /** Paused VMs only: 'detach' closes disk i's image cleanly, 'attach' opens paths[i] for it (null: unchanged). */
  | { id: number; type: 'switch-disks'; paths: (string | null)[]; phase: 'detach' | 'attach' }
  /** Stops the guest and closes its disks; the worker stays for a following `restore-state`. */
  | { id: number; type: 'release-guest' }
  /** After release-guest: runs the machine state at `path` in this worker. */
  | { id: number; type: 'restore-state'; path: string; lazyRam: boolean }
  /** One line for the guest agent (virtio-console). */
  | { id: number; type: 'agent'; line: string }
  | { id: number; type: 'pause' }
  | { id: number; type: 'resume' }
  | { id: number; type: 'stop' }
  /** Graceful: ask the guest agent to power off. */
  | { id: number; type: 'shutdown' }
  | { id: number; type: 'reboot' }
  | { id: number; type: 'stats' }
  | { id: number; type: 'balloon'; targetBytes: number }
  /** A CPU cap the run loop enforces itself (percent of one core; null removes it): hosts without cgroups. */
  | { id: number; type: 'cpu-cap'; percent: number | null }
  | { id: number; type: 'nic-rate'; nic: number; rx: NicRateLimit | null; tx: NicRateLimit | null }
  /**
   * Run a command through the guest agent. Handled concurrently with other requests (a long command must not
   * hold up stop or stats); the reply carries `exec` or an error with `agentFailure`.
   */
  | ({ id: number; type: 'exec' } & ExecRequest);

export type ControlType = ControlRequest['type'];

/** One NIC's counters, as its virtio-net device counts them. */
export interface NicCounters {
  mac: string;
  rxBytes: number;
  rxPackets: number;
  rxDropped: number;
  txBytes: number;
  txPackets: number;
  txDropped: number;
}

/** Raw counters a runtime reports; rates are computed on the host side. */
export interface RuntimeCounters {
  instret: number;
  /** Harts the guest has running (SBI HSM started); all of them with external firmware, which owns HSM. */
  vcpusOnline: number;
  /** Host memory the VM holds: guestRamBytes + decodeCacheBytes + workerHeapBytes. */
  residentBytes: number;
  /** Guest RAM chunks allocated on the host. */
  guestRamBytes: number;
  /** The harts' decoded-instruction pages. */
  decodeCacheBytes: number;
  /** The worker isolate's own V8 heap (committed). */
  workerHeapBytes: number;
  memoryBytes: number;
  balloonBytes: number;
  /** Guest memory statistics from virtio-balloon (null until the guest reports them, or when it does not). */
  guestStatsUpdates: number;
  guestTotalBytes: number | null;
  guestFreeBytes: number | null;
  guestAvailableBytes: number | null;
  guestCachesBytes: number | null;
  guestMajorFaults: number | null;
  guestMinorFaults: number | null;
  guestSwapInBytes: number | null;
  guestSwapOutBytes: number | null;
  /** Reported by guests from Linux 6.12 on; null from older ones. */
  guestOomKills: number | null;
  /** The balloon size the host asks for. */
  balloonTargetBytes: number;
  /** The guest accepted deflate-on-OOM (it may take its balloon back under sudden pressure). */
  balloonDeflateOnOom: boolean;
  diskReadBytes: number;
  diskWriteBytes: number;
  diskReadOps: number;
  diskWriteOps: number;
  netRxBytes: number;
  netTxBytes: number;
  netRxPackets: number;
  netTxPackets: number;
  /** Per NIC, in config order (the net* fields are their sums). */
  nics: NicCounters[];
}

/** What saving or restoring a machine state file did. */
export interface StateFileInfo {
  bytes: number;
  /** RAM chunks (2 MiB) holding data in the file. */
  ramChunks: number;
  /** Time spent in the worker (save: pause to file durable; restore: start of request to the guest running). */
  ms: number;
}

/** Worker → host messages. */
export type WorkerMessage =
  | { type: 'reply'; id: number; ok: true; counters?: RuntimeCounters; exec?: ExecResult; state?: StateFileInfo }
  | { type: 'reply'; id: number; ok: false; error: string; agentFailure?: AgentFailure; agentReason?: string }
  /** The guest powered off by itself. The worker then exits. */
  | { type: 'poweroff' }
  /** The guest reset itself and was booted again in place. */
  | { type: 'guest-reboot' }
  /** The machine hit an unrecoverable error. The worker then exits. */
  | { type: 'fault'; message: string }
  /** The Linux thread ids that run guest code (sent once at start-up, before any reply). */
  | { type: 'threads'; tids: number[] };

/** What the worker is constructed with. */
export interface WorkerInit {
  config: VmConfig;
  /** Module exporting `createRuntime` (see runtime.ts); absolute path or file URL. */
  runtimeModule: string;
  consolePort: MessagePort;
  /** One per NIC in config order: the link to its network's worker (frames in batches, src/net). */
  nicPorts?: MessagePort[];
  /** Scheduling niceness of the VM's thread (Linux), above the daemon's so the control plane wins. */
  nice?: number;
  /** Where the worker publishes its counters for the host to read without asking (shared-counters.ts). */
  counters?: SharedArrayBuffer;
}

/** Console port messages: Uint8Array chunks in both directions. */
export type ConsoleChunk = Uint8Array;
