/**
 * virtio-balloon (virtio 1.2 §5.5), device id 5: inflate/deflate queues of 4 KiB page frame numbers, the stats
 * queue, and free page reporting. Memory the guest gives back is released to the host as whole RAM chunks
 * (design.md §3): a chunk goes back once every page in it is ballooned, and a reported free range is discarded
 * (which frees every chunk it covers).
 */
import { CHUNK_SIZE, PAGE_SIZE } from '../../machine/memory.js';
import { VirtioMmioDevice, type VirtioContext } from './mmio.js';
import { bit, hasFeature } from './regs.js';
import { VirtqueueError, type DescriptorChain } from './virtqueue.js';

export const VIRTIO_ID_BALLOON = 5;

// §5.5.3 feature bits.
export const VIRTIO_BALLOON_F_MUST_TELL_HOST = 0;
export const VIRTIO_BALLOON_F_STATS_VQ = 1; // the stats queue exists
export const VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2; // the guest may deflate when it runs out of memory
export const VIRTIO_BALLOON_F_FREE_PAGE_HINT = 3;
export const VIRTIO_BALLOON_F_PAGE_POISON = 4;
export const VIRTIO_BALLOON_F_REPORTING = 5; // free page reporting queue

/** Balloon PFNs are always in 4 KiB units, whatever the guest page size (§5.5.6). */
export const VIRTIO_BALLOON_PFN_SHIFT = 12;

// §5.5.6.3 memory statistics tags.
export const BALLOON_STAT_TAGS: Record<number, string> = {
  0: 'swapIn', // VIRTIO_BALLOON_S_SWAP_IN
  1: 'swapOut', // VIRTIO_BALLOON_S_SWAP_OUT
  2: 'majorFaults', // VIRTIO_BALLOON_S_MAJFLT
  3: 'minorFaults', // VIRTIO_BALLOON_S_MINFLT
  4: 'freeMemory', // VIRTIO_BALLOON_S_MEMFREE
  5: 'totalMemory', // VIRTIO_BALLOON_S_MEMTOT
  6: 'availableMemory', // VIRTIO_BALLOON_S_AVAIL
  7: 'diskCaches', // VIRTIO_BALLOON_S_CACHES
  8: 'hugetlbAllocations', // VIRTIO_BALLOON_S_HTLB_PGALLOC
  9: 'hugetlbFailures', // VIRTIO_BALLOON_S_HTLB_PGFAIL
  10: 'oomKills', // VIRTIO_BALLOON_S_OOM_KILL (Linux 6.12+)
  11: 'allocStalls', // VIRTIO_BALLOON_S_ALLOC_STALL
  12: 'asyncScans', // VIRTIO_BALLOON_S_ASYNC_SCAN
  13: 'directScans', // VIRTIO_BALLOON_S_DIRECT_SCAN
  14: 'asyncReclaims', // VIRTIO_BALLOON_S_ASYNC_RECLAIM
  15: 'directReclaims', // VIRTIO_BALLOON_S_DIRECT_RECLAIM
};
const STAT_ENTRY = 10; // struct virtio_balloon_stat: le16 tag, le64 val (packed)

// §5.5.4 struct virtio_balloon_config.
const CFG_NUM_PAGES = 0; // u32, the host's target
const CFG_ACTUAL = 4; // u32, written by the driver
const CONFIG_SIZE = 16; // + free_page_hint_cmd_id, poison_val

type QueueRole = 'inflate' | 'deflate' | 'stats' | 'reporting';

export interface BalloonStats {
  /** Latest values the guest reported, by name (bytes for memory figures, counts for the rest). */
  values: Record<string, number>;
  /** How many stats reports have arrived. */
  updates: number;
}

export interface VirtioBalloonOptions {
  /** Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM (default true). */
  deflateOnOom?: boolean;
  /** Offer VIRTIO_BALLOON_F_REPORTING (default true). */
  freePageReporting?: boolean;
}

export interface VirtioBalloonStateData {
  targetPages: number;
  actualPages: number;
  /** Ballooned 4 KiB pages as [first PFN, count] runs. */
  ballooned: [number, number][];
  stats: BalloonStats;
}

export class VirtioBalloon extends VirtioMmioDevice<VirtioBalloonStateData> {
  private roles: QueueRole[];
  /** One bit per guest page: currently in the balloon. */
  private ballooned: Uint8Array;
  /** Ballooned pages per RAM chunk, to know when a chunk is entirely the host's again. */
  private perChunk: Uint32Array;
  private readonly basePfn: number;
  private readonly pageCount: number;
  private statsChain: DescriptorChain | null = null;
  private latestStats: BalloonStats = { values: {}, updates: 0 };
  private statsWaiters: (() => void)[] = [];
  private readonly counters = {
    inflatedPages: 0,
    deflatedPages: 0,
    reportedBytes: 0,
    releasedBytes: 0,
    inflateReleasedBytes: 0,
    reportReleasedBytes: 0,
    statsUpdates: 0,
    ignoredPfns: 0,
  };

