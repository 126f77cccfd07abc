/**
 * Split virtqueues (virtio 1.2 §2.7) seen from the device: the ring layout, and parsing every descriptor chain
 * the driver makes available into a typed, validated DescriptorChain before any device model sees it.
 *
 * Everything here reads guest-controlled memory, so every address is checked with GuestRam.contains before it is
 * touched, every walk is bounded, and each way a chain can be wrong has its own named error.
 */
import type { GuestRam } from '../../machine/memory.js';
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_SIZE,
  VIRTQ_MAX_SIZE,
  vringNeedEvent,
} from './regs.js';

export type VirtqueueErrorKind =
  | 'BadQueueSize' // QueueNum is 0, above QueueNumMax or not a power of 2
  | 'RingOutOfRange' // the descriptor table, available or used ring is not inside guest RAM
  | 'RingMisaligned' // §2.7 alignment: descriptors 16, available ring 2, used ring 4
  | 'BadAvailIndex' // the driver claims more outstanding buffers than the queue holds
  | 'HeadOutOfRange' // an available-ring entry names a descriptor beyond the queue size
  | 'HeadInFlight' // the driver re-posted a chain the device still owns
  | 'NextOutOfRange' // a descriptor's `next` points outside its table
  | 'DescriptorOutOfRange' // a buffer (or indirect table) is not entirely inside guest RAM
  | 'ChainLoop' // following `next` revisits a descriptor
  | 'ChainTooLong' // an indirect table with more entries than we accept
  | 'ChainTooLarge' // the buffers add up to more bytes than this queue accepts
  | 'NestedIndirect' // an indirect table containing an indirect descriptor
  | 'IndirectWithNext' // VIRTQ_DESC_F_INDIRECT together with VIRTQ_DESC_F_NEXT
  | 'IndirectNotNegotiated' // an indirect descriptor although VIRTIO_F_INDIRECT_DESC was not negotiated
  | 'BadIndirectLength' // an indirect table whose length is 0 or not a multiple of 16
  | 'WriteBeforeRead' // a device-readable buffer after a device-writable one
  | 'MalformedRequest'; // the chain is well formed but not what this device's protocol requires

export class VirtqueueError extends Error {
  constructor(
    readonly kind: VirtqueueErrorKind,
    message: string,
  ) {
    super(message);
    this.name = kind;
  }
}

/** One guest buffer, already checked to lie inside guest RAM. */
export interface Segment {
  readonly addr: number;
  readonly len: number;
}

/** A validated descriptor chain: device-readable buffers first, then device-writable ones. */
export interface DescriptorChain {
  readonly queue: number;
  readonly head: number;
  readonly readable: readonly Segment[];
  readonly writable: readonly Segment[];
  readonly readableBytes: number;
  readonly writableBytes: number;
  /** The transport's reset epoch when the chain was popped; a completion from an older epoch is dropped. */
  readonly epoch: number;
}

export interface QueueLimits {
  /** Largest total of buffer bytes one chain may describe. */
  maxChainBytes: number;
  /** Largest indirect table, in descriptors. */
  maxIndirectDescriptors: number;
}

export const DEFAULT_QUEUE_LIMITS: QueueLimits = { maxChainBytes: 16 * 1024 * 1024, maxIndirectDescriptors: 4096 };

export interface QueueAddresses {
  size: number;
  desc: number;
  driver: number;
  device: number;
}

/** Where the three parts of a queue live; validated once when the driver sets QueueReady. */
export function validateQueueLayout(ram: GuestRam, q: QueueAddresses, maxSize: number): void {
  const { size, desc, driver, device } = q;
  if (size === 0 || size > maxSize || size > VIRTQ_MAX_SIZE || (size & (size - 1)) !== 0) {
    throw new VirtqueueError('BadQueueSize', `queue size ${size} is not a power of 2 in 1..${maxSize}`);
  }
  if (desc % 16 !== 0 || driver % 2 !== 0 || device % 4 !== 0) {
    throw new VirtqueueError(
      'RingMisaligned',
      `ring addresses 0x${desc.toString(16)}/0x${driver.toString(16)}/0x${device.toString(16)} are misaligned`,
    );
  }
  // The trailing u16 (used_event / avail_event) is counted whether or not EVENT_IDX is negotiated.
  const parts: [string, number, number][] = [
    ['descriptor table', desc, VIRTQ_DESC_SIZE * size],
    ['available ring', driver, 6 + 2 * size],
    ['used ring', device, 6 + 8 * size],
  ];
  for (const [what, addr, len] of parts) {
    if (!Number.isSafeInteger(addr) || !ram.contains(addr, len)) {
      throw new VirtqueueError('RingOutOfRange', `${what} 0x${addr.toString(16)}+${len} is outside guest RAM`);
    }
  }
}

