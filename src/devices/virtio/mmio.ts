/**
 * The virtio-mmio transport, version 2 (virtio 1.2 §4.2), shared by every virtio device. A device model extends
 * VirtioMmioDevice and adds only its configuration space and its queue handlers (in the manner of TinyEMU's
 * virtio.c): the transport does feature negotiation, the status state machine, reset, queue setup, the
 * validation of every descriptor chain, used-ring completion, EVENT_IDX interrupt suppression and the IrqLine.
 *
 * A driver that breaks the rules (a hostile chain, a bad ring layout) puts the device into DEVICE_NEEDS_RESET and
 * raises a configuration-change interrupt; nothing here throws into the caller of read/write.
 */
import type { GuestRam } from '../../machine/memory.js';
import {
  checkState,
  type AccessSize,
  type DeviceState,
  type IrqLine,
  type Metered,
  type MmioDevice,
  type Stateful,
} from '../device.js';
import {
  TYPEVISOR_VENDOR_ID,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTIO_MMIO_CONFIG,
  VIRTIO_MMIO_CONFIG_GENERATION,
  VIRTIO_MMIO_DEVICE_FEATURES,
  VIRTIO_MMIO_DEVICE_FEATURES_SEL,
  VIRTIO_MMIO_DEVICE_ID,
  VIRTIO_MMIO_DRIVER_FEATURES,
  VIRTIO_MMIO_DRIVER_FEATURES_SEL,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_INTERRUPT_ACK,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_MAGIC,
  VIRTIO_MMIO_MAGIC_VALUE,
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
  VIRTIO_MMIO_SHM_LEN_HIGH,
  VIRTIO_MMIO_SHM_LEN_LOW,
  VIRTIO_MMIO_STATUS,
  VIRTIO_MMIO_VENDOR_ID,
  VIRTIO_MMIO_VERSION,
  VIRTIO_MMIO_WINDOW_SIZE,
  bit,
  hasFeature,
} from './regs.js';
import {
  DEFAULT_QUEUE_LIMITS,
  SplitVirtqueue,
  VirtqueueError,
  readChain,
  validateQueueLayout,
  writeChain,
  type DescriptorChain,
  type QueueLimits,
} from './virtqueue.js';

/** What the board hands each virtio device it attaches. */
export interface VirtioContext {
  ram: GuestRam;
  irq: IrqLine;
  name: string;
  /** Wakes an idle run loop after a change made outside it (an async completion, host input). */
  wake?: () => void;
}

export interface QueueSpec {
  /** QueueNumMax. */
  maxSize: number;
  limits?: Partial<QueueLimits>;
}

/** Per-queue register state as the driver programs it. */
interface QueueRegs {
  num: number;
  ready: boolean;
  desc: number;
  driver: number;
  device: number;
}

export interface VirtioTransportState {
  status: number;
  deviceFeaturesSel: number;
  driverFeaturesSel: number;
  /** Driver-written features, as a decimal string (bigint is not structured-clone friendly everywhere). */
  driverFeatures: string;
  queueSel: number;
  interruptStatus: number;
  configGeneration: number;
  queues: {
    num: number;
    ready: boolean;
    desc: number;
    driver: number;
    device: number;
    lastAvailIdx: number;
    usedIdx: number;
    signalledUsed: number;
    signalledValid: boolean;
    /** Heads of chains the device owned at save time; re-submitted to the device on load. */
    inflight: number[];
  }[];
  /** Why the device entered NEEDS_RESET, if it did. */
  lastError: string | null;
}

export interface VirtioDeviceState<D> {
  transport: VirtioTransportState;
  device: D;
}

const MASK32 = 0x1_0000_0000;

function splitFeatures(f: bigint, sel: number): number {
  if (sel > 1) return 0;
  return Number((f >> BigInt(32 * sel)) & 0xffff_ffffn);
}

/**
 * The transport plus the device hooks. Subclasses set `deviceId`, `deviceFeatures`, the queue specs and the
 * configuration bytes, and implement `handleChain`.
 */
export abstract class VirtioMmioDevice<D = unknown> implements MmioDevice, Stateful<VirtioDeviceState<D>>, Metered {
  readonly name: string;
  readonly size = VIRTIO_MMIO_WINDOW_SIZE;
  protected readonly ram: GuestRam;
  private readonly irq: IrqLine;
  private readonly wake: () => void;

  /** The device-specific configuration space (§4.2.2 Config, offset 0x100 onwards), little-endian. */
  protected readonly config: Uint8Array;
  protected readonly configView: DataView;

