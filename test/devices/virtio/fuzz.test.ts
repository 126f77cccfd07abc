/**
 * fast-check fuzzers over descriptor tables and available rings, random and structured-but-hostile. Properties:
 * the transport never throws into the host, never touches memory outside guest RAM (a GuestRam spy records every
 * attempt), and either processes each chain or enters DEVICE_NEEDS_RESET.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CHUNK_SIZE, GuestRam } from '../../../src/machine/memory.js';
import { VirtioRng } from '../../../src/devices/virtio/rng.js';
import { VirtioConsole } from '../../../src/devices/virtio/console.js';
import { VirtioBlk } from '../../../src/devices/virtio/blk.js';
import { VirtioBalloon } from '../../../src/devices/virtio/balloon.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../src/devices/virtio/regs.js';
import { MAX_FRAME_BYTES, OFFLOAD_FEATURES, VIRTIO_NET_HDR_LEN, VirtioNet } from '../../../src/devices/virtio/net.js';
import { MAX_GSO_FRAME_BYTES } from '../../../src/net/packet/offload.js';
import type { VirtioMmioDevice } from '../../../src/devices/virtio/mmio.js';
import { VirtioDriverMock } from './driver-mock.js';
import { MemoryBackend } from './memory-backend.js';
import { fuzzParams } from '../../helpers/fuzz.js';

const RAM_SIZE = 4 * 1024 * 1024;
const QUEUE_SIZE = 16;

/**
 * GuestRam that counts every access the device attempts outside RAM (before GuestRam itself refuses it), and
 * remembers the pages written so one RAM can serve every case of a property: `reset()` zeroes exactly those pages,
 * which leaves it as a fresh RAM at a fraction of the cost of allocating and collecting 4 MiB per case. A write
 * path this class does not see (a device writing through `chunk()` directly) marks the whole RAM dirty.
 */
class SpyRam extends GuestRam {
  outside = 0;
  private readonly dirty: Uint8Array;
  private readonly dirtyPages: number[] = [];
  private allDirty = false;
  private inSpyWrite = false;
  constructor(size: number) {
    super(size);
    this.dirty = new Uint8Array(size / PAGE);
  }
  private note(paddr: number, length: number): void {
    if (!Number.isSafeInteger(paddr) || !this.contains(paddr, length)) this.outside++;
  }
  private mark(paddr: number, length: number): void {
    if (!Number.isSafeInteger(paddr) || !Number.isSafeInteger(length) || length <= 0) return;
    const first = Math.max(0, Math.floor((paddr - this.base) / PAGE));
    const last = Math.min(this.dirty.length - 1, Math.floor((paddr - this.base + length - 1) / PAGE));
    for (let p = first; p <= last; p++) {
      if (!this.dirty[p]) {
        this.dirty[p] = 1;
        this.dirtyPages.push(p);
      }
    }
  }
  private spyWrite<T>(paddr: number, length: number, write: () => T): T {
    this.note(paddr, length);
    this.mark(paddr, length);
    const outer = this.inSpyWrite;
    this.inSpyWrite = true;
    try {
      return write();
    } finally {
      this.inSpyWrite = outer;
    }
  }
  override chunk(paddr: number, forWrite: boolean): DataView | null {
    if (forWrite && !this.inSpyWrite) this.allDirty = true;
    return super.chunk(paddr, forWrite);
  }
  override read(paddr: number, dst: Uint8Array): void {
    this.note(paddr, dst.length);
    super.read(paddr, dst);
  }
  override write(paddr: number, src: Uint8Array): void {
    this.spyWrite(paddr, src.length, () => super.write(paddr, src));
  }
  override readU16(paddr: number): number {
    this.note(paddr, 2);
    return super.readU16(paddr);
  }
  override readU32(paddr: number): number {
    this.note(paddr, 4);
    return super.readU32(paddr);
  }
  override writeU8(paddr: number, value: number): void {
    this.spyWrite(paddr, 1, () => super.writeU8(paddr, value));
  }
  override writeU16(paddr: number, value: number): void {
    this.spyWrite(paddr, 2, () => super.writeU16(paddr, value));
  }
  override writeU32(paddr: number, value: number): void {
    this.spyWrite(paddr, 4, () => super.writeU32(paddr, value));
  }
  override discard(paddr: number, length: number): number {
    return this.spyWrite(paddr, length, () => super.discard(paddr, length));
  }

