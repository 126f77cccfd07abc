/**
 * What makes a clone a different machine from its source (the clone hook). Two layers:
 *
 * - Configuration (cloneIdentity): every NIC gets a new locally administered MAC, so two clones never collide on
 *   a network (and a DHCP server leases each its own address).
 *   Published ports are dropped (the source keeps its host ports). Any new per-VM identity field belongs here.
 * - Inside the guest (guestIdentity + the agent's `identity` request): a clone resumed from the source's memory
 *   shares its machine id, hostname and kernel entropy pool; the host sends a fresh machine id, a random seed
 *   (mixed into /dev/urandom) and the clone's name as hostname.
 */
import { randomBytes } from 'node:crypto';
import type { VmConfig } from '../vm/config.js';

/** A random unicast, locally administered MAC (02:xx:...), as QEMU/libvirt generate for new NICs. */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * The clone's configuration: the source's, with a fresh MAC for every NIC (so its network leases it a new
 * address) and no published ports (the source keeps its host ports; a clone publishes its own with `set`/create).
 */
export function cloneIdentity(config: VmConfig): VmConfig {
  return { ...config, nics: (config.nics ?? []).map((n) => ({ ...n, mac: randomMac() })), publish: [] };
}

export interface GuestIdentity {
  /** 32 hex digits, as /etc/machine-id holds. */
  machineId: string;
  /** 64 hex digits of fresh randomness for the guest's entropy pool. */
  seed: string;
  hostname: string;
}

export function guestIdentity(hostname: string): GuestIdentity {
  return { machineId: randomBytes(16).toString('hex'), seed: randomBytes(32).toString('hex'), hostname };
}

/** The guest agent request that applies it (guests/userland/sbin/typevisor-agent answers `ok identity`). */
export function identityRequest(id: GuestIdentity): string {
  return `identity ${id.machineId} ${id.seed} ${id.hostname}`;
}
