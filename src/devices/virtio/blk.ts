/**
 * virtio-blk (virtio 1.2 §5.2), device id 2, on top of the generic transport: configuration space and one request
 * queue. Requests run against an async BlockBackend and complete into the used ring when they finish.
 */
import type { BlockBackend } from '../../storage/backend.js';
import { VirtioMmioDevice, type VirtioContext } from './mmio.js';
import { bit } from './regs.js';
import { VirtqueueError, type DescriptorChain } from './virtqueue.js';

export const VIRTIO_ID_BLOCK = 2;

// §5.2.3 feature bits.
export const VIRTIO_BLK_F_SIZE_MAX = 1; // size_max is valid
export const VIRTIO_BLK_F_SEG_MAX = 2; // seg_max is valid
export const VIRTIO_BLK_F_RO = 5; // the disk is read-only
export const VIRTIO_BLK_F_BLK_SIZE = 6; // blk_size is valid
export const VIRTIO_BLK_F_FLUSH = 9; // cache flush command
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

// §5.2.6 request types and status values.
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

export const VIRTIO_BLK_ID_BYTES = 20;
export const SECTOR_SIZE = 512;

// §5.2.4 configuration layout (byte offsets in struct virtio_blk_config).
const CFG_CAPACITY = 0; // u64, in 512-byte sectors
const CFG_SIZE_MAX = 8; // u32
const CFG_SEG_MAX = 12; // u32
const CFG_BLK_SIZE = 20; // u32
const CFG_MAX_DISCARD_SECTORS = 36;
const CFG_MAX_DISCARD_SEG = 40;
const CFG_DISCARD_SECTOR_ALIGNMENT = 44;
const CFG_MAX_WRITE_ZEROES_SECTORS = 48;
const CFG_MAX_WRITE_ZEROES_SEG = 52;
const CFG_WRITE_ZEROES_MAY_UNMAP = 56; // u8
const CONFIG_SIZE = 60;

export const BLK_QUEUE_SIZE = 256;
/** Segments per request and bytes per segment we advertise; together they bound a request's data to 16 MiB. */
export const BLK_SEG_MAX = 128;
export const BLK_SIZE_MAX = 128 * 1024;
/** Largest write payload: what seg_max and size_max allow (it is copied out of the guest when the request arrives). */
export const BLK_MAX_WRITE_BYTES = BLK_SEG_MAX * BLK_SIZE_MAX;
/**
 * Reads are carried out in pieces of at most this many bytes, so a read's host buffer stays small whatever its
 * size. Drivers that ignore seg_max/size_max issue one request per contiguous run: U-Boot's ext4 reads a whole
 * extent run of a file (a 36 MB kernel written in one go) with a single one-descriptor request, as QEMU accepts.
 */
export const BLK_READ_PIECE = 1024 * 1024;
const MAX_DISCARD_SECTORS = 0x3f_ffff;
const MAX_DISCARD_SEG = 32;
/** Not a virtio request type: marks a request whose device-readable payload exceeds BLK_MAX_WRITE_BYTES. */
const OVERSIZED_PAYLOAD = -1;
const REQUEST_HEADER = 16; // struct virtio_blk_outhdr: type u32, ioprio u32, sector u64
const DISCARD_SEGMENT = 16; // struct virtio_blk_discard_write_zeroes: sector u64, num_sectors u32, flags u32

export interface VirtioBlkOptions {
  /** Up to 20 bytes reported by GET_ID. */
  serial?: string;
  /** Force read-only even when the backend is writable. */
  readOnly?: boolean;
  /**
   * Backend requests in flight at once. 1 (the default) runs requests strictly in order, which any image format
   * handles; raise it for backends that are safe under concurrency. Completions may then be out of order.
   */
  maxInflight?: number;
}

export interface VirtioBlkStateData {
  serial: string;
}

interface Outcome {
  status: number;
  /** Bytes written into the device-writable data part (before the status byte). */
  dataWritten: number;
}