  /** Back to a fresh RAM: every page written since the last reset zeroed, the outside count cleared. */
  reset(): void {
    for (let c = 0; c < Math.ceil(this.size / CHUNK_SIZE); c++) {
      const bytes = this.chunkBytes(c);
      if (!bytes) continue;
      if (this.allDirty) bytes.fill(0);
      else {
        const firstPage = (c * CHUNK_SIZE) / PAGE;
        for (const p of this.dirtyPages) {
          const rel = p - firstPage;
          if (rel >= 0 && rel < bytes.length / PAGE) bytes.fill(0, rel * PAGE, (rel + 1) * PAGE);
        }
      }
    }
    for (const p of this.dirtyPages) this.dirty[p] = 0;
    this.dirtyPages.length = 0;
    this.allDirty = false;
    this.outside = 0;
    if (verifyResets) {
      for (let c = 0; c < Math.ceil(this.size / CHUNK_SIZE); c++) {
        const bytes = this.chunkBytes(c);
        if (bytes)
          assert.ok(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).equals(zeroChunk), 'reset left a non-zero byte');
      }
    }
  }
}

const PAGE = 4096;
/** The suite's short runs check that every reset really restores a zeroed RAM; long campaigns trust it. */
const verifyResets = !process.env.TYPEVISOR_FUZZ_RUNS;
const zeroChunk = Buffer.alloc(CHUNK_SIZE);

type Kind = 'rng' | 'console' | 'blk' | 'balloon' | 'net';

/** Queues the driver sets up: console and net have receive + transmit; balloon inflate, deflate, stats, reporting. */
const queuesOf = (kind: Kind): number => (kind === 'console' || kind === 'net' ? 2 : kind === 'balloon' ? 4 : 1);

/** The blk device's disk, reset between cases like the RAM. */
const disk = new MemoryBackend(1024 * 1024);

/** One RAM per device kind, reset between cases (see SpyRam). */
const rams = new Map<Kind, SpyRam>();

/** Frames virtio-net handed to the host in the current case, with the lengths it claimed. */
const sent: number[] = [];

function rig(kind: Kind, accept?: bigint, allocSpan = 64 * 1024) {
  let ram = rams.get(kind);
  if (ram) ram.reset();
  else rams.set(kind, (ram = new SpyRam(RAM_SIZE)));
  const mock = new VirtioDriverMock(ram, ram.base, ram.base + allocSpan);
  const ctx = { ram, irq: mock.irq, name: kind };
  let dev: VirtioMmioDevice;
  if (kind === 'rng') dev = new VirtioRng(ctx, (b) => b.fill(7));
  else if (kind === 'console') dev = new VirtioConsole(ctx);
  else if (kind === 'balloon') dev = new VirtioBalloon(ctx);
  else if (kind === 'net') {
    sent.length = 0;
    dev = new VirtioNet(ctx, { mac: '52:54:00:12:34:56', onTransmit: (frame) => sent.push(frame.length) });
  } else {
    disk.reset();
    if (verifyResets)
      assert.ok(
        disk.data.every((b) => b === 0),
        'disk reset left a non-zero byte',
      );
    dev = new VirtioBlk(ctx, disk, { maxInflight: 4 });
  }
  mock.attach(dev).init(queuesOf(kind), accept, QUEUE_SIZE);
  if (dev instanceof VirtioConsole) dev.input('x'.repeat(100));
  return { ram, mock, dev, kind };
}

// Addresses a hostile driver would try: inside RAM, straddling its end, below it, beyond 2^32 and 2^53.
const address = (ram: GuestRam) =>
  fc.oneof(
    fc.integer({ min: ram.base, max: ram.base + ram.size - 1 }),
    fc.integer({ min: ram.base + ram.size - 64, max: ram.base + ram.size + 64 }),
    fc.integer({ min: 0, max: ram.base }),
    fc.constantFrom(0, 2 ** 32 - 1, 2 ** 40, 2 ** 53 - 1, 2 ** 64 - 2 ** 11),
  );
