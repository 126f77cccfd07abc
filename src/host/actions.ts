/**
 * The typed requests the API (or any other front end) sends to the host layer, in the style of Firecracker's
 * rpc_interface: the front end never touches a VM or worker, it only sends one of these and gets a result.
 */
import type { VmState } from './lifecycle.js';
import type { ImageView, ImportSpec } from './image-store.js';
import type { FirstBootInput } from './first-boot/config.js';
import type { VmStats } from './engine.js';
import type { WarmPoolStats } from './worker-pool.js';
import type { NicRateLimit, VmConfig } from '../vm/config.js';
import type { NetworkMode, NetworkRecord } from './networks.js';
import type { NetworkLease } from './network-manager.js';
import type { CpuPatch } from './cpu/settings.js';
import type { CpuView } from './cpu/manager.js';
import type { HostEvent } from './events.js';
import type { HostSample, VmSample } from './monitor/samples.js';
import type { ExecRequest, ExecResult } from '../vm/agent-client.js';
import type { MemoryPatch } from './memory/settings.js';
import type { HostMemoryView, MemoryView } from './memory/manager.js';

export interface DiskSpec {
  /** Virtual size in MiB; an overlay defaults to its backing image's size. */
  sizeMiB?: number;
  format: 'raw' | 'qcow2';
  /** Name of an image whose root filesystem backs this disk (qcow2 overlay). */
  backing?: string;
}

export interface NicSpec {
  network: string;
  /** Generated (52:54:00:xx:xx:xx, unique on the host) when absent. */
  mac?: string;
  rx?: NicRateLimit;
  tx?: NicRateLimit;
  /** virtio-net checksum/TSO offloads (default true); false for debugging. */
  offload?: boolean;
}

export interface PublishSpec {
  proto: 'tcp' | 'udp';
  /** Default 127.0.0.1: a published port is reachable from this host only unless asked otherwise. */
  hostIp?: string;
  hostPort: number;
  guestPort: number;
  /** Index of the NIC whose network forwards the port (default 0). */
  nic?: number;
}

export interface CreateVmSpec {
  name: string;
  vcpus: number;
  memoryMiB: number;
  /** A named image (kernel, initrd, root filesystem). Defaults to 'default' when no kernel is given. */
  image?: string;
  kernel?: string;
  initrd?: string;
  /** 'auto' (default): the kernel must be a RISC-V Linux Image or riscv64 ELF; 'raw': load its bytes as they are. */
  kernelFormat?: 'auto' | 'raw';
  cmdline?: string;
  /** 'builtin' (SBI in the hypervisor), 'none' (bare-metal kernel in M-mode), or an absolute firmware path. */
  firmware: string;
  /** Extra disks after the image's root disk. */
  disks: DiskSpec[];
  /** Give an image-based VM a qcow2 overlay of the image's root filesystem as its first disk. */
  rootDisk: boolean;
  autostart: boolean;
  rng: boolean;
  balloon: boolean;
  virtioConsole: boolean;
  /** CPU weight, cap, cpuset and burst (defaults: weight 100, no cap, every core, no burst). */
  cpu?: CpuPatch;
  /** NICs; absent = one NIC on the 'default' network, [] = no network. */
  nics?: NicSpec[];
  publish?: PublishSpec[];
  /** Memory floor and weight (defaults: the maximum, i.e. no ballooning; weight 100). */
  memory?: MemoryPatch;
  /** First-boot configuration: a seed disk the image's first-boot units apply (src/host/first-boot). */
  firstBoot?: FirstBootInput;
}

/** A live change of one NIC's limits: null removes a direction's limit, absent leaves it. */
export interface NicRatePatch {
  nic: number;
  rx?: NicRateLimit | null;
  tx?: NicRateLimit | null;
}

export interface UpdateVmSpec {
  vcpus?: number;
  memoryMiB?: number;
  cmdline?: string;
  autostart?: boolean;
  /** Running VMs only: how much memory the balloon should take back (not persisted). */
  balloonTargetMiB?: number;
  /** CPU settings; they apply at once to a running VM. */
  cpu?: CpuPatch;
  /** NIC limits, applied live to a running VM and kept in its record. */
  nicRates?: NicRatePatch[];
  /** Memory floor and weight; targetMiB pins a running VM's size (null hands it back to the policy). */
  memory?: MemoryPatch & { targetMiB?: number | null };
}

