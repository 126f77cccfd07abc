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

/** Token-bucket limits for one direction of a NIC (src/net/rate-limiter.ts enforces them). */
export interface NicRateLimit {
  bytesPerSecond?: number;
  packetsPerSecond?: number;
  burstBytes?: number;
  burstPackets?: number;
}

/** One virtio-net NIC, plugged into a daemon-owned virtual network. */
export interface NicConfig {
  network: string;
  /** Unicast MAC, 'xx:xx:xx:xx:xx:xx' lowercase. */
  mac: string;
  /** Guest-bound traffic. */
  rx?: NicRateLimit;
  /** Guest-sent traffic. */
  tx?: NicRateLimit;
}

/** A host port forwarded to a guest port through the NAT of the network of NIC `nic`. */
export interface PublishedPort {
  proto: 'tcp' | 'udp';
  hostIp: string;
  hostPort: number;
  guestPort: number;
  nic: number;
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
  /** virtio-net NICs, in guest order (eth0 first). Absent in records written before networking existed. */
  nics?: NicConfig[];
  /** Port forwards (nat networks only). */
  publish?: PublishedPort[];
  /** Derive mtime from retired instructions instead of the host clock (reproducible runs). */
  deterministicTime?: boolean;
}

export const MAX_CPUS = 8;
export const MAX_NICS = 4;
export const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
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
  const nics = c.nics ?? [];
  if (nics.length > MAX_NICS) errors.push(`at most ${MAX_NICS} NICs`);
  const macs = new Set<string>();
  for (const n of nics) {
    if (!MAC_RE.test(n.mac)) errors.push(`MAC ${JSON.stringify(n.mac)} must be six lowercase hex pairs joined by ':'`);
    // Bit 0 of the first octet marks multicast: a NIC's own address must be unicast.
    else if (parseInt(n.mac.slice(0, 2), 16) & 1) errors.push(`MAC ${n.mac} is a multicast address`);
    if (macs.has(n.mac)) errors.push(`MAC ${n.mac} is used twice`);
    macs.add(n.mac);
    for (const [dir, r] of [
      ['rx', n.rx],
      ['tx', n.tx],
    ] as const)
      if (r) errors.push(...validateRate(`${dir} rate of NIC ${n.mac}`, r));
  }
  const published = new Set<string>();
  for (const p of c.publish ?? []) {
    if (!nics[p.nic]) errors.push(`published port ${p.hostPort} names NIC ${p.nic}, which does not exist`);
    for (const port of [p.hostPort, p.guestPort])
      if (!Number.isInteger(port) || port < 1 || port > 65535) errors.push(`port ${port} must be from 1 to 65535`);
    const key = `${p.proto}:${p.hostIp}:${p.hostPort}`;
    if (published.has(key)) errors.push(`host port ${p.hostIp}:${p.hostPort}/${p.proto} is published twice`);
    published.add(key);
  }
  return errors;
}

/** Rates are positive and finite; a burst, when given, holds at least one full frame. */
export function validateRate(what: string, r: NicRateLimit): string[] {
  const errors: string[] = [];
  const positive = (v: number | undefined, name: string) => {
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) errors.push(`${what}: ${name} must be a positive number`);
  };
  positive(r.bytesPerSecond, 'bytes per second');
  positive(r.packetsPerSecond, 'packets per second');
  positive(r.burstBytes, 'burst bytes');
  positive(r.burstPackets, 'burst packets');
  if (r.bytesPerSecond === undefined && r.packetsPerSecond === undefined)
    errors.push(`${what}: give bytes per second and/or packets per second`);
  if (r.burstBytes !== undefined && r.burstBytes < 1518) errors.push(`${what}: a burst must hold one frame (1518 bytes)`);
  return errors;
}