  private status = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeatures = 0n;
  /** Features in effect after FEATURES_OK (0 before). */
  protected negotiated = 0n;
  private queueSel = 0;
  private interruptStatus = 0;
  private configGeneration = 0;
  private readonly queueRegs: QueueRegs[];
  private readonly queues: (SplitVirtqueue | null)[];
  private readonly inflight: Set<number>[];
  private readonly pendingSignal: boolean[];
  /** Bumped on every reset so that completions of requests started before it are dropped. */
  private epoch = 0;
  private processing = 0;
  private lastError: string | null = null;
  private readonly transportCounters = { notifications: 0, chains: 0, interrupts: 0, protocolErrors: 0, resets: 0 };

  protected constructor(
    ctx: VirtioContext,
    readonly deviceId: number,
    /** Device-specific feature bits offered; the transport adds VERSION_1, INDIRECT_DESC and EVENT_IDX. */
    private readonly deviceFeatureBits: bigint,
    private readonly queueSpecs: readonly QueueSpec[],
    configSize: number,
    /** The state type name for saveState, e.g. "virtio-blk". */
    private readonly stateType: string,
    private readonly stateVersion: number,
  ) {
    this.name = ctx.name;
    this.ram = ctx.ram;
    this.irq = ctx.irq;
    this.wake = ctx.wake ?? (() => {});
    this.config = new Uint8Array(configSize);
    this.configView = new DataView(this.config.buffer);
    this.queueRegs = queueSpecs.map(() => ({ num: 0, ready: false, desc: 0, driver: 0, device: 0 }));
    this.queues = queueSpecs.map(() => null);
    this.inflight = queueSpecs.map(() => new Set<number>());
    this.pendingSignal = queueSpecs.map(() => false);
  }

  // ---- hooks for device models ----

  /** A validated chain from queue `queue`. Complete it now or later with `complete`. May throw VirtqueueError. */
  protected abstract handleChain(queue: number, chain: DescriptorChain): void;
  /** The device was reset (status 0): drop device-side request state. */
  protected onReset(): void {}
  /** FEATURES_OK was accepted with these features. */
  protected onFeaturesNegotiated(_features: bigint): void {}
  /** The driver set DRIVER_OK. */
  protected onDriverOk(): void {}
  /** A driver write into the configuration space (most configuration is read-only). */
  protected onConfigWrite(_offset: number, _size: AccessSize, _value: number): void {}
  protected abstract saveDevice(): D;
  protected abstract loadDevice(data: D): void;
  protected deviceMetrics(): Record<string, number> {
    return {};
  }

  // ---- services for device models ----

  protected get driverOk(): boolean {
    return (this.status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0 && !this.needsReset;
  }
  get needsReset(): boolean {
    return (this.status & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0;
  }
  /** Why the device last entered NEEDS_RESET (for logs and tests). */
  get lastProtocolError(): string | null {
    return this.lastError;
  }
  protected isQueueReady(queue: number): boolean {
    return this.queues[queue] !== null && this.queues[queue] !== undefined;
  }
  protected has(feature: number): boolean {
    return hasFeature(this.negotiated, feature);
  }

  protected readChain(chain: DescriptorChain, offset = 0, length?: number): Uint8Array {
    return readChain(this.ram, chain, offset, length);
  }
  protected writeChain(chain: DescriptorChain, offset: number, data: Uint8Array): number {
    return writeChain(this.ram, chain, offset, data);
  }

  /**
   * Hands a chain back to the driver with `written` bytes written into it. Safe to call late (after an async
   * backend) — a chain from before a reset is dropped — and never throws.
   */
  protected complete(chain: DescriptorChain, written: number): void {
    if (chain.epoch !== this.epoch || this.needsReset) return;
    const vq = this.queues[chain.queue];
    if (!vq || !this.inflight[chain.queue]!.delete(chain.head)) return;
    this.guard(() => {
      vq.push(chain.head, Math.min(written, chain.writableBytes));
      this.pendingSignal[chain.queue] = true;
      if (this.processing === 0) this.flushSignals();
    });
  }

  /** Whether a chain is still owned by the device (not dropped by a reset or already completed). */
  protected isCurrent(chain: DescriptorChain): boolean {
    return chain.epoch === this.epoch && !this.needsReset && this.inflight[chain.queue]?.has(chain.head) === true;
  }

  /** Runs `fn`, turning any failure into NEEDS_RESET instead of an exception. */
  protected guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.fail(e);
    }
  }

