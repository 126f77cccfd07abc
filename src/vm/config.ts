/**
 * The configuration of one VM: what `typevisor run` builds from its flags and what the daemon stores as vm.json.
 * Everything that reaches the machine passes through here, validated.
 */
export type FirmwareChoice = { kind: 'builtin' } | { kind: 'none' } | { kind: 'file'; path: string };

export interface DiskConfig {
  /** Path of the image on the host. */
  path: string;
  format: 'raw' | 'qcow2';
  readOnly: boolean;
  /** Optional serial reported through virtio-blk GET_ID (at most 20 bytes). */
  serial?: string;
}

export interface VmConfig {
  name: string;
  cpus: number; // 1..8
  memoryMiB: number;
  kernel?: string;
  initrd?: string;
  append?: string;
  firmware: FirmwareChoice;
  disks: DiskConfig[];
  /** virtio-rng fed from the host's crypto. */
  rng: boolean;
  /** virtio-console port (the guest agent's channel). */
  virtioConsole: boolean;
  /** virtio-balloon. */
  balloon: boolean;
  /** Derive mtime from retired instructions instead of the host clock (reproducible runs). */
  deterministicTime?: boolean;
}

export const MAX_CPUS = 8;
export const MIN_MEMORY_MIB = 16;
export const MAX_MEMORY_MIB = 16384;

export function defaultVmConfig(overrides: Partial<VmConfig> = {}): VmConfig {
  return {
    name: 'vm',
    cpus: 1,
    memoryMiB: 256,
    firmware: { kind: 'builtin' },
    disks: [],
    rng: true,
    virtioConsole: true,
    balloon: true,
    ...overrides,
  };
}

/** Returns a list of human-readable problems; empty means valid. */
export function validateVmConfig(c: VmConfig): string[] {
  const errors: string[] = [];
  if (!Number.isInteger(c.cpus) || c.cpus < 1 || c.cpus > MAX_CPUS) errors.push(`cpus must be an integer from 1 to ${MAX_CPUS}`);
  if (!Number.isInteger(c.memoryMiB) || c.memoryMiB < MIN_MEMORY_MIB || c.memoryMiB > MAX_MEMORY_MIB) {
    errors.push(`memory must be from ${MIN_MEMORY_MIB} to ${MAX_MEMORY_MIB} MiB`);
  }
  if (c.firmware.kind === 'none' && !c.kernel) errors.push('--firmware none needs a --kernel to run');
  if (c.disks.length > 6) errors.push('at most 6 disks');
  for (const d of c.disks)
    if (d.serial !== undefined && d.serial.length > 20) errors.push(`disk serial '${d.serial}' exceeds 20 bytes`);
  return errors;
}