  constructor(ctx: VirtioContext, options: VirtioBalloonOptions = {}) {
    const features =
      bit(VIRTIO_BALLOON_F_STATS_VQ) |
      (options.freePageReporting === false ? 0n : bit(VIRTIO_BALLOON_F_REPORTING)) |
      (options.deflateOnOom === false ? 0n : bit(VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
    // Queue numbering follows the negotiated features (Linux skips absent queues), so specs are generic; the
    // reporting queue may describe up to all of RAM, which is only ever discarded, never copied.
    const small = { maxSize: 128, limits: { maxChainBytes: 64 * 1024 } };
    const large = { maxSize: 128, limits: { maxChainBytes: ctx.ram.size } };
    super(ctx, VIRTIO_ID_BALLOON, features, [small, small, large, large], CONFIG_SIZE, 'virtio-balloon', 1);
    this.roles = rolesFor(features);
    this.basePfn = this.ram.base / PAGE_SIZE;
    this.pageCount = this.ram.size / PAGE_SIZE;
    this.ballooned = new Uint8Array(Math.ceil(this.pageCount / 8));
    this.perChunk = new Uint32Array(Math.ceil(this.ram.size / CHUNK_SIZE));
  }

  // ---- host-side API ----

  /** Asks the guest to hold `pages` 4 KiB pages in its balloon. */
  setTarget(pages: number): void {
    const target = Math.max(0, Math.min(Math.floor(pages), this.pageCount));
    this.configView.setUint32(CFG_NUM_PAGES, target, true);
    this.configChanged();
  }
  get targetPages(): number {
    return this.configView.getUint32(CFG_NUM_PAGES, true);
  }
  /** Pages the guest says are in the balloon (config `actual`, written by the driver). */
  get actualPages(): number {
    return this.configView.getUint32(CFG_ACTUAL, true);
  }
  /** Pages the device has actually received through the inflate queue (minus deflated ones). */
  get balloonedPages(): number {
    return this.perChunk.reduce((n, c) => n + c, 0);
  }
  /** True once the guest accepted VIRTIO_BALLOON_F_DEFLATE_ON_OOM: it may take pages back when out of memory. */
  get deflateOnOom(): boolean {
    return this.has(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
  }
  /** The latest guest memory statistics. */
  stats(): BalloonStats {
    return { values: { ...this.latestStats.values }, updates: this.latestStats.updates };
  }
  /**
   * Asks the guest for fresh statistics by returning its stats buffer (§5.5.6.3). Resolves when the next report
   * arrives, or at once (false) when the guest holds no stats buffer with us right now.
   */
  requestStats(): Promise<boolean> {
    const chain = this.statsChain;
    if (!chain || !this.isCurrent(chain)) return Promise.resolve(false);
    this.statsChain = null;
    const arrived = new Promise<boolean>((resolve) => this.statsWaiters.push(() => resolve(true)));
    this.complete(chain, 0);
    return arrived;
  }

  // ---- device model ----

  protected handleChain(queue: number, chain: DescriptorChain): void {
    switch (this.roles[queue]) {
      case 'inflate':
        this.inflate(this.pfns(chain));
        this.complete(chain, 0);
        break;
      case 'deflate':
        this.deflate(this.pfns(chain));
        this.complete(chain, 0);
        break;
      case 'stats':
        this.receiveStats(chain);
        break;
      case 'reporting':
        this.receiveReport(chain);
        this.complete(chain, 0);
        break;
      default:
        throw new VirtqueueError('MalformedRequest', `virtio-balloon has no queue ${queue} with the negotiated features`);
    }
  }

  protected override onFeaturesNegotiated(features: bigint): void {
    this.roles = rolesFor(features);
  }

  protected override onConfigWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    // Only `actual` is driver-writable; the target (num_pages) belongs to the host.
    if (offset < CFG_ACTUAL || offset + size > CFG_ACTUAL + 4) return;
    if (size === 1) this.configView.setUint8(offset, value);
    else if (size === 2) this.configView.setUint16(offset, value, true);
    else this.configView.setUint32(offset, value, true);
  }

  protected override onReset(): void {
    // After a reset the guest owns all its memory again (a rebooted guest starts with an empty balloon).
    this.ballooned.fill(0);
    this.perChunk.fill(0);
    this.statsChain = null;
    this.configView.setUint32(CFG_ACTUAL, 0, true);
  }

  protected saveDevice(): VirtioBalloonStateData {
    const runs: [number, number][] = [];
    for (let i = 0; i < this.pageCount; i++) {
      if (!this.isBallooned(i)) continue;
      const last = runs[runs.length - 1];
      if (last && last[0] + last[1] === this.basePfn + i) last[1]++;
      else runs.push([this.basePfn + i, 1]);
    }
    return { targetPages: this.targetPages, actualPages: this.actualPages, ballooned: runs, stats: this.stats() };
  }

  protected loadDevice(data: VirtioBalloonStateData): void {
    this.ballooned.fill(0);
    this.perChunk.fill(0);
    this.configView.setUint32(CFG_NUM_PAGES, data.targetPages, true);
    this.configView.setUint32(CFG_ACTUAL, data.actualPages, true);
    for (const [first, count] of data.ballooned) {
      const pfns: number[] = [];
      for (let i = 0; i < count; i++) pfns.push(first + i);
      this.inflate(pfns);
    }
    this.latestStats = { values: { ...data.stats.values }, updates: data.stats.updates };
    this.statsChain = null;
  }

  protected override deviceMetrics(): Record<string, number> {
    return {
      ...this.counters,
      balloonedPages: this.balloonedPages,
      targetPages: this.targetPages,
      actualPages: this.actualPages,
    };
  }

  private pfns(chain: DescriptorChain): number[] {
    const bytes = this.readChain(chain);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out: number[] = [];
    for (let at = 0; at + 4 <= bytes.length; at += 4) out.push(view.getUint32(at, true));
    return out;
  }

  private inflate(pfns: number[]): void {
    const touched = new Set<number>();
    for (const pfn of pfns) {
      const page = pfn - this.basePfn;
      if (page < 0 || page >= this.pageCount) {
        this.counters.ignoredPfns++; // not RAM: nothing to give back
        continue;
      }
      if (this.isBallooned(page)) continue;
      this.ballooned[page >> 3]! |= 1 << (page & 7);
      const chunk = Math.floor((page * PAGE_SIZE) / CHUNK_SIZE);
      this.perChunk[chunk]!++;
      this.counters.inflatedPages++;
      touched.add(chunk);
    }
    for (const chunk of touched) {
      const start = chunk * CHUNK_SIZE;
      const length = Math.min(CHUNK_SIZE, this.ram.size - start);
      if (this.perChunk[chunk] !== length / PAGE_SIZE) continue;
      const released = this.ram.discard(this.ram.base + start, length);
      this.counters.releasedBytes += released;
      this.counters.inflateReleasedBytes += released;
    }
  }

  private deflate(pfns: number[]): void {
    for (const pfn of pfns) {
      const page = pfn - this.basePfn;
      if (page < 0 || page >= this.pageCount) {
        this.counters.ignoredPfns++;
        continue;
      }
      if (!this.isBallooned(page)) continue;
      this.ballooned[page >> 3]! &= ~(1 << (page & 7));
      this.perChunk[Math.floor((page * PAGE_SIZE) / CHUNK_SIZE)]!--;
      this.counters.deflatedPages++;
    }
  }

  private isBallooned(page: number): boolean {
    return (this.ballooned[page >> 3]! & (1 << (page & 7))) !== 0;
  }

  private receiveStats(chain: DescriptorChain): void {
    const bytes = this.readChain(chain, 0, Math.min(chain.readableBytes, 64 * STAT_ENTRY));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const values: Record<string, number> = { ...this.latestStats.values };
    for (let at = 0; at + STAT_ENTRY <= bytes.length; at += STAT_ENTRY) {
      const name = BALLOON_STAT_TAGS[view.getUint16(at, true)];
      if (!name) continue; // unknown tags are ignored (§5.5.6.3)
      values[name] = view.getUint32(at + 2, true) + view.getUint32(at + 6, true) * 0x1_0000_0000;
    }
    this.latestStats = { values, updates: this.latestStats.updates + 1 };
    this.counters.statsUpdates++;
    // The device keeps the buffer until it wants the next report.
    this.statsChain = chain;
    const waiters = this.statsWaiters;
    this.statsWaiters = [];
    for (const w of waiters) w();
  }

  /** Free page reporting: every buffer names a free range of guest memory; give its RAM back. */
  private receiveReport(chain: DescriptorChain): void {
    for (const s of [...chain.readable, ...chain.writable]) {
      this.counters.reportedBytes += s.len;
      const released = this.ram.discard(s.addr, s.len);
      this.counters.releasedBytes += released;
      this.counters.reportReleasedBytes += released;
    }
  }
}

function rolesFor(features: bigint): QueueRole[] {
  const roles: QueueRole[] = ['inflate', 'deflate'];
  if (hasFeature(features, VIRTIO_BALLOON_F_STATS_VQ)) roles.push('stats');
  if (hasFeature(features, VIRTIO_BALLOON_F_REPORTING)) roles.push('reporting');
  return roles;
}