const length = fc.oneof(
  fc.integer({ min: 0, max: 64 }),
  fc.integer({ min: 0, max: 4096 }),
  fc.constantFrom(0xffff_ffff, 0x8000_0000, 16 * 8192),
);
const flags = fc.integer({ min: 0, max: 7 });
const next = fc.oneof(fc.integer({ min: 0, max: QUEUE_SIZE - 1 }), fc.integer({ min: 0, max: 0xffff }));

interface Desc {
  addr: number;
  len: number;
  flags: number;
  next: number;
}
const desc = (ram: GuestRam): fc.Arbitrary<Desc> => fc.record({ addr: address(ram), len: length, flags, next });

function writeRawDesc(ram: GuestRam, table: number, i: number, d: Desc): void {
  const at = table + 16 * i;
  ram.writeU32(at, d.addr % 2 ** 32);
  ram.writeU32(at + 4, Math.floor(d.addr / 2 ** 32) % 2 ** 32);
  ram.writeU32(at + 8, d.len);
  ram.writeU16(at + 12, d.flags);
  ram.writeU16(at + 14, d.next);
}

async function settle(dev: VirtioMmioDevice): Promise<void> {
  if (dev instanceof VirtioBlk) await dev.whenIdle();
}

/** The common property: nothing thrown, nothing outside RAM, and every chain processed or NEEDS_RESET. */
async function check(r: ReturnType<typeof rig>, act: () => void, expectedChains: number, queue = 0): Promise<void> {
  assert.doesNotThrow(act);
  await settle(r.dev);
  assert.equal(r.ram.outside, 0, 'an access outside guest RAM was attempted');
  if (!r.dev.needsReset) {
    const q = r.mock.queues[queue]!;
    const used = r.ram.readU16(q.used + 2);
    // Receive buffers (console, net queue 0) are kept until data arrives; every other chain is used at once.
    const keepsBuffers = r.dev instanceof VirtioConsole || (r.dev instanceof VirtioNet && queue === 0);
    if (!keepsBuffers) assert.equal(used, expectedChains & 0xffff, 'every chain was used');
  }
  if (r.dev instanceof VirtioNet) {
    const m = r.dev.metrics();
    assert.equal(m.txPackets, sent.length);
    for (const n of sent) assert.ok(n >= 14 && n <= MAX_GSO_FRAME_BYTES, `a ${n}-byte frame was sent`);
  }
  // Reads of every register stay harmless afterwards, and a reset always recovers.
  for (let off = 0; off < 0x200; off += 4) r.dev.read(off, 4);
  r.mock.init(queuesOf(r.kind), undefined, QUEUE_SIZE);
  assert.equal(r.dev.needsReset, false);
}

/** Frames the host offers virtio-net's receive queue in each case: the shortest, typical, full-size, oversized. */
const rxFrames = [14, 60, 1514, MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1, 13].map((n) => new Uint8Array(n).fill(0x5a));

/** Kicks `queue` after the hostile ring is in place; on net's receive queue, frames arrive to use the buffers. */
function kick(r: ReturnType<typeof rig>, queue: number): void {
  r.mock.notify(queue);
  if (r.dev instanceof VirtioNet && queue === 0) for (const f of rxFrames) r.dev.receive(f);
}

const targets: [kind: Kind, queue: number, name: string][] = [
  ['rng', 0, 'rng'],
  ['console', 0, 'console'],
  ['blk', 0, 'blk'],
  ['balloon', 0, 'balloon'],
  ['net', 0, 'net rx'],
  ['net', 1, 'net tx'],
];

