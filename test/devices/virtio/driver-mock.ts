/**
 * The guest side of virtio-mmio, for tests: plays the driver over a GuestRam the way Linux's virtio_mmio and
 * virtio_ring do — reset, feature negotiation, queue setup with the rings in guest memory, posting direct and
 * indirect chains, kicks that honour EVENT_IDX's avail_event, interrupts acknowledged, used entries collected.
 */
import type { IrqLine, MmioDevice } from '../../../src/devices/device.js';
import type { GuestRam } from '../../../src/machine/memory.js';
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTIO_MMIO_CONFIG,
  VIRTIO_MMIO_DEVICE_FEATURES,
  VIRTIO_MMIO_DEVICE_FEATURES_SEL,
  VIRTIO_MMIO_DRIVER_FEATURES,
  VIRTIO_MMIO_DRIVER_FEATURES_SEL,
  VIRTIO_MMIO_INTERRUPT_ACK,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_QUEUE_DESC_HIGH,
  VIRTIO_MMIO_QUEUE_DESC_LOW,
  VIRTIO_MMIO_QUEUE_DEVICE_HIGH,
  VIRTIO_MMIO_QUEUE_DEVICE_LOW,
  VIRTIO_MMIO_QUEUE_DRIVER_HIGH,
  VIRTIO_MMIO_QUEUE_DRIVER_LOW,
  VIRTIO_MMIO_QUEUE_NOTIFY,
  VIRTIO_MMIO_QUEUE_NUM,
  VIRTIO_MMIO_QUEUE_NUM_MAX,
  VIRTIO_MMIO_QUEUE_READY,
  VIRTIO_MMIO_QUEUE_SEL,
  VIRTIO_MMIO_STATUS,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  bit,
  hasFeature,
  vringNeedEvent,
} from '../../../src/devices/virtio/regs.js';

/** An IrqLine that remembers its level and counts rising edges. */
export class IrqSpy implements IrqLine {
  level = false;
  rises = 0;
  set(level: boolean): void {
    if (level && !this.level) this.rises++;
    this.level = level;
  }
}

export interface UsedEntry {
  head: number;
  len: number;
  /** The device-writable buffers of the chain, read back from guest memory. */
  written: Uint8Array[];
}

interface Posted {
  descriptors: number[];
  inBuffers: { addr: number; len: number }[];
}

export class MockQueue {
  readonly free: number[] = [];
  availIdx = 0;
  lastKickAvail = 0;
  lastUsed = 0;
  readonly posted = new Map<number, Posted>();
  constructor(
    readonly index: number,
    readonly size: number,
    readonly desc: number,
    readonly avail: number,
    readonly used: number,
  ) {
    for (let i = 0; i < size; i++) this.free.push(i);
  }
}

export interface PostOptions {
  /** Put the chain in an indirect table (one ring descriptor). */
  indirect?: boolean;
}

export class VirtioDriverMock {
  readonly irq = new IrqSpy();
  readonly queues: MockQueue[] = [];
  features = 0n;
  private next: number;

  constructor(
    readonly ram: GuestRam,
    /** Where the mock allocates rings and buffers: [base, base+span). */
    allocBase = ram.base,
    private readonly allocEnd = allocBase + Math.min(ram.size, 8 * 1024 * 1024),
  ) {
    this.next = allocBase;
  }

  /** The device under test; set after constructing it with `mock.irq`. */
  dev!: MmioDevice;

  attach(dev: MmioDevice): this {
    this.dev = dev;
    return this;
  }

  r(offset: number): number {
    return this.dev.read(offset, 4) >>> 0;
  }
  w(offset: number, value: number): void {
    this.dev.write(offset, 4, value >>> 0);
  }
  config8(offset: number): number {
    return this.dev.read(VIRTIO_MMIO_CONFIG + offset, 1);
  }
  config32(offset: number): number {
    return this.dev.read(VIRTIO_MMIO_CONFIG + offset, 4) >>> 0;
  }
  config64(offset: number): number {
    return this.config32(offset) + this.config32(offset + 4) * 0x1_0000_0000;
  }
  get status(): number {
    return this.r(VIRTIO_MMIO_STATUS);
  }

  alloc(size: number, align = 16): number {
    const at = Math.ceil(this.next / align) * align;
    if (at + size > this.allocEnd) throw new Error('driver mock out of guest memory');
    this.next = at + size;
    return at;
  }