class RequestRejected extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class VirtioBlk extends VirtioMmioDevice<VirtioBlkStateData> {
  readonly readOnly: boolean;
  readonly capacitySectors: number;
  private readonly serial: Uint8Array;
  private readonly maxInflight: number;
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  /** Promises of requests in progress (for FLUSH ordering and whenIdle). */
  private readonly active = new Set<Promise<void>>();
  private readonly stats = {
    requests: 0,
    reads: 0,
    writes: 0,
    flushes: 0,
    discards: 0,
    writeZeroes: 0,
    getIds: 0,
    readBytes: 0,
    writeBytes: 0,
    errors: 0,
    unsupported: 0,
  };

  constructor(
    ctx: VirtioContext,
    private readonly backend: BlockBackend,
    options: VirtioBlkOptions = {},
  ) {
    const readOnly = backend.readOnly || options.readOnly === true;
    const features = readOnly
      ? bit(VIRTIO_BLK_F_SIZE_MAX) |
        bit(VIRTIO_BLK_F_SEG_MAX) |
        bit(VIRTIO_BLK_F_BLK_SIZE) |
        bit(VIRTIO_BLK_F_FLUSH) |
        bit(VIRTIO_BLK_F_RO)
      : bit(VIRTIO_BLK_F_SIZE_MAX) |
        bit(VIRTIO_BLK_F_SEG_MAX) |
        bit(VIRTIO_BLK_F_BLK_SIZE) |
        bit(VIRTIO_BLK_F_FLUSH) |
        bit(VIRTIO_BLK_F_DISCARD) |
        bit(VIRTIO_BLK_F_WRITE_ZEROES);
    super(
      ctx,
      VIRTIO_ID_BLOCK,
      features,
      // A request's data lands in guest RAM, so no valid one is larger than RAM (reads past 16 MiB: BLK_READ_PIECE).
      [{ maxSize: BLK_QUEUE_SIZE, limits: { maxChainBytes: Math.max(BLK_MAX_WRITE_BYTES, ctx.ram.size) + 64 * 1024 } }],
      CONFIG_SIZE,
      'virtio-blk',
      1,
    );
    this.readOnly = readOnly;
    this.capacitySectors = Math.floor(backend.size / SECTOR_SIZE);
    this.maxInflight = Math.max(1, options.maxInflight ?? 1);
    const serialText = options.serial ?? '';
    this.serial = new TextEncoder().encode(serialText).subarray(0, VIRTIO_BLK_ID_BYTES);
    const c = this.configView;
    c.setUint32(CFG_CAPACITY, this.capacitySectors % 0x1_0000_0000, true);
    c.setUint32(CFG_CAPACITY + 4, Math.floor(this.capacitySectors / 0x1_0000_0000), true);
    c.setUint32(CFG_SIZE_MAX, BLK_SIZE_MAX, true);
    c.setUint32(CFG_SEG_MAX, BLK_SEG_MAX, true);
    c.setUint32(CFG_BLK_SIZE, SECTOR_SIZE, true);
    c.setUint32(CFG_MAX_DISCARD_SECTORS, MAX_DISCARD_SECTORS, true);
    c.setUint32(CFG_MAX_DISCARD_SEG, MAX_DISCARD_SEG, true);
    c.setUint32(CFG_DISCARD_SECTOR_ALIGNMENT, 8, true); // 4 KiB
    c.setUint32(CFG_MAX_WRITE_ZEROES_SECTORS, MAX_DISCARD_SECTORS, true);
    c.setUint32(CFG_MAX_WRITE_ZEROES_SEG, MAX_DISCARD_SEG, true);
    c.setUint8(CFG_WRITE_ZEROES_MAY_UNMAP, 1);
  }

  /** Resolves when every request started so far has completed. */
  async whenIdle(): Promise<void> {
    while (this.active.size > 0) await Promise.allSettled([...this.active]);
  }