for (const [kind, queue, name] of targets) {
  test(`fuzz (${name}): random bytes in the descriptor table, indirect area and available ring`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 16 * QUEUE_SIZE, maxLength: 16 * QUEUE_SIZE }),
        fc.uint8Array({ minLength: 0, maxLength: 512 }),
        fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: QUEUE_SIZE }),
        fc.integer({ min: 0, max: 0xffff }),
        async (table, indirectArea, heads, availIdx) => {
          const r = rig(kind);
          const q = r.mock.queues[queue]!;
          r.ram.write(q.desc, table);
          r.ram.write(r.ram.base + 0x20_0000, indirectArea);
          heads.forEach((h, i) => r.ram.writeU16(q.avail + 4 + 2 * i, h));
          await check(
            r,
            () => {
              r.ram.writeU16(q.avail + 2, availIdx);
              kick(r, queue);
            },
            availIdx,
            queue,
          );
        },
      ),
      fuzzParams(kind === 'blk' ? 150 : 300),
    );
  });

  test(`fuzz (${name}): structured hostile chains (loops, ranges, huge lengths, nesting, direction, wild indices)`, async () => {
    const ram0 = new GuestRam(RAM_SIZE);
    const indirectTable = ram0.base + 0x20_0000;
    await fc.assert(
      fc.asyncProperty(
        fc.array(desc(ram0), { minLength: QUEUE_SIZE, maxLength: QUEUE_SIZE }),
        fc.array(desc(ram0), { minLength: 0, maxLength: 8 }),
        fc.array(fc.integer({ min: 0, max: QUEUE_SIZE + 2 }), { minLength: 1, maxLength: QUEUE_SIZE }),
        fc.oneof(fc.integer({ min: 1, max: QUEUE_SIZE }), fc.integer({ min: 0, max: 0xffff })),
        fc.boolean(),
        async (descs, indirect, heads, availCount, pointAtIndirect) => {
          const r = rig(kind);
          const q = r.mock.queues[queue]!;
          // Optionally aim some descriptors at a real indirect table full of hostile entries.
          descs.forEach((d, i) => {
            const aimed =
              pointAtIndirect && i % 3 === 0
                ? { ...d, addr: indirectTable, len: 16 * Math.max(indirect.length, 1), flags: d.flags | VIRTQ_DESC_F_INDIRECT }
                : d;
            writeRawDesc(r.ram, q.desc, i, aimed);
          });
          indirect.forEach((d, i) => writeRawDesc(r.ram, indirectTable, i, d));
          heads.forEach((h, i) => r.ram.writeU16(q.avail + 4 + 2 * i, h));
          await check(
            r,
            () => {
              r.ram.writeU16(q.avail + 2, availCount);
              kick(r, queue);
            },
            availCount,
            queue,
          );
        },
      ),
      fuzzParams(kind === 'blk' ? 150 : 300),
    );
  });
}

// virtio-net's transmit headers and frames are guest data too: well-formed chains carrying garbage headers
// (every flag, GSO type and offset), frames of every length, split anywhere across descriptors, with and
// without the offloads negotiated. Each is sent or refused and counted; none breaks the device.
const u16 = fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 80 }));
const txHeaderArb = fc.oneof(
  // The plain header most frames carry, so that valid frames go out among the garbage.
  fc.constant(new Uint8Array(VIRTIO_NET_HDR_LEN)),
  fc.uint8Array({ minLength: VIRTIO_NET_HDR_LEN, maxLength: VIRTIO_NET_HDR_LEN }),
  fc
    .record({
      flags: fc.oneof(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 255 })),
      gsoType: fc.oneof(fc.constantFrom(0, 1, 3, 4, 5, 0x80, 0x81), fc.integer({ min: 0, max: 255 })),
      hdrLen: u16,
      gsoSize: fc.oneof(fc.constantFrom(0, 1, 536, 1448, 1460, 0xffff), u16),
      csumStart: fc.oneof(fc.constantFrom(14, 34, 54), u16),
      csumOffset: fc.oneof(fc.constantFrom(6, 16), u16),
      numBuffers: u16,
    })
    .map((h) => {
      const b = new Uint8Array(VIRTIO_NET_HDR_LEN);
      const v = new DataView(b.buffer);
      b[0] = h.flags;
      b[1] = h.gsoType;
      v.setUint16(2, h.hdrLen, true);
      v.setUint16(4, h.gsoSize, true);
      v.setUint16(6, h.csumStart, true);
      v.setUint16(8, h.csumOffset, true);
      v.setUint16(10, h.numBuffers, true);
      return b;
    }),
);
const txFrameArb = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 200 }),
  // IPv4/TCP-looking frames (the offload checks look inside them), and lengths at every bound.
  fc.uint8Array({ minLength: 54, maxLength: 120 }).map((f) => {
    f.set([0x08, 0x00, 0x45], 12);
    f[23] = 6;
    return f;
  }),
  fc
    .constantFrom(13, 14, 1514, MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1, MAX_GSO_FRAME_BYTES, MAX_GSO_FRAME_BYTES + 1)
    .map((n) => new Uint8Array(n).fill(0x45)),
);