export const VM_ACTIONS = ['start', 'shutdown', 'stop', 'pause', 'resume', 'reboot'] as const;
export type VmAction = (typeof VM_ACTIONS)[number];

export type HostAction =
  | { type: 'list' }
  | { type: 'get'; name: string; withStats: boolean }
  | { type: 'create'; spec: CreateVmSpec }
  | { type: 'update'; name: string; patch: UpdateVmSpec }
  | { type: 'delete'; name: string; force: boolean }
  /** `graceful` (reboot only): through the guest agent, reset after timeoutMs if the guest has not rebooted. */
  | { type: 'action'; name: string; action: VmAction; timeoutMs?: number; graceful?: boolean }
  /** Runs a command in a running VM through its guest agent. */
  | { type: 'exec'; name: string; request: ExecRequest }
  | { type: 'console-log'; name: string }
  | { type: 'console-attach'; name: string; viewer: ConsoleViewer }
  | { type: 'host-info' }
  | { type: 'image-list' }
  | { type: 'image-get'; name: string }
  | { type: 'image-import'; spec: ImportSpec }
  | { type: 'image-delete'; name: string }
  | { type: 'stats-all' }
  | { type: 'network-list' }
  | { type: 'network-get'; name: string }
  | { type: 'network-create'; spec: { name: string; mode: NetworkMode; subnet?: string; dnsHosts?: Record<string, string> } }
  | { type: 'network-delete'; name: string }
  | { type: 'vm-history'; name: string; seconds?: number }
  | { type: 'host-history'; seconds?: number }
  /** Recent events after `afterId`, and (with a listener) every later one until unsubscribe is called. */
  | { type: 'events'; afterId?: number; listener?: (e: HostEvent) => void }
  /** Writes the VM's machine state and disks into a new directory `path`; `stop` ends the VM afterwards. */
  | { type: 'save'; name: string; path: string; stop: boolean }
  /** Creates a VM from a save directory and runs it from the saved state. */
  | { type: 'restore'; path: string; newName?: string }
  /** Snapshot of the disks (and, for a running or paused VM, its machine state unless diskOnly). */
  | { type: 'snapshot-create'; name: string; snapshot?: string; diskOnly: boolean }
  | { type: 'snapshot-list'; name: string }
  /** Reverts the disks to the snapshot; a snapshot with machine state resumes the VM where it was. */
  | { type: 'snapshot-restore'; name: string; snapshot: string }
  | { type: 'snapshot-delete'; name: string; snapshot: string }
  /** A linked clone: new VM whose disks are thin overlays over the source's disks frozen now. */
  | { type: 'clone'; source: string; target: string; running: boolean };

export interface SnapshotView {
  name: string;
  parent: string | null;
  createdAt: string;
  vmState: 'running' | 'paused' | 'stopped';
  /** Holds memory and device state (restoring it resumes the guest). */
  hasState: boolean;
  stateBytes: number;
  /** The snapshot the VM's disks derive from now. */
  current: boolean;
}

export interface SnapshotOutcome {
  vm: VmView;
  snapshot: SnapshotView;
  /** Host time for the whole action. */
  totalMs: number;
  /** Worker time: pause to state durable (create), request to guest running (restore). */
  workerMs?: number;
  /** Restore: where the time went, in ms by step (host steps, then `worker.*`); for benchmarks. */
  phases?: Record<string, number>;
}

/** What save and restore report (timings measured in the VM worker and in the host). */
export interface StateOutcome {
  vm: VmView;
  path: string;
  stateBytes: number;
  ramChunks: number;
  /** Worker time: pause to state file durable (save), or request to guest running (restore). */
  workerMs: number;
  /** Host time for the whole action. */
  totalMs: number;
}