  deviceFeatures(): bigint {
    this.w(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    const hi = BigInt(this.r(VIRTIO_MMIO_DEVICE_FEATURES));
    this.w(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    return (hi << 32n) | BigInt(this.r(VIRTIO_MMIO_DEVICE_FEATURES));
  }

  /**
   * Reset, ACKNOWLEDGE, DRIVER, negotiate (accept offered ∩ `accept`), FEATURES_OK. Returns whether the device
   * kept FEATURES_OK. `accept` defaults to everything offered.
   */
  negotiate(accept?: bigint): boolean {
    this.w(VIRTIO_MMIO_STATUS, 0);
    this.w(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    this.w(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    const offered = this.deviceFeatures();
    this.features = accept === undefined ? offered : offered & accept;
    this.w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    this.w(VIRTIO_MMIO_DRIVER_FEATURES, Number(this.features >> 32n));
    this.w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    this.w(VIRTIO_MMIO_DRIVER_FEATURES, Number(this.features & 0xffff_ffffn));
    this.w(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    return (this.status & VIRTIO_CONFIG_S_FEATURES_OK) !== 0;
  }

  setupQueue(index: number, size?: number): MockQueue {
    this.w(VIRTIO_MMIO_QUEUE_SEL, index);
    const max = this.r(VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (max === 0) throw new Error(`queue ${index} does not exist`);
    const n = size ?? Math.min(max, 64);
    const desc = this.alloc(16 * n, 16);
    const avail = this.alloc(6 + 2 * n, 2);
    const used = this.alloc(6 + 8 * n, 4);
    // Rings start zeroed, as the Linux driver allocates them.
    this.ram.write(desc, new Uint8Array(16 * n));
    this.ram.write(avail, new Uint8Array(6 + 2 * n));
    this.ram.write(used, new Uint8Array(6 + 8 * n));
    this.w(VIRTIO_MMIO_QUEUE_NUM, n);
    this.w(VIRTIO_MMIO_QUEUE_DESC_LOW, desc % 0x1_0000_0000);
    this.w(VIRTIO_MMIO_QUEUE_DESC_HIGH, Math.floor(desc / 0x1_0000_0000));
    this.w(VIRTIO_MMIO_QUEUE_DRIVER_LOW, avail % 0x1_0000_0000);
    this.w(VIRTIO_MMIO_QUEUE_DRIVER_HIGH, Math.floor(avail / 0x1_0000_0000));
    this.w(VIRTIO_MMIO_QUEUE_DEVICE_LOW, used % 0x1_0000_0000);
    this.w(VIRTIO_MMIO_QUEUE_DEVICE_HIGH, Math.floor(used / 0x1_0000_0000));
    this.w(VIRTIO_MMIO_QUEUE_READY, 1);
    const q = new MockQueue(index, n, desc, avail, used);
    this.queues[index] = q;
    return q;
  }

  driverOk(): void {
    this.w(VIRTIO_MMIO_STATUS, this.status | VIRTIO_CONFIG_S_DRIVER_OK);
  }

  /** negotiate + set up `queueCount` queues + DRIVER_OK. */
  init(queueCount: number, accept?: bigint, queueSize?: number): this {
    if (!this.negotiate(accept)) throw new Error('device refused FEATURES_OK');
    for (let i = 0; i < queueCount; i++) this.setupQueue(i, queueSize);
    this.driverOk();
    return this;
  }

  get eventIdx(): boolean {
    return hasFeature(this.features, VIRTIO_F_EVENT_IDX);
  }

  /**
   * Makes a chain available: `out` buffers (device-readable, copied into guest memory) then `inLens` buffers
   * (device-writable, zero-filled). Does not kick. Returns the head index.
   */
  post(queue: number, out: Uint8Array[], inLens: number[], options: PostOptions = {}): number {
    const q = this.queues[queue]!;
    const buffers: { addr: number; len: number; write: boolean }[] = [];
    for (const o of out) {
      const addr = this.alloc(Math.max(o.length, 1), 8);
      this.ram.write(addr, o);
      buffers.push({ addr, len: o.length, write: false });
    }
    const inBuffers: { addr: number; len: number }[] = [];
    for (const len of inLens) {
      const addr = this.alloc(Math.max(len, 1), 8);
      this.ram.write(addr, new Uint8Array(len));
      buffers.push({ addr, len, write: true });
      inBuffers.push({ addr, len });
    }
    let head: number;
    let descriptors: number[];
    if (options.indirect) {
      if (!hasFeature(this.features, VIRTIO_F_INDIRECT_DESC)) throw new Error('indirect descriptors not negotiated');
      const table = this.alloc(16 * buffers.length, 16);
      buffers.forEach((b, i) =>
        this.writeDesc(
          table,
          i,
          b.addr,
          b.len,
          (b.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < buffers.length ? VIRTQ_DESC_F_NEXT : 0),
          i + 1,
        ),
      );
      head = this.takeDescriptor(q);
      this.writeDesc(q.desc, head, table, 16 * buffers.length, VIRTQ_DESC_F_INDIRECT, 0);
      descriptors = [head];
    } else {
      descriptors = buffers.map(() => this.takeDescriptor(q));
      buffers.forEach((b, i) =>
        this.writeDesc(
          q.desc,
          descriptors[i]!,
          b.addr,
          b.len,
          (b.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < buffers.length ? VIRTQ_DESC_F_NEXT : 0),
          descriptors[i + 1] ?? 0,
        ),
      );
      head = descriptors[0]!;
    }
    q.posted.set(head, { descriptors, inBuffers });
    this.ram.writeU16(q.avail + 4 + 2 * (q.availIdx % q.size), head);
    q.availIdx = (q.availIdx + 1) & 0xffff;
    this.ram.writeU16(q.avail + 2, q.availIdx);
    return head;
  }

  /** Notifies the device if it asked to be (EVENT_IDX avail_event), or always without EVENT_IDX. Returns whether it did. */
  kick(queue: number): boolean {
    const q = this.queues[queue]!;
    const old = q.lastKickAvail;
    q.lastKickAvail = q.availIdx;
    if (this.eventIdx) {
      const availEvent = this.ram.readU16(q.used + 4 + 8 * q.size);
      if (!vringNeedEvent(availEvent, q.availIdx, old)) return false;
    }
    this.w(VIRTIO_MMIO_QUEUE_NOTIFY, queue);
    return true;
  }

  /** Always notifies, whatever avail_event says. */
  notify(queue: number): void {
    this.queues[queue]!.lastKickAvail = this.queues[queue]!.availIdx;
    this.w(VIRTIO_MMIO_QUEUE_NOTIFY, queue);
  }

  /** Reads and acknowledges InterruptStatus; returns the bits. */
  ackInterrupt(): number {
    const bits = this.r(VIRTIO_MMIO_INTERRUPT_STATUS);
    if (bits) this.w(VIRTIO_MMIO_INTERRUPT_ACK, bits);
    return bits;
  }

  /** Takes every new used entry of `queue`, frees its descriptors, and re-arms used_event. */
  collect(queue: number): UsedEntry[] {
    const q = this.queues[queue]!;
    const out: UsedEntry[] = [];
    const usedIdx = this.ram.readU16(q.used + 2);
    while (q.lastUsed !== usedIdx) {
      const slot = q.used + 4 + 8 * (q.lastUsed % q.size);
      const head = this.ram.readU32(slot);
      const len = this.ram.readU32(slot + 4);
      const posted = q.posted.get(head);
      if (!posted) throw new Error(`device used unknown head ${head}`);
      q.posted.delete(head);
      q.free.push(...posted.descriptors);
      const written = posted.inBuffers.map((b) => {
        const data = new Uint8Array(b.len);
        this.ram.read(b.addr, data);
        return data;
      });
      out.push({ head, len, written });
      q.lastUsed = (q.lastUsed + 1) & 0xffff;
    }
    // Ask for an interrupt on the very next used entry (what virtqueue_enable_cb does).
    if (this.eventIdx) this.ram.writeU16(q.avail + 4 + 2 * q.size, q.lastUsed);
    return out;
  }

  /** Waits (yielding to the event loop) until `count` used entries have arrived on `queue`. */
  async waitUsed(queue: number, count = 1, timeoutMs = 5000): Promise<UsedEntry[]> {
    const got: UsedEntry[] = [];
    const deadline = Date.now() + timeoutMs;
    while (true) {
      got.push(...this.collect(queue));
      if (got.length >= count) return got;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${count} used entries on queue ${queue} (got ${got.length})`);
      await new Promise((r) => setImmediate(r));
    }
  }

  private takeDescriptor(q: MockQueue): number {
    const d = q.free.shift();
    if (d === undefined) throw new Error(`queue ${q.index} has no free descriptors`);
    return d;
  }

  writeDesc(table: number, index: number, addr: number, len: number, flags: number, next: number): void {
    const at = table + 16 * index;
    this.ram.writeU64(at, addr);
    this.ram.writeU32(at + 8, len);
    this.ram.writeU16(at + 12, flags);
    this.ram.writeU16(at + 14, next);
  }
}

export const ALL_TRANSPORT_FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX);
export { VIRTIO_CONFIG_S_DRIVER_OK };

// ---- per-device helpers ----

export const BLK_HEADER_BYTES = 16;

export function blkHeader(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(BLK_HEADER_BYTES);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setUint32(8, sector % 0x1_0000_0000, true);
  v.setUint32(12, Math.floor(sector / 0x1_0000_0000), true);
  return h;
}

export function blkRangeSegment(sector: number, numSectors: number, flags = 0): Uint8Array {
  const s = new Uint8Array(16);
  const v = new DataView(s.buffer);
  v.setUint32(0, sector % 0x1_0000_0000, true);
  v.setUint32(4, Math.floor(sector / 0x1_0000_0000), true);
  v.setUint32(8, numSectors, true);
  v.setUint32(12, flags, true);
  return s;
}

export interface BlkResult {
  status: number;
  /** Data read (for IN / GET_ID), without the status byte. */
  data: Uint8Array;
  len: number;
}

/** Sends one virtio-blk request on queue 0 and waits for it: header, optional data out, `readLength` bytes in, status. */
export async function blkRequest(
  mock: VirtioDriverMock,
  type: number,
  sector: number,
  options: { out?: Uint8Array; readLength?: number; indirect?: boolean } = {},
): Promise<BlkResult> {
  const outs = [blkHeader(type, sector)];
  if (options.out) outs.push(options.out);
  const ins = options.readLength ? [options.readLength, 1] : [1];
  mock.post(0, outs, ins, { indirect: options.indirect });
  mock.kick(0);
  const [used] = await mock.waitUsed(0, 1);
  mock.ackInterrupt();
  const written = used!.written;
  return { status: written[written.length - 1]![0]!, data: options.readLength ? written[0]! : new Uint8Array(0), len: used!.len };
}
