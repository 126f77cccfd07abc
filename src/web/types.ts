// The API's wire shapes as the page uses them (src/api/schemas.ts is the source of truth).
export const VM_STATES = ['defined', 'running', 'paused', 'stopped', 'rebooting', 'crashed'] as const;
export type VmState = (typeof VM_STATES)[number];
export type VmAction = 'start' | 'shutdown' | 'stop' | 'pause' | 'resume' | 'reboot';

export interface VmStats {
  instret: number;
  cpuPercent: number;
  instructionsPerSecond: number;
  residentBytes: number;
  memoryBytes: number;
  balloonBytes: number;
  diskReadBytes: number;
  diskWriteBytes: number;
  diskReadOps: number;
  diskWriteOps: number;
  netRxBytes: number;
  netTxBytes: number;
  netRxPackets: number;
  netTxPackets: number;
  uptimeSeconds: number;
}

export interface VmDiskConfig {
  path: string;
  format: 'raw' | 'qcow2';
  readOnly: boolean;
  serial?: string;
}

export interface VmConfig {
  name: string;
  cpus: number;
  memoryMiB: number;
  kernel?: string;
  initrd?: string;
  append?: string;
  firmware: { kind: string; path?: string };
  disks: VmDiskConfig[];
  rng: boolean;
  virtioConsole: boolean;
  balloon: boolean;
  [more: string]: unknown;
}

export interface VmView {
  name: string;
  uuid: string;
  state: VmState;
  stateReason?: string;
  autostart: boolean;
  image?: string;
  createdAt: string;
  updatedAt: string;
  config: VmConfig;
  stats: VmStats | null;
}

export interface HostInfo {
  hostname: string;
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  freeMemoryBytes: number;
  loadAverage: number[];
  daemon: { pid: number; uptimeSeconds: number; rssBytes: number; heapUsedBytes: number; engine: string; version: string };
  vms: { total: number; byState: Record<string, number> };
  usage: { vcpus: number; memoryBytes: number; residentBytes: number; cpuPercent: number };
}

/**
 * Which buttons a state enables, mirroring src/host/lifecycle.ts's table (the API still has the last word: a
 * refused action shows its error).
 */
export const ACTIONS_BY_STATE: Record<VmState, readonly (VmAction | 'delete')[]> = {
  defined: ['start', 'delete'],
  running: ['shutdown', 'stop', 'pause', 'reboot'],
  paused: ['resume', 'stop'],
  rebooting: ['stop'],
  stopped: ['start', 'delete'],
  crashed: ['start', 'delete'],
};

export function allows(state: VmState, action: VmAction | 'delete'): boolean {
  return ACTIONS_BY_STATE[state].includes(action);
}

export const isActive = (s: VmState): boolean => s === 'running' || s === 'paused' || s === 'rebooting';