interface RawDescriptor {
  addr: number;
  len: number;
  flags: number;
  next: number;
}

/** Reads descriptor `index` of the table at `table` (already known to be inside RAM). */
function readDescriptor(ram: GuestRam, table: number, index: number): RawDescriptor {
  const at = table + index * VIRTQ_DESC_SIZE;
  const lo = ram.readU32(at);
  const hi = ram.readU32(at + 4);
  // An address at or above 2^53 cannot be RAM; keep it as a sentinel that fails the range check below.
  const addr = hi >= 0x20_0000 ? Number.POSITIVE_INFINITY : hi * 0x1_0000_0000 + lo;
  return { addr, len: ram.readU32(at + 8), flags: ram.readU16(at + 12), next: ram.readU16(at + 14) };
}

/**
 * The device side of one split virtqueue. The transport owns it while the queue is ready; the indices are kept
 * here so that save/restore and reset are plain field copies.
 */
export class SplitVirtqueue {
  lastAvailIdx = 0;
  usedIdx = 0;
  /** The used index at the last interrupt decision (EVENT_IDX's "old" value) and whether it is meaningful. */
  signalledUsed = 0;
  signalledValid = false;

  constructor(
    private readonly ram: GuestRam,
    readonly index: number,
    readonly addrs: QueueAddresses,
    private readonly eventIdx: boolean,
    private readonly indirect: boolean,
    private readonly limits: QueueLimits,
  ) {}

  get size(): number {
    return this.addrs.size;
  }

  /** Buffers the driver has made available and the device has not yet taken. Throws BadAvailIndex. */
  pending(): number {
    const availIdx = this.ram.readU16(this.addrs.driver + 2);
    const outstanding = (availIdx - this.lastAvailIdx) & 0xffff;
    if (outstanding > this.size) {
      throw new VirtqueueError(
        'BadAvailIndex',
        `avail idx ${availIdx} is ${outstanding} ahead of ${this.lastAvailIdx}, queue size ${this.size}`,
      );
    }
    return outstanding;
  }

  /** The head of the next available chain without consuming it, or null when there is none. */
  peekHead(): number | null {
    if (this.pending() === 0) return null;
    const head = this.ram.readU16(this.addrs.driver + 4 + 2 * (this.lastAvailIdx % this.size));
    if (head >= this.size) throw new VirtqueueError('HeadOutOfRange', `available head ${head} >= queue size ${this.size}`);
    return head;
  }

  /** Takes the next available chain, validated, or returns null when the ring is empty. Throws VirtqueueError. */
  pop(epoch: number): DescriptorChain | null {
    const head = this.peekHead();
    if (head === null) return null;
    const chain = this.parseChain(head, epoch);
    this.lastAvailIdx = (this.lastAvailIdx + 1) & 0xffff;
    return chain;
  }

  /** Parses the chain starting at descriptor `head` of the descriptor table (also used to re-submit on restore). */
  parseChain(head: number, epoch: number): DescriptorChain {
    if (head >= this.size) throw new VirtqueueError('HeadOutOfRange', `head ${head} >= queue size ${this.size}`);
    const readable: Segment[] = [];
    const writable: Segment[] = [];
    let readableBytes = 0;
    let writableBytes = 0;

    const take = (d: RawDescriptor): void => {
      if (d.len === 0) return; // carries nothing; harmless
      if (!this.ram.contains(d.addr, d.len)) {
        throw new VirtqueueError('DescriptorOutOfRange', `buffer 0x${d.addr.toString(16)}+${d.len} is outside guest RAM`);
      }
      if (readableBytes + writableBytes + d.len > this.limits.maxChainBytes) {
        throw new VirtqueueError('ChainTooLarge', `chain exceeds ${this.limits.maxChainBytes} bytes`);
      }
      if (d.flags & VIRTQ_DESC_F_WRITE) {
        writable.push({ addr: d.addr, len: d.len });
        writableBytes += d.len;
      } else {
        if (writable.length > 0)
          throw new VirtqueueError('WriteBeforeRead', 'a device-readable buffer follows a device-writable one');
        readable.push({ addr: d.addr, len: d.len });
        readableBytes += d.len;
      }
    };

    // The direct part of the chain: a chain without loops visits each descriptor at most once.
    let index = head;
    let visited = 0;
    while (true) {
      if (++visited > this.size) throw new VirtqueueError('ChainLoop', `chain from head ${head} revisits a descriptor`);
      const d = readDescriptor(this.ram, this.addrs.desc, index);
      if (d.flags & VIRTQ_DESC_F_INDIRECT) {
        this.walkIndirect(d, take);
        break;
      }
      take(d);
      if (!(d.flags & VIRTQ_DESC_F_NEXT)) break;
      if (d.next >= this.size) throw new VirtqueueError('NextOutOfRange', `next ${d.next} >= queue size ${this.size}`);
      index = d.next;
    }
    return { queue: this.index, head, readable, writable, readableBytes, writableBytes, epoch };
  }