  /** Puts the device into DEVICE_NEEDS_RESET (§2.1.2) and tells the driver with a configuration interrupt. */
  protected fail(error: unknown): void {
    this.transportCounters.protocolErrors++;
    this.lastError = error instanceof VirtqueueError ? `${error.kind}: ${error.message}` : `InternalError: ${String(error)}`;
    if (this.needsReset) return;
    this.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    if (this.status & VIRTIO_CONFIG_S_DRIVER_OK) this.raise(VIRTIO_MMIO_INT_CONFIG);
  }

  /** Device configuration changed (host-initiated): bump the generation and interrupt the driver. */
  protected configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) >>> 0;
    if (this.status & VIRTIO_CONFIG_S_DRIVER_OK) this.raise(VIRTIO_MMIO_INT_CONFIG);
  }

  /** Takes and handles every available chain of `queue` (also called by device models that were waiting). */
  protected processQueue(queue: number): void {
    const vq = this.queues[queue];
    if (!vq || !this.driverOk) return;
    this.processing++;
    try {
      while (!this.needsReset) {
        const head = vq.peekHead();
        if (head === null) break;
        if (this.inflight[queue]!.has(head))
          throw new VirtqueueError('HeadInFlight', `head ${head} is already owned by the device`);
        const chain = vq.pop(this.epoch)!;
        this.inflight[queue]!.add(chain.head);
        this.transportCounters.chains++;
        this.handleChain(queue, chain);
      }
      if (!this.needsReset) vq.publishAvailEvent();
    } catch (e) {
      this.fail(e);
    } finally {
      this.processing--;
    }
    if (this.processing === 0) this.flushSignals();
  }

  // ---- MmioDevice ----

  read(offset: number, size: AccessSize): number {
    if (offset >= VIRTIO_MMIO_CONFIG) return this.readConfig(offset - VIRTIO_MMIO_CONFIG, size);
    if (size !== 4 || offset % 4 !== 0) return 0;
    const q = this.queueRegs[this.queueSel];
    switch (offset) {
      case VIRTIO_MMIO_MAGIC_VALUE:
        return VIRTIO_MMIO_MAGIC;
      case VIRTIO_MMIO_VERSION:
        return 2;
      case VIRTIO_MMIO_DEVICE_ID:
        return this.deviceId;
      case VIRTIO_MMIO_VENDOR_ID:
        return TYPEVISOR_VENDOR_ID;
      case VIRTIO_MMIO_DEVICE_FEATURES:
        return splitFeatures(this.offeredFeatures(), this.deviceFeaturesSel);
      case VIRTIO_MMIO_QUEUE_NUM_MAX:
        return q ? this.queueSpecs[this.queueSel]!.maxSize : 0;
      case VIRTIO_MMIO_QUEUE_READY:
        return q?.ready ? 1 : 0;
      case VIRTIO_MMIO_INTERRUPT_STATUS:
        return this.interruptStatus;
      case VIRTIO_MMIO_STATUS:
        return this.status;
      case VIRTIO_MMIO_SHM_LEN_LOW:
      case VIRTIO_MMIO_SHM_LEN_HIGH:
        return 0xffff_ffff; // §4.2.2: no shared memory region with this SHMSel
      case VIRTIO_MMIO_CONFIG_GENERATION:
        return this.configGeneration;
      default:
        return 0;
    }
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (offset >= VIRTIO_MMIO_CONFIG) {
      this.guard(() => this.writeConfig(offset - VIRTIO_MMIO_CONFIG, size, value));
      return;
    }
    if (size !== 4 || offset % 4 !== 0) return;
    value >>>= 0;
    const q = this.queueRegs[this.queueSel];
    // §4.2.3.2: queue registers must not change while the queue is ready.
    const queueWritable = q !== undefined && !q.ready;
    switch (offset) {
      case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = value;
        break;
      case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = value;
        break;
      case VIRTIO_MMIO_DRIVER_FEATURES:
        if (this.driverFeaturesSel <= 1 && !(this.status & VIRTIO_CONFIG_S_FEATURES_OK)) {
          const shift = BigInt(32 * this.driverFeaturesSel);
          this.driverFeatures = (this.driverFeatures & ~(0xffff_ffffn << shift)) | (BigInt(value) << shift);
        }
        break;
      case VIRTIO_MMIO_QUEUE_SEL:
        this.queueSel = value;
        break;
      case VIRTIO_MMIO_QUEUE_NUM:
        if (queueWritable) q.num = value;
        break;
      case VIRTIO_MMIO_QUEUE_DESC_LOW:
        if (queueWritable) q.desc = setLow(q.desc, value);
        break;
      case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        if (queueWritable) q.desc = setHigh(q.desc, value);
        break;
      case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
        if (queueWritable) q.driver = setLow(q.driver, value);
        break;
      case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
        if (queueWritable) q.driver = setHigh(q.driver, value);
        break;
      case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
        if (queueWritable) q.device = setLow(q.device, value);
        break;
      case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
        if (queueWritable) q.device = setHigh(q.device, value);
        break;
      case VIRTIO_MMIO_QUEUE_READY:
        if (q) this.setQueueReady(this.queueSel, value === 1);
        break;
      case VIRTIO_MMIO_QUEUE_NOTIFY:
        this.transportCounters.notifications++;
        if (value < this.queues.length) this.processQueue(value);
        break;
      case VIRTIO_MMIO_INTERRUPT_ACK:
        this.interruptStatus &= ~value;
        this.irq.set(this.interruptStatus !== 0);
        break;
      case VIRTIO_MMIO_STATUS:
        this.writeStatus(value & 0xff);
        break;
      default:
        break; // read-only or unknown: ignored (§4.2.2)
    }
  }

  // ---- Metered / Stateful ----

  metrics(): Record<string, number> {
    return { ...this.transportCounters, needsReset: this.needsReset ? 1 : 0, ...this.deviceMetrics() };
  }

  saveState(): DeviceState<VirtioDeviceState<D>> {
    const transport: VirtioTransportState = {
      status: this.status,
      deviceFeaturesSel: this.deviceFeaturesSel,
      driverFeaturesSel: this.driverFeaturesSel,
      driverFeatures: this.driverFeatures.toString(),
      queueSel: this.queueSel,
      interruptStatus: this.interruptStatus,
      configGeneration: this.configGeneration,
      queues: this.queueRegs.map((r, i) => {
        const vq = this.queues[i];
        return {
          ...r,
          lastAvailIdx: vq?.lastAvailIdx ?? 0,
          usedIdx: vq?.usedIdx ?? 0,
          signalledUsed: vq?.signalledUsed ?? 0,
          signalledValid: vq?.signalledValid ?? false,
          inflight: [...this.inflight[i]!],
        };
      }),
      lastError: this.lastError,
    };
    return { type: this.stateType, version: this.stateVersion, data: { transport, device: this.saveDevice() } };
  }

  /**
   * Restores registers and rings, then the device model, then re-submits the chains the device owned at save time
   * (their descriptors are still in guest memory: the driver cannot reuse them before they are used).
   */
  loadState(state: DeviceState<VirtioDeviceState<D>>): void {
    checkState(state, this.stateType, this.stateVersion);
    const t = state.data.transport;
    if (t.queues.length !== this.queueRegs.length)
      throw new Error(`${this.stateType}: state has ${t.queues.length} queues, device has ${this.queueRegs.length}`);
    this.epoch++;
    this.status = t.status;
    this.deviceFeaturesSel = t.deviceFeaturesSel;
    this.driverFeaturesSel = t.driverFeaturesSel;
    this.driverFeatures = BigInt(t.driverFeatures);
    this.negotiated = this.status & VIRTIO_CONFIG_S_FEATURES_OK ? this.driverFeatures : 0n;
    this.queueSel = t.queueSel;
    this.interruptStatus = t.interruptStatus;
    this.configGeneration = t.configGeneration;
    this.lastError = t.lastError;
    t.queues.forEach((s, i) => {
      this.queueRegs[i] = { num: s.num, ready: false, desc: s.desc, driver: s.driver, device: s.device };
      this.queues[i] = null;
      this.inflight[i]!.clear();
      if (s.ready) {
        this.setQueueReady(i, true);
        const vq = this.queues[i] as SplitVirtqueue | null;
        if (vq) {
          vq.lastAvailIdx = s.lastAvailIdx;
          vq.usedIdx = s.usedIdx;
          vq.signalledUsed = s.signalledUsed;
          vq.signalledValid = s.signalledValid;
        }
      }
    });
    if (this.negotiated !== 0n) this.onFeaturesNegotiated(this.negotiated);
    this.loadDevice(state.data.device);
    this.irq.set(this.interruptStatus !== 0);
    t.queues.forEach((s, i) => {
      const vq = this.queues[i];
      if (!vq) return;
      this.processing++;
      this.guard(() => {
        for (const head of s.inflight) {
          const chain = vq.parseChain(head, this.epoch);
          this.inflight[i]!.add(head);
          this.handleChain(i, chain);
        }
      });
      this.processing--;
    });
    this.flushSignals();
  }

  // ---- internals ----

  private offeredFeatures(): bigint {
    return this.deviceFeatureBits | bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX);
  }

  private readConfig(offset: number, size: AccessSize): number {
    if (offset + size > this.config.length) return 0;
    this.beforeConfigRead();
    if (size === 1) return this.configView.getUint8(offset);
    if (size === 2) return this.configView.getUint16(offset, true);
    return this.configView.getUint32(offset, true);
  }

  /** Lets a device refresh derived configuration fields before the driver reads them. */
  protected beforeConfigRead(): void {}

  private writeConfig(offset: number, size: AccessSize, value: number): void {
    if (offset + size > this.config.length) return;
    this.onConfigWrite(offset, size, value >>> 0);
  }

  private writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    let next = value | (this.status & VIRTIO_CONFIG_S_NEEDS_RESET);
    if (next & VIRTIO_CONFIG_S_FEATURES_OK && !(this.status & VIRTIO_CONFIG_S_FEATURES_OK)) {
      // §2.2.2: accept only a subset of what we offered, and (for a modern device) VERSION_1 must be in it.
      const offered = this.offeredFeatures();
      if ((this.driverFeatures & ~offered) !== 0n || !hasFeature(this.driverFeatures, VIRTIO_F_VERSION_1)) {
        next &= ~VIRTIO_CONFIG_S_FEATURES_OK;
      } else {
        this.negotiated = this.driverFeatures;
        this.onFeaturesNegotiated(this.negotiated);
      }
    }
    const becameReady = next & VIRTIO_CONFIG_S_DRIVER_OK && !(this.status & VIRTIO_CONFIG_S_DRIVER_OK);
    this.status = next;
    if (becameReady) {
      this.guard(() => this.onDriverOk());
      // A driver may kick before DRIVER_OK; the device must not consume until now, so look at every queue once.
      for (let i = 0; i < this.queues.length; i++) this.processQueue(i);
    }
  }

  private reset(): void {
    this.epoch++;
    this.transportCounters.resets++;
    this.status = 0;
    this.deviceFeaturesSel = 0;
    this.driverFeaturesSel = 0;
    this.driverFeatures = 0n;
    this.negotiated = 0n;
    this.queueSel = 0;
    this.interruptStatus = 0;
    this.lastError = null;
    for (let i = 0; i < this.queueRegs.length; i++) {
      this.queueRegs[i] = { num: 0, ready: false, desc: 0, driver: 0, device: 0 };
      this.queues[i] = null;
      this.inflight[i]!.clear();
      this.pendingSignal[i] = false;
    }
    this.irq.set(false);
    this.guard(() => this.onReset());
  }

  private setQueueReady(index: number, ready: boolean): void {
    const regs = this.queueRegs[index]!;
    if (!ready) {
      regs.ready = false;
      this.queues[index] = null;
      this.inflight[index]!.clear();
      return;
    }
    if (regs.ready) return;
    const spec = this.queueSpecs[index]!;
    const addrs = { size: regs.num, desc: regs.desc, driver: regs.driver, device: regs.device };
    try {
      validateQueueLayout(this.ram, addrs, spec.maxSize);
    } catch (e) {
      this.fail(e);
      return;
    }
    regs.ready = true;
    const limits = { ...DEFAULT_QUEUE_LIMITS, ...spec.limits };
    this.queues[index] = new SplitVirtqueue(
      this.ram,
      index,
      addrs,
      hasFeature(this.negotiated, VIRTIO_F_EVENT_IDX),
      hasFeature(this.negotiated, VIRTIO_F_INDIRECT_DESC),
      limits,
    );
  }

  private flushSignals(): void {
    let raise = false;
    this.guard(() => {
      for (let i = 0; i < this.pendingSignal.length; i++) {
        if (!this.pendingSignal[i]) continue;
        this.pendingSignal[i] = false;
        const vq = this.queues[i];
        if (vq && vq.shouldInterrupt()) raise = true;
      }
    });
    if (raise) this.raise(VIRTIO_MMIO_INT_VRING);
  }

  private raise(bits: number): void {
    this.transportCounters.interrupts++;
    this.interruptStatus |= bits;
    this.irq.set(true);
    this.wake();
  }
}

function setLow(current: number, low: number): number {
  return Math.floor(current / MASK32) * MASK32 + low;
}
function setHigh(current: number, high: number): number {
  // Addresses at or above 2^53 cannot be RAM; saturate so validation refuses them rather than losing bits.
  return high >= 0x20_0000 ? Number.MAX_SAFE_INTEGER + 1 : high * MASK32 + (current % MASK32);
}
