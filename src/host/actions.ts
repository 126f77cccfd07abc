/**
 * The typed requests the API (or any other front end) sends to the host layer, in the style of Firecracker's
 * rpc_interface: the front end never touches a VM or worker, it only sends one of these and gets a result.
 */
import type { VmState } from './lifecycle.js';
import type { ImageView, ImportSpec } from './image-store.js';
import type { VmStats } from './engine.js';
import type { VmConfig } from '../vm/config.js';

export interface DiskSpec {
  /** Virtual size in MiB; an overlay defaults to its backing image's size. */
  sizeMiB?: number;
  format: 'raw' | 'qcow2';
  /** Name of an image whose root filesystem backs this disk (qcow2 overlay). */
  backing?: string;
}

export interface CreateVmSpec {
  name: string;
  vcpus: number;
  memoryMiB: number;
  /** A named image (kernel, initrd, root filesystem). Defaults to 'default' when no kernel is given. */
  image?: string;
  kernel?: string;
  initrd?: string;
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
}

export interface UpdateVmSpec {
  vcpus?: number;
  memoryMiB?: number;
  cmdline?: string;
  autostart?: boolean;
  /** Running VMs only: how much memory the balloon should take back (not persisted). */
  balloonTargetMiB?: number;
}

export const VM_ACTIONS = ['start', 'shutdown', 'stop', 'pause', 'resume', 'reboot'] as const;
export type VmAction = (typeof VM_ACTIONS)[number];

export type HostAction =
  | { type: 'list' }
  | { type: 'get'; name: string; withStats: boolean }
  | { type: 'create'; spec: CreateVmSpec }
  | { type: 'update'; name: string; patch: UpdateVmSpec }
  | { type: 'delete'; name: string; force: boolean }
  | { type: 'action'; name: string; action: VmAction; timeoutMs?: number }
  | { type: 'console-log'; name: string }
  | { type: 'console-attach'; name: string; viewer: ConsoleViewer }
  | { type: 'host-info' }
  | { type: 'image-list' }
  | { type: 'image-get'; name: string }
  | { type: 'image-import'; spec: ImportSpec }
  | { type: 'image-delete'; name: string }
  | { type: 'stats-all' };

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
  /** Live figures while the VM has a worker; null otherwise. */
  stats: VmStats | null;
}

export interface ActionOutcome {
  vm: VmView;
  /** For shutdown: true when the guest did not power off in time and the VM was stopped by force. */
  forced?: boolean;
}

export interface HostInfo {
  hostname: string;
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  freeMemoryBytes: number;
  loadAverage: number[];
  daemon: { pid: number; uptimeSeconds: number; rssBytes: number; heapUsedBytes: number; engine: string; version: string };
  vms: { total: number; byState: Record<VmState, number> };
  usage: { vcpus: number; memoryBytes: number; residentBytes: number; cpuPercent: number };
}

/** What each action answers with, by action type. */
interface HostResults {
  list: VmView[];
  get: VmView;
  create: VmView;
  update: VmView;
  delete: { deleted: string };
  action: ActionOutcome;
  'console-log': Buffer;
  'console-attach': ConsoleSession;
  'host-info': HostInfo;
  'stats-all': VmView[];
  'image-list': ImageView[];
  'image-get': ImageView;
  'image-import': ImageView;
  'image-delete': { deleted: string };
}

/** The result type for each action. */
export type HostResult<A extends HostAction> = HostResults[A['type']];

/** The channel the API holds: one method, typed by the action. */
export interface HostChannel {
  send<A extends HostAction>(action: A): Promise<HostResult<A>>;
}