  private walkIndirect(d: RawDescriptor, take: (d: RawDescriptor) => void): void {
    if (!this.indirect) throw new VirtqueueError('IndirectNotNegotiated', 'indirect descriptor without VIRTIO_F_INDIRECT_DESC');
    if (d.flags & VIRTQ_DESC_F_NEXT)
      throw new VirtqueueError('IndirectWithNext', 'indirect descriptor also has VIRTQ_DESC_F_NEXT');
    if (d.len === 0 || d.len % VIRTQ_DESC_SIZE !== 0)
      throw new VirtqueueError('BadIndirectLength', `indirect table length ${d.len}`);
    const count = d.len / VIRTQ_DESC_SIZE;
    if (count > this.limits.maxIndirectDescriptors) {
      throw new VirtqueueError(
        'ChainTooLong',
        `indirect table of ${count} descriptors (at most ${this.limits.maxIndirectDescriptors})`,
      );
    }
    if (!this.ram.contains(d.addr, d.len)) {
      throw new VirtqueueError('DescriptorOutOfRange', `indirect table 0x${d.addr.toString(16)}+${d.len} is outside guest RAM`);
    }
    let index = 0;
    let visited = 0;
    while (true) {
      if (++visited > count) throw new VirtqueueError('ChainLoop', 'indirect chain revisits a descriptor');
      const e = readDescriptor(this.ram, d.addr, index);
      if (e.flags & VIRTQ_DESC_F_INDIRECT)
        throw new VirtqueueError('NestedIndirect', 'indirect table contains an indirect descriptor');
      take(e);
      if (!(e.flags & VIRTQ_DESC_F_NEXT)) return;
      if (e.next >= count) throw new VirtqueueError('NextOutOfRange', `indirect next ${e.next} >= table size ${count}`);
      index = e.next;
    }
  }

  /** Returns a chain to the driver through the used ring; `written` is the bytes the device wrote into it. */
  push(head: number, written: number): void {
    const slot = this.addrs.device + 4 + 8 * (this.usedIdx % this.size);
    this.ram.writeU32(slot, head);
    this.ram.writeU32(slot + 4, written);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    this.ram.writeU16(this.addrs.device + 2, this.usedIdx);
  }

  /** Decides whether the driver wants an interrupt for the used entries added since the last decision. */
  shouldInterrupt(): boolean {
    if (!this.eventIdx) return (this.ram.readU16(this.addrs.driver) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    const old = this.signalledUsed;
    const valid = this.signalledValid;
    this.signalledUsed = this.usedIdx;
    this.signalledValid = true;
    if (!valid) return true;
    const usedEvent = this.ram.readU16(this.addrs.driver + 4 + 2 * this.size);
    return vringNeedEvent(usedEvent, this.usedIdx, old);
  }

  /** With EVENT_IDX, asks the driver to notify again as soon as it makes anything past what we have consumed available. */
  publishAvailEvent(): void {
    if (this.eventIdx) this.ram.writeU16(this.addrs.device + 4 + 8 * this.size, this.lastAvailIdx);
  }
}

/** Copies `length` bytes of the chain's device-readable part starting at byte `offset`. */
export function readChain(ram: GuestRam, chain: DescriptorChain, offset = 0, length = chain.readableBytes - offset): Uint8Array {
  const out = new Uint8Array(Math.max(0, Math.min(length, chain.readableBytes - offset)));
  let skip = offset;
  let done = 0;
  for (const s of chain.readable) {
    if (done >= out.length) break;
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    const n = Math.min(s.len - skip, out.length - done);
    ram.read(s.addr + skip, out.subarray(done, done + n));
    done += n;
    skip = 0;
  }
  return out;
}

/** Copies `data` into the chain's device-writable part at byte `offset`; returns the bytes that fitted. */
export function writeChain(ram: GuestRam, chain: DescriptorChain, offset: number, data: Uint8Array): number {
  let skip = offset;
  let done = 0;
  for (const s of chain.writable) {
    if (done >= data.length) break;
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    const n = Math.min(s.len - skip, data.length - done);
    ram.write(s.addr + skip, data.subarray(done, done + n));
    done += n;
    skip = 0;
  }
  return done;
}