  protected handleChain(_queue: number, chain: DescriptorChain): void {
    if (chain.readableBytes < REQUEST_HEADER || chain.writableBytes < 1) {
      throw new VirtqueueError(
        'MalformedRequest',
        `virtio-blk request needs a 16-byte header and a status byte (got ${chain.readableBytes}/${chain.writableBytes})`,
      );
    }
    this.stats.requests++;
    const header = new DataView(this.readChain(chain, 0, REQUEST_HEADER).buffer);
    let type = header.getUint32(0, true);
    const sectorHi = header.getUint32(12, true);
    // A sector beyond 2^53 bytes is out of range for any disk; keep it as Infinity so the bounds check refuses it.
    const sector =
      sectorHi >= 0x20_0000 / SECTOR_SIZE ? Number.POSITIVE_INFINITY : sectorHi * 0x1_0000_0000 + header.getUint32(8, true);
    // Device-readable payload is copied out now, so later guest writes to the buffer cannot change the request;
    // one larger than any request seg_max/size_max allows is refused (IOERR) rather than copied.
    const payloadBytes = chain.readableBytes - REQUEST_HEADER;
    const payload =
      payloadBytes > 0 && payloadBytes <= BLK_MAX_WRITE_BYTES ? this.readChain(chain, REQUEST_HEADER) : new Uint8Array(0);
    if (payloadBytes > BLK_MAX_WRITE_BYTES) type = OVERSIZED_PAYLOAD;
    const priorWork = [...this.active];
    const work = this.schedule(() => this.execute(chain, type, sector, payload, priorWork));
    this.active.add(work);
    void work.finally(() => this.active.delete(work));
  }

  protected override onReset(): void {
    // In-flight requests finish against the backend but their completions are dropped by the transport (epoch).
  }

  protected saveDevice(): VirtioBlkStateData {
    return { serial: new TextDecoder().decode(this.serial) };
  }
  protected loadDevice(_data: VirtioBlkStateData): void {
    // Everything the device needs is in its options and the backend; in-flight requests are re-submitted.
  }
  protected override deviceMetrics(): Record<string, number> {
    return { ...this.stats, inflight: this.active.size };
  }