/** A console viewer: receives guest output; its input goes through ConsoleSession.write. */
export interface ConsoleViewer {
  output(bytes: Uint8Array): void;
}

export interface ConsoleSession {
  write(bytes: Uint8Array): void;
  close(): void;
}

export interface VmView {
  name: string;
  uuid: string;
  state: VmState;
  stateReason?: string;
  autostart: boolean;
  image?: string;
  bootMarker?: string;
  createdAt: string;
  updatedAt: string;
  config: VmConfig;
  /** Each NIC with the address its network leased to it (when it has one). */
  addresses: { nic: number; network: string; mac: string; ip?: string }[];
  /** Live figures while the VM has a worker; null otherwise. */
  stats: VmViewStats | null;
  cpu: CpuView;
  memory: MemoryView;
  /** Who `typevisor ssh` logs in as (from the first-boot configuration). */
  login?: { user: string };
}

export interface VmViewStats extends VmStats {
  /** The VM's CPU as a share of its cap in force (null when uncapped). */
  capUsePercent: number | null;
}

export interface ActionOutcome {
  vm: VmView;
  /**
   * For shutdown and a graceful reboot: true when the guest did not power off (reboot) in time, or had no agent
   * to ask, and the VM was stopped (reset) by force.
   */
  forced?: boolean;
}

export interface HostInfo {
  hostname: string;
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  freeMemoryBytes: number;
  loadAverage: number[];
  daemon: {
    pid: number;
    uptimeSeconds: number;
    rssBytes: number;
    heapUsedBytes: number;
    engine: string;
    version: string;
    /** Which user VM processes run as: a uid of their own per VM (a root daemon), or the daemon's and why. */
    vmProcessUser: string;
    /** VM workers (thread mode) or VM processes (process mode) kept started ahead of need; null: no pool. */
    warmPool: WarmPoolStats | null;
    /** Network workers kept started ahead of need; null: none are kept. */
    networkWarmPool: WarmPoolStats | null;
  };
  vms: { total: number; byState: Record<VmState, number> };
  usage: { vcpus: number; memoryBytes: number; residentBytes: number; cpuPercent: number };
  /** How CPU settings are enforced on this host, and why better mechanisms were passed over. */
  cpuControl: { mechanism: string; detail: string; skipped: string[] };
  /** The memory budget, what running VMs commit and hold, and the headroom. */
  memory: HostMemoryView;
}

export interface EventsResult {
  events: HostEvent[];
  /** Present when a listener was given. */
  unsubscribe?: () => void;
}

export interface NetworkView extends NetworkRecord {
  gateway?: string;
  dns: string;
  running: boolean;
  /** VMs with a NIC on this network. */
  vms: string[];
  leases: NetworkLease[];
  stats: Record<string, unknown> | null;
}

/** What each action answers with, by action type. */
interface HostResults {
  list: VmView[];
  get: VmView;
  create: VmView;
  update: VmView;
  delete: { deleted: string };
  action: ActionOutcome;
  exec: ExecResult;
  'console-log': Buffer;
  'console-attach': ConsoleSession;
  'host-info': HostInfo;
  'stats-all': VmView[];
  'image-list': ImageView[];
  'image-get': ImageView;
  'image-import': ImageView;
  'image-delete': { deleted: string };
  'vm-history': { name: string; intervalSeconds: number; samples: VmSample[] };
  'host-history': { intervalSeconds: number; samples: HostSample[] };
  events: EventsResult;
  'network-list': NetworkView[];
  'network-get': NetworkView;
  'network-create': NetworkView;
  'network-delete': { deleted: string };
  save: StateOutcome;
  restore: StateOutcome;
  'snapshot-create': SnapshotOutcome;
  'snapshot-list': SnapshotView[];
  'snapshot-restore': SnapshotOutcome;
  'snapshot-delete': { deleted: string };
  clone: { vm: VmView; source: string; totalMs: number };
}

/** The result type for each action. */
export type HostResult<A extends HostAction> = HostResults[A['type']];

/** The channel the API holds: one method, typed by the action. */
export interface HostChannel {
  send<A extends HostAction>(action: A): Promise<HostResult<A>>;
}