test('fuzz (net tx): garbage headers and frames of every length on well-formed chains', () => {
  const outcomes = { sent: 0, refused: 0 };
  fc.assert(
    fc.property(
      fc.array(fc.tuple(txHeaderArb, txFrameArb, fc.array(fc.nat(), { maxLength: 3 }), fc.boolean()), {
        minLength: 1,
        maxLength: 8,
      }),
      fc.boolean(),
      (frames, offloads) => {
        // Room for eight 64 KiB super-segments in the driver's buffers.
        const r = rig('net', offloads ? undefined : ~OFFLOAD_FEATURES, 0x10_0000);
        frames.forEach(([header, frame, cuts, indirect], i) => {
          // The header and frame as one byte string, cut into up to four descriptors at arbitrary points.
          const bytes = new Uint8Array(header.length + frame.length);
          bytes.set(header);
          bytes.set(frame, header.length);
          const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
          const parts = [0, ...at, bytes.length].slice(1).map((end, i, ends) => bytes.subarray(i === 0 ? 0 : ends[i - 1], end));
          const out = parts.filter((p) => p.length > 0);
          // An indirect table when the ring runs short of descriptors for the chains still to come, as Linux does.
          const forceIndirect = r.mock.queues[1]!.free.length - out.length < frames.length - i - 1;
          r.mock.post(1, out, [], { indirect: indirect || forceIndirect });
        });
        r.mock.kick(1);
        assert.equal(r.dev.needsReset, false, r.dev.lastProtocolError ?? '');
        assert.equal(r.mock.collect(1).length, frames.length, 'every chain was used');
        const m = r.dev.metrics();
        assert.equal(m.txPackets! + m.txErrors! + m.txDropped!, frames.length, 'every frame sent or refused, and counted');
        assert.equal(m.txPackets, sent.length);
        for (const n of sent) assert.ok(n >= 14 && n <= MAX_GSO_FRAME_BYTES, `a ${n}-byte frame was sent`);
        assert.equal(r.ram.outside, 0);
        outcomes.sent += m.txPackets!;
        outcomes.refused += m.txErrors!;
      },
    ),
    fuzzParams(300),
  );
  // Not vacuous: some frames must go out and some must be refused.
  assert.ok(outcomes.sent > 0 && outcomes.refused > 0, JSON.stringify(outcomes));
});

test('fuzz: well-formed chains of random shapes are all processed (no false positives)', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 4 }),
          fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 4 }),
          fc.boolean(),
        ),
        {
          minLength: 1,
          maxLength: 10,
        },
      ),
      (chains) => {
        const r = rig('rng');
        chains.forEach(([outs, ins, indirect], i) => {
          // Fall back to an indirect table when the ring runs short of free descriptors, as Linux does.
          const stillToPost = chains.length - i - 1;
          const forceIndirect = r.mock.queues[0]!.free.length - (outs.length + ins.length) < stillToPost;
          r.mock.post(
            0,
            outs.map((n) => new Uint8Array(n)),
            ins,
            { indirect: indirect || forceIndirect },
          );
        });
        r.mock.kick(0);
        assert.equal(r.dev.needsReset, false, r.dev.lastProtocolError ?? '');
        const used = r.mock.collect(0);
        assert.equal(used.length, chains.length);
        used.forEach((u, i) =>
          assert.equal(
            u.len,
            chains[i]![1].reduce((a, b) => a + b, 0),
          ),
        );
        assert.equal(r.ram.outside, 0);
      },
    ),
    fuzzParams(200),
  );
});

// Keep the flag constants referenced for readers of the generators above.
void [VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE];