  /** Runs `fn` when one of the maxInflight slots is free; slots are handed over in arrival order. */
  private async schedule(fn: () => Promise<void>): Promise<void> {
    if (this.running < this.maxInflight && this.waiting.length === 0) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  private async execute(
    chain: DescriptorChain,
    type: number,
    sector: number,
    payload: Uint8Array,
    priorWork: Promise<void>[],
  ): Promise<void> {
    if (!this.isCurrent(chain)) return; // the device was reset while this request waited
    let outcome: Outcome;
    try {
      outcome = await this.perform(chain, type, sector, payload, priorWork);
    } catch (e) {
      const status = e instanceof RequestRejected ? e.status : VIRTIO_BLK_S_IOERR;
      if (status === VIRTIO_BLK_S_UNSUPP) this.stats.unsupported++;
      else this.stats.errors++;
      outcome = { status, dataWritten: 0 };
    }
    if (!this.isCurrent(chain)) return;
    this.guard(() => {
      this.writeChain(chain, chain.writableBytes - 1, Uint8Array.of(outcome.status));
      this.complete(chain, outcome.dataWritten + 1);
    });
  }

  private async perform(
    chain: DescriptorChain,
    type: number,
    sector: number,
    payload: Uint8Array,
    priorWork: Promise<void>[],
  ): Promise<Outcome> {
    const dataInLength = chain.writableBytes - 1;
    switch (type) {
      case OVERSIZED_PAYLOAD:
        throw new RequestRejected(VIRTIO_BLK_S_IOERR, `payload over ${BLK_MAX_WRITE_BYTES} bytes`);
      case VIRTIO_BLK_T_IN: {
        const offset = this.checkRange(sector, dataInLength);
        const buffer = new Uint8Array(Math.min(dataInLength, BLK_READ_PIECE));
        for (let done = 0; done < dataInLength; done += buffer.length) {
          const piece = buffer.subarray(0, Math.min(buffer.length, dataInLength - done));
          await this.backend.read(offset + done, piece);
          if (!this.isCurrent(chain)) return { status: VIRTIO_BLK_S_IOERR, dataWritten: 0 };
          this.writeChain(chain, done, piece);
        }
        this.stats.reads++;
        this.stats.readBytes += dataInLength;
        return { status: VIRTIO_BLK_S_OK, dataWritten: dataInLength };
      }
      case VIRTIO_BLK_T_OUT: {
        // §5.2.6.2: a read-only device answers IOERR to writes and writes nothing.
        if (this.readOnly) throw new RequestRejected(VIRTIO_BLK_S_IOERR, 'write to a read-only disk');
        const offset = this.checkRange(sector, payload.length);
        await this.backend.write(offset, payload);
        this.stats.writes++;
        this.stats.writeBytes += payload.length;
        return { status: VIRTIO_BLK_S_OK, dataWritten: 0 };
      }
      case VIRTIO_BLK_T_FLUSH: {
        // Everything completed before the flush must be durable: wait for requests started earlier, then fsync.
        await Promise.allSettled(priorWork);
        await this.backend.flush();
        this.stats.flushes++;
        return { status: VIRTIO_BLK_S_OK, dataWritten: 0 };
      }
      case VIRTIO_BLK_T_GET_ID: {
        const id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
        id.set(this.serial);
        const written = this.writeChain(chain, 0, id.subarray(0, Math.min(VIRTIO_BLK_ID_BYTES, dataInLength)));
        this.stats.getIds++;
        return { status: VIRTIO_BLK_S_OK, dataWritten: written };
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES: {
        const isDiscard = type === VIRTIO_BLK_T_DISCARD;
        if (!this.has(isDiscard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES))
          throw new RequestRejected(VIRTIO_BLK_S_UNSUPP, 'not negotiated');
        if (this.readOnly) throw new RequestRejected(VIRTIO_BLK_S_IOERR, 'read-only disk');
        const ranges = this.parseRanges(payload, isDiscard);
        for (const r of ranges) {
          if (isDiscard) await this.backend.discard(r.offset, r.length);
          else await this.backend.writeZeroes(r.offset, r.length);
        }
        if (isDiscard) this.stats.discards++;
        else this.stats.writeZeroes++;
        return { status: VIRTIO_BLK_S_OK, dataWritten: 0 };
      }
      default:
        throw new RequestRejected(VIRTIO_BLK_S_UNSUPP, `request type ${type}`);
    }
  }

  /** The byte offset of [sector, sector+length) after checking it is whole sectors inside the disk. */
  private checkRange(sector: number, length: number): number {
    if (length % SECTOR_SIZE !== 0)
      throw new RequestRejected(VIRTIO_BLK_S_IOERR, `length ${length} is not a multiple of ${SECTOR_SIZE}`);
    if (!(sector <= this.capacitySectors) || sector + length / SECTOR_SIZE > this.capacitySectors) {
      throw new RequestRejected(
        VIRTIO_BLK_S_IOERR,
        `sectors ${sector}+${length / SECTOR_SIZE} beyond capacity ${this.capacitySectors}`,
      );
    }
    return sector * SECTOR_SIZE;
  }

  private parseRanges(payload: Uint8Array, isDiscard: boolean): { offset: number; length: number }[] {
    if (payload.length === 0 || payload.length % DISCARD_SEGMENT !== 0)
      throw new RequestRejected(VIRTIO_BLK_S_IOERR, 'bad discard/write-zeroes payload');
    const count = payload.length / DISCARD_SEGMENT;
    if (count > MAX_DISCARD_SEG) throw new RequestRejected(VIRTIO_BLK_S_IOERR, `${count} segments exceed max ${MAX_DISCARD_SEG}`);
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const ranges: { offset: number; length: number }[] = [];
    for (let i = 0; i < count; i++) {
      const at = i * DISCARD_SEGMENT;
      const hi = view.getUint32(at + 4, true);
      const sector = hi >= 0x20_0000 / SECTOR_SIZE ? Number.POSITIVE_INFINITY : hi * 0x1_0000_0000 + view.getUint32(at, true);
      const numSectors = view.getUint32(at + 8, true);
      const flags = view.getUint32(at + 12, true);
      // §5.2.6.2: unknown flags, or UNMAP on a discard, are UNSUPP.
      if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP || (isDiscard && flags !== 0))
        throw new RequestRejected(VIRTIO_BLK_S_UNSUPP, `flags 0x${flags.toString(16)}`);
      if (numSectors > MAX_DISCARD_SECTORS)
        throw new RequestRejected(VIRTIO_BLK_S_IOERR, `${numSectors} sectors exceed the maximum`);
      ranges.push({ offset: this.checkRange(sector, numSectors * SECTOR_SIZE), length: numSectors * SECTOR_SIZE });
    }
    return ranges;
  }
}
